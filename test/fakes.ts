/**
 * In-memory stand-ins for the services the daemon talks through, so the
 * pipeline can be tested with TestClock: no files, no processes, no sleeps.
 */
import { PLAIN } from "../src/directives/directives.js"
import type { Pause } from "../src/spool/pauses.js"
import { Deferred, Duration, Effect, FiberId, Layer, Option, Queue, Ref } from "effect"
import { LoadAverage } from "../src/gate/LoadAverage.js"
import { Archive, type FinishedJob } from "../src/job/Archive.js"
import { RefusalsKept } from "../src/job/RefusalsKept.js"
import type { JobSettings } from "../src/job/Job.js"
import type { JobRecord, ProcessExit } from "../src/record/record.js"
import { ProcessRunner, type RunningProcess } from "../src/job/Runner.js"
import { stamp } from "../src/spool/layout.js"
import type { DaemonSettings } from "../src/daemon.js"
import { ArchiveFailed, JobBusy, SpawnFailed, SpoolIOError } from "../src/errors/errors.js"
import { HookRunner } from "../src/hooks/hooks.js"
import { Users } from "../src/owners/Users.js"
import { type Heartbeat, Nodes } from "../src/spool/Nodes.js"
import { type CancelRequest, Requests } from "../src/spool/Requests.js"
import { Spool } from "../src/spool/Spool.js"

export const fakeSpool = Effect.gen(function*() {
  /** Each file's owner is `uid`, 1000 when not said. */
  const files = new Map<string, { readyAt: number; executable: boolean; uid?: number }>()
  const notify = yield* Queue.unbounded<string>()
  /** Names another node takes between our listing and our rename. */
  const stolen = new Set<string>()
  const claimed: Array<string> = []
  /** Names whose claim was made durable (Spool.commit), in order. */
  const committed: Array<string> = []
  /** Names whose claim was lost (gone when this node tried). */
  const lost: Array<string> = []
  const released: Array<string> = []
  const calls = { list: 0, inspect: 0 }
  /** Names whose file gets this owner right after its next inspect (another user's file put in its place). */
  const ownerAfterInspect = new Map<string, number>()
  /** Names whose claim, once renamed into the running folder, takes this long to return (its head read, on the TestClock). */
  const claimTakes = new Map<string, Duration.DurationInput>()
  /** What this node's running folder holds: claims made and not put back. */
  const inFolder = new Set<string>()

  const submit = (name: string, readyAt: number, executable = true, uid = 1000) => {
    files.set(name, { readyAt, executable, uid })
    return Queue.offer(notify, name)
  }

  /**
   * Another node claims NAMES: they leave the spool now, and this node hears
   * of it as from the kernel, at the next poll phase of its event loop after
   * its next lost race (the worst case: its picks run before the loop turns).
   * A lost race may come in an I/O callback, so that poll phase is a turn
   * later: an immediate set from an immediate stands in for it.
   */
  const unheard: Array<string> = []
  const takenElsewhere = (names: ReadonlyArray<string>) => {
    for (const name of names) files.delete(name)
    unheard.push(...names)
  }
  const hear = () => {
    const names = unheard.splice(0)
    if (names.length > 0) setImmediate(() => setImmediate(() => Effect.runSync(Queue.offerAll(notify, names))))
  }

  /** What `pmjq pause` files say now (spool/pauses.ts). */
  const pause: { now: Option.Option<Pause> } = { now: Option.none() }

  const service = Spool.of({
    path: "/spool",
    list: Effect.sync(() => {
      calls.list++
      return [...files.keys()]
    }),
    // As if the spool always changed between rescans.
    listIfChanged: Effect.sync(() => {
      calls.list++
      return Option.some([...files.keys()])
    }),
    inspect: (name) =>
      Effect.sync(() => {
        calls.inspect++
        const file = files.get(name)
        const seen = file?.executable ? Option.some({ name, readyAt: file.readyAt, uid: file.uid ?? 1000 }) : Option.none()
        const next = ownerAfterInspect.get(name)
        if (file !== undefined && next !== undefined) {
          ownerAfterInspect.delete(name)
          files.set(name, { ...file, uid: next })
        }
        return seen
      }),
    inspectAll: (names) =>
      Effect.sync(() => {
        calls.inspect += names.length
        const jobs = names.flatMap((name) => {
          const file = files.get(name)
          return file?.executable ? [{ name, readyAt: file.readyAt, uid: file.uid ?? 1000 }] : []
        })
        const others = names.filter((name) => files.has(name) && !files.get(name)!.executable)
        return { jobs, others, notExecutable: others }
      }),
    dependencies: () => Effect.succeed({ presence: new Map(), ended: new Map() }),
    judgeDependents: () => Effect.succeed(new Map()),
    changed: () => Effect.succeed([]),
    pruneEnded: Effect.succeed(0),
    paused: Effect.sync(() => pause.now),
    claim: (name) =>
      Effect.suspend(() => {
        const owner = files.get(name)?.uid ?? 1000
        const present = files.delete(name)
        if (!present || stolen.has(name)) {
          lost.push(name)
          hear()
          return Effect.succeedNone
        }
        claimed.push(name)
        inFolder.add(name)
        const claim = Option.some({ name, path: `/spool/.pmjq/running/node/${name}`, claimedAt: 0, attempt: 1, noteKey: null, owner, read: PLAIN })
        const takes = claimTakes.get(name)
        return takes === undefined ? Effect.succeed(claim) : Effect.as(Effect.sleep(takes), claim)
      }),
    commit: (claim) => Effect.sync(() => void committed.push(claim.name)),
    release: (claim) =>
      Effect.sync(() => {
        if (files.has(claim.name)) return false
        files.set(claim.name, { readyAt: 0, executable: true })
        inFolder.delete(claim.name)
        released.push(claim.name)
        return true
      }),
    vacated: (claim) => Effect.sync(() => void inFolder.delete(claim.name)),
    requeue: (_file, name) =>
      Effect.sync(() => {
        if (files.has(name)) return false
        files.set(name, { readyAt: 0, executable: true })
        return true
      }),
    startedBefore: () => Effect.succeed(0),
    facts: () => Effect.succeed({ isFile: true, isSymlink: false, mode: 0o100755, uid: 1000, gid: 1000, nlink: 1, ino: 1 }),
    checkState: Effect.succeed(true),
    whenTrusted: Effect.void,
    // Like the kernel: whatever has happened is reported at once, in one go.
    watch: (changed) =>
      Queue.takeBetween(notify, 1, Number.MAX_SAFE_INTEGER).pipe(
        Effect.flatMap((names) => Effect.sync(() => { for (const name of names) changed(name) })),
        Effect.forever
      )
  })
  return { service, files, submit, stolen, takenElsewhere, claimed, committed, lost, released, calls, ownerAfterInspect, claimTakes, inFolder, pause }
})

/** What one spawn of a job does; an exit's process may take `startsIn` to start (fork and exec). */
export type Behaviour =
  | { readonly _tag: "Exit"; readonly after: Duration.DurationInput; readonly code: number; readonly startsIn?: Duration.DurationInput }
  | { readonly _tag: "Busy" }
  | { readonly _tag: "Unstartable"; readonly reason: string }

export const exits = (code: number, after: Duration.DurationInput = 0, { startsIn }: { readonly startsIn?: Duration.DurationInput } = {}): Behaviour =>
  startsIn === undefined ? { _tag: "Exit", after, code } : { _tag: "Exit", after, code, startsIn }
export const busy: Behaviour = { _tag: "Busy" }

export const fakeRunner = Effect.gen(function*() {
  const plans = new Map<string, Array<Behaviour>>()
  const spawns: Array<string> = []
  const terminated: Array<string> = []
  /** Jobs killed at once (a node cut off from the spool), and how to kill the running ones. */
  const killed: Array<string> = []
  const kills = new Map<string, Effect.Effect<void>>()
  const live = yield* Ref.make(0)
  const peak = yield* Ref.make(0)
  /** Non-empty once the jobs were left to the spawners (--on-stop leave). */
  const left: Array<true> = []
  let nextPid = 100

  const plan = (name: string, ...steps: Array<Behaviour>) => plans.set(name, steps)
  const nameOf = (file: string) => file.slice(file.lastIndexOf("/") + 1)

  const service = ProcessRunner.of({
    spawn: (spec) =>
      Effect.gen(function*() {
        const name = nameOf(spec.path)
        spawns.push(name)
        const steps = plans.get(name) ?? []
        const step = (steps.length > 1 ? steps.shift() : steps[0]) ?? exits(0)
        if (step._tag === "Busy") return yield* new JobBusy({ path: spec.path })
        if (step._tag === "Unstartable") {
          return yield* new SpawnFailed({ path: spec.path, code: "ENOENT", reason: step.reason })
        }
        if (step.startsIn !== undefined) yield* Effect.sleep(step.startsIn)
        const exited = Deferred.unsafeMake<ProcessExit>(FiberId.none)
        const now = yield* Ref.updateAndGet(live, (n) => n + 1)
        yield* Ref.update(peak, (p) => Math.max(p, now))
        const finish = (exit: ProcessExit) =>
          Effect.zipRight(Deferred.succeed(exited, exit), Ref.update(live, (n) => n - 1)).pipe(Effect.whenEffect(
            Effect.map(Deferred.isDone(exited), (done) => !done)
          ))
        yield* Effect.sleep(step.after).pipe(
          Effect.zipRight(finish({ exitCode: step.code, signal: null })),
          Effect.forkDaemon
        )
        // Only a process still running is killed.
        kills.set(name, Effect.zipRight(Effect.sync(() => killed.push(name)), finish({ exitCode: null, signal: "SIGKILL", lost: "killed: cut off" })).pipe(
          Effect.unlessEffect(Deferred.isDone(exited))
        ))
        const proc: RunningProcess = {
          pid: nextPid++,
          startTicks: null,
          exit: Deferred.await(exited),
          terminate: () =>
            Effect.sync(() => terminated.push(name)).pipe(
              Effect.zipRight(finish({ exitCode: null, signal: "SIGTERM" })),
              Effect.zipRight(Deferred.await(exited))
            )
        }
        return proc
        // As the real spawn's wait for its spawner's answer: a process asked
        // for is started, and its caller told, whatever happens meanwhile.
      }).pipe(Effect.uninterruptible),
    helpers: Effect.succeed([]),
    unlisted: Effect.never,
    prepare: Effect.void,
    listed: () => Effect.void,
    keepJobs: () => Effect.void,
    leave: Effect.zipRight(Effect.sync(() => void left.splice(0, left.length, true)), Ref.get(live)),
    leaving: Effect.sync(() => left.length > 0),
    killAll: Effect.gen(function*() {
      const all = [...kills.values()]
      kills.clear()
      yield* Effect.all(all, { discard: true })
      return all.length
    })
  })
  return { service, plan, spawns, terminated, killed, live, peak, left }
})

/**
 * An archive that records what it is given, each store taking `takes` (on the
 * test clock); the first `failures` stores fail, as on a full disk. A sweep of
 * a dir is recorded, then does what `sweepOf` says (by default: nothing to
 * remove).
 */
export const makeFakeArchive = (takes: Duration.DurationInput = 0, failures = 0, sweepOf: (dir: string) => Effect.Effect<number> = () => Effect.succeed(0)) => Effect.sync(() => {
  const stored: Array<{ readonly dir: string; readonly record: JobRecord }> = []
  const discarded: Array<JobRecord> = []
  const settled: Array<JobRecord> = []
  const swept: Array<string> = []
  let failing = failures
  const service = Archive.of({
    settle: (job: FinishedJob) => Effect.sync(() => void settled.push(job.record)),
    store: (dir: string, job: FinishedJob) =>
      Effect.sleep(takes).pipe(Effect.zipRight(Effect.suspend(() => {
        if (failing > 0) {
          failing--
          return Effect.fail(new ArchiveFailed({ path: dir, reason: "ENOSPC: no space left on device" }))
        }
        stored.push({ dir, record: job.record })
        return Effect.succeed(`${dir}/${stamp(new Date(job.record.endedAt))}_${job.record.name}`)
      }))),
    discard: (job: FinishedJob) => Effect.sync(() => void discarded.push(job.record)),
    sweep: (dir: string) => Effect.zipRight(Effect.sync(() => swept.push(dir)), sweepOf(dir))
  })
  return { service, stored, discarded, settled, swept }
})

export const fakeArchive = makeFakeArchive()

/** Refusals as placed, in order (the bound itself is tested on a real dir). */
export const fakeRefusals = Effect.sync(() => {
  const placed: Array<{ readonly uid: number; readonly entry: string }> = []
  return { service: RefusalsKept.of({ placed: (uid, entry) => Effect.sync(() => void placed.push({ uid, entry })), scanned: Effect.void }), placed }
})

/** Cancel requests as users leave them (`ask`); a node's `done` takes one away. */
/** Cancel requests; OWN is what this node's running folder holds (fakeSpool's inFolder). */
export const fakeRequests = (own: ReadonlySet<string> = new Set()) => Effect.sync(() => {
  const pending: Array<CancelRequest> = []
  /** Names another node holds. */
  const elsewhere = new Set<string>()
  let next = 0
  const ask = (name: string, uid = 1000) => void pending.push({ file: `/spool/.pmjq-cancel-${next++}`, uid, name })
  const service = Requests.of({
    cancels: Effect.sync(() => [...pending]),
    done: (request) =>
      Effect.sync(() => {
        const at = pending.indexOf(request)
        if (at >= 0) pending.splice(at, 1)
      }),
    holders: Effect.sync(() => {
      const there = new Set(elsewhere)
      const here = new Set(own)
      return (name: string) => [
        ...(there.has(name) ? [{ node: "elsewhere", claimed: name, ended: false }] : []),
        ...(here.has(name) ? [{ node: "node", claimed: name, ended: false }] : [])
      ]
    })
  })
  return { service, ask, pending, elsewhere }
})

/**
 * A spool with no other node in it; heartbeats are kept to be looked at.
 * `cut(true)`: heartbeats fail from then on, as on a dead mount (ENOTCONN).
 */
export const fakeNodes = Effect.sync(() => {
  const beats: Array<Heartbeat> = []
  let left = false
  let unreachable = false
  const service = Nodes.of({
    ownFolder: "/spool/.pmjq/running/node",
    beat: (heartbeat) =>
      unreachable
        ? Effect.fail(new SpoolIOError({ operation: "beat", path: "/spool/.pmjq/nodes/node", reason: "ENOTCONN: socket is not connected" }))
        : Effect.sync(() => void beats.push(heartbeat)),
    own: Effect.sync(() => Option.fromNullable(beats.at(-1))),
    others: Effect.succeed([]),
    takeOver: () => Effect.succeed(Option.none()),
    adopted: Effect.succeed([]),
    inventory: () => Effect.succeed({ leftovers: [], folders: [] }),
    // Never asked: the inventory is empty.
    gather: (folder) => Effect.fail(new SpoolIOError({ operation: "gather", path: folder, reason: "no leftovers in a fake spool" })),
    removeFolder: () => Effect.succeed(true),
    forget: () => Effect.void,
    leave: Effect.sync(() => void (left = true))
  })
  return { service, beats, hasLeft: () => left, cut: (on: boolean) => void (unreachable = on) }
})

/** Hook commands, recorded instead of run; each "takes" no time. */
export const fakeHooks = Effect.sync(() => {
  const runs: Array<{ readonly hook: string; readonly command: string; readonly env: Readonly<Record<string, string>> }> = []
  const service = HookRunner.of({
    run: (hook, command, env) => Effect.sync(() => void runs.push({ hook, command, env })).pipe(Effect.as({ _tag: "Exited" as const, exitCode: 0, signal: null }))
  })
  return { service, runs }
})

/** A password database with no one in it. */
export const fakeUsers = Users.of({ account: () => Effect.succeed(Option.none()), groups: () => Effect.succeed([]) })

/** A load source whose value the test sets. */
export const fakeLoad = Effect.gen(function*() {
  const load = yield* Ref.make(0)
  return { load, layer: Layer.succeed(LoadAverage, { oneMinute: Ref.get(load) }) }
})

export const jobSettings: JobSettings = {
  spool: "/spool",
  node: "node",
  host: "host",
  user: "user",
  workdir: "/",
  archiveDir: Option.some("/archive"),
  errorDir: Option.none(),
  killAfter: "5 seconds",
  timeout: Option.none(),
  policy: { asRoot: false, runAsOwner: false, allowUsers: null, allowGroups: null },
  rejectedDir: "/spool/.pmjq/rejected",
  grace: "30 seconds",
  busyFor: "1 minute"
}

export const daemonSettings = (overrides: Partial<DaemonSettings> = {}): DaemonSettings => ({
  ...jobSettings,
  maxJobs: 0,
  maxJobsPerUser: Option.none(),
  cpuLimit: Option.none(),
  poll: "2 seconds",
  drain: false,
  progress: false,
  onStop: "stop",
  metrics: { listen: Option.none(), file: Option.none() },
  traces: Option.none(),
  idleCmd: Option.none(),
  idleAfter: "10 minutes",
  limitCmd: Option.none(),
  limitAfter: "1 minute",
  onFinish: Option.none(),
  onFinishTimeout: "60 seconds",
  lease: "60 seconds",
  spawnerIdle: "1 minute",
  orphans: "requeue",
  maxAttempts: 3,
  ...overrides
})
