/**
 * The process runner: starts a job file as its own process group and waits for it.
 *
 * Not @effect/platform's Command: a job's output goes straight to files, or
 * through its spawner to pmjq's own output (never through pmjq's event loop),
 * and its whole group must be killed with SIGKILL escalation, which Command
 * does not do. The fork itself happens in pmjq's spawners, tiny
 * helper processes (see spawner.ts), because fork(2) slows down with the size of
 * the process that calls it; pmjq keeps control of each job's process group.
 * The two speak protocol.ts; neither imports the other.
 */
import { Context, Deferred, Duration, Effect, FiberId, Layer, Option, Queue, Runtime, Schedule, Scope } from "effect"
import * as cp from "node:child_process"
import { fileURLToPath } from "node:url"
import { JobBusy, NoSpawner, SpawnFailed } from "../errors/errors.js"
import { identify, type ProcessId, signalGroupOf } from "../process/proc.js"
import type { ProcessExit, RecordBase } from "../record/record.js"
import type { KeepRequest, Ready, RetireRequest, SpawnReport, SpawnRequest } from "../spawner/protocol.js"
import type { Account } from "../owners/Users.js"

/**
 * A new file (never one that exists), or "inherit": pmjq's own stdout/stderr,
 * through a pipe its spawner copies (the job never holds pmjq's descriptors).
 */
export type Output = { readonly file: string } | "inherit"

export interface ProcessSpec {
  readonly path: string
  /** Where it starts when run as pmjq; run as its owner, it starts in the owner's home (world.ts). */
  readonly cwd: string
  /** The job's own variables: added to pmjq's environment, or to the clean one of a job run as its owner. */
  readonly env: Readonly<Record<string, string>>
  /** Names a job run as its owner keeps from pmjq's environment (--keep-env). */
  readonly keepEnv: ReadonlyArray<string>
  /** RLIMIT_NPROC for the processes of a job run as its owner (--job-nproc); null: no limit. */
  readonly nproc: number | null
  readonly stdout: Output
  readonly stderr: Output
  /** Run it as this user (with setpriv, keeping the user's groups); null: as pmjq. */
  readonly user: Account | null
  /** Where to write the record the moment the process ends (see spawner.ts); null: not written. */
  readonly record: { readonly file: string; readonly base: RecordBase } | null
}

/** What the spawners need to keep the heartbeat of a node whose pmjq left. */
export type Handover = Omit<KeepRequest["keep"], "spawners">

export interface RunningProcess {
  readonly pid: number
  /** When it started (proc.ts: ProcessId), read by its spawner before it could be reaped; null without /proc. */
  readonly startTicks: number | null
  /** Resolves when the process exits. */
  readonly exit: Effect.Effect<ProcessExit>
  /** SIGTERM to the group, then SIGKILL after `killAfter`; resolves with the exit. */
  readonly terminate: (killAfter: Duration.DurationInput) => Effect.Effect<ProcessExit>
}

export class ProcessRunner extends Context.Tag("pmjq/ProcessRunner")<
  ProcessRunner,
  {
    /**
     * Starts the process. Closing the scope while it still runs terminates its
     * group, so no child outlives the fiber that started it. When it fails
     * (JobBusy, NoSpawner, SpawnFailed), no output file made for it is left behind.
     */
    readonly spawn: (spec: ProcessSpec) => Effect.Effect<RunningProcess, JobBusy | NoSpawner | SpawnFailed, Scope.Scope>
    /**
     * The helper processes that jobs depend on (the spawners): after a crash,
     * jobs may run until these are gone too.
     */
    readonly helpers: Effect.Effect<ReadonlyArray<ProcessId>>
    /**
     * Waits until a spawner starts that no heartbeat lists yet. Spawners start
     * when a job is about to be claimed (`prepare`; pmjq idle runs none), and a
     * job goes to a new one only once a heartbeat lists it (`listed`): a pmjq
     * killed meanwhile would otherwise look dead to the other nodes on this
     * host while its job still ran, and the job would run twice.
     */
    readonly unlisted: Effect.Effect<void>
    /**
     * Starts every spawner that is not running, ahead of the jobs about to be
     * claimed: its start (~150 ms) overlaps their claims instead of following.
     */
    readonly prepare: Effect.Effect<void>
    /** A heartbeat naming these helpers' pids is on disk: jobs may go to them. */
    readonly listed: (spawners: ReadonlyArray<ProcessId>) => Effect.Effect<void>
    /**
     * --on-stop leave: from now on, whenever pmjq goes (a stop, a crash), the
     * spawners see its jobs to their end, write their records, and keep the
     * node's heartbeat fresh meanwhile (protocol.ts: KeepRequest).
     */
    readonly keepJobs: (handover: Handover) => Effect.Effect<void>
    /**
     * A stop with --on-stop leave: closing a job's scope no longer stops it.
     * Returns how many jobs are left running.
     */
    readonly leave: Effect.Effect<number>
    /** Whether the jobs have been left to the spawners. */
    readonly leaving: Effect.Effect<boolean>
    /**
     * Kills every running job's process group at once (SIGKILL), for a node
     * cut off from the spool: another node is about to run them again. For
     * good: a job whose start is reported afterwards is killed as it comes.
     * Returns how many were killed.
     */
    readonly killAll: Effect.Effect<number>
  }
>() {
  static readonly layer = (settings: RunnerSettings) => Layer.scoped(ProcessRunner, Effect.suspend(() => makeSpawnerRunner(settings)))
}

export interface RunnerSettings {
  /**
   * A spawner with no job for this long is let go (--spawner-idle); the next
   * job starts one again. Each is a Node process of ~43 MiB that takes
   * ~150 ms to start: idle pmjq holds none.
   */
  readonly spawnerIdle: Duration.DurationInput
}

/** Default wait between SIGTERM and SIGKILL when a scope closes on a live process. */
const RELEASE_KILL_AFTER = Duration.seconds(5)

// A spawner's event loop is blocked while each fork(2) + exec(2) completes
// (libuv waits to learn whether the exec worked); with two, one forks while the
// other waits. Measured draining trivial jobs on 2 cores, together with direct
// filesystem calls: +30 %; a third gained nothing.
const SPAWNERS = 2
const SPAWNER = fileURLToPath(new URL("./spawner.js", import.meta.url))

// exec(2)'s errno, in words a job's author can act on. The file itself was
// just claimed, so ENOENT means its #! interpreter is missing.
const execErrors: Record<string, string> = {
  ENOENT: "its #! interpreter was not found",
  EACCES: "permission denied (no execute permission, or a noexec mount)",
  ENOEXEC: "not an executable format",
  E2BIG: "its environment is too large",
  ENOMEM: "out of memory"
}

const spawnError = (file: string, code: string, message: string): JobBusy | SpawnFailed =>
  code === "ETXTBSY"
    ? new JobBusy({ path: file })
    : new SpawnFailed({ path: file, code, reason: `${code}: ${execErrors[code] ?? message}` })

// A job is its spawner's child, not pmjq's: pmjq cannot know it is unreaped,
// so every signal goes through signalGroupOf (never to a group whose leader's
// pid is another process's by now).
const track = (job: ProcessId, exited: Deferred.Deferred<ProcessExit>): RunningProcess => {
  const exit = Deferred.await(exited)
  const terminate = (killAfter: Duration.DurationInput) =>
    Effect.gen(function*() {
      if (yield* Deferred.isDone(exited)) return yield* exit
      signalGroupOf(job, "SIGTERM")
      // This runs when the caller is being interrupted, often in a finalizer.
      // Only the wait is made interruptible, inside the race's own fiber, so the
      // timeout can cancel it; wrapping the whole timeout instead would let the
      // caller's pending interruption cut it short and skip the SIGKILL.
      const done = yield* exit.pipe(Effect.interruptible, Effect.timeoutOption(killAfter))
      // SIGKILL to the group either way: after the wait, or to whatever is left
      // once the job's own process is over (a child that ignores SIGTERM).
      signalGroupOf(job, "SIGKILL")
      return done._tag === "Some" ? done.value : yield* exit
    })
  return { pid: job.pid, startTicks: job.startTicks, exit, terminate }
}

/** A running spawner, as pmjq knows it. */
interface Helper {
  /** Its pid and start time, read while it is pmjq's unreaped child. */
  readonly id: ProcessId
  /** Open once a heartbeat lists it (or it is gone: whoever waited looks again). */
  readonly listed: Effect.Latch
  /** Open once it said it is ready (protocol.ts: Ready), or it is gone. */
  readonly ready: Effect.Latch
  /** Whether a job was given to it, or ended under it, since the last look for idle ones. */
  used: boolean
  /** Jobs waiting for it to be ready and listed: it is not let go meanwhile. */
  waiting: number
  /** It said it is ready: it started. One that ends before it did (not let go) failed to start. */
  served: boolean
}

interface InFlight {
  readonly path: string
  /** The spawner that forks it: only that one's death concerns this job. */
  readonly owner: cp.ChildProcess
  readonly exited: Deferred.Deferred<ProcessExit>
  /** Until the spawner says the process started (or could not). */
  started: ((result: Effect.Effect<RunningProcess, JobBusy | NoSpawner | SpawnFailed>) => void) | null
  process: ProcessId | null
}

const makeSpawnerRunner = (settings: RunnerSettings) => Effect.gen(function*() {
  // For the logs of Node's callbacks (a spawner that failed to start).
  const runtime = yield* Effect.runtime<never>()
  const inFlight = new Map<number, InFlight>()
  const killed = new Set<number>()
  // killAll sees only the pids already reported: a job forked just before the
  // cut reports later, and would run on beside the node that takes it over.
  let cutOff = false
  const kill = (job: ProcessId) => {
    killed.add(job.pid)
    signalGroupOf(job, "SIGKILL")
  }
  let left = false
  let keeping: Handover | null = null
  let nextId = 0
  const spawners: Array<cp.ChildProcess | null> = Array.from({ length: SPAWNERS }, () => null)
  const known = new WeakMap<cp.ChildProcess, Helper>()
  // Told to the heartbeat (Beating), which lists a new spawner at once.
  const started = yield* Queue.sliding<void>(1)
  // Jobs are dealt to the spawners in turn.

  const onReport = (report: SpawnReport) => {
    const job = inFlight.get(report.id)
    if (job === undefined) return
    const helper = known.get(job.owner)
    if (helper !== undefined) helper.used = true
    if ("pid" in report) {
      job.process = { pid: report.pid, startTicks: report.startTicks }
      if (cutOff) kill(job.process)
      job.started?.(Effect.succeed(track(job.process, job.exited)))
      job.started = null
    } else if ("error" in report) {
      inFlight.delete(report.id)
      job.started?.(Effect.fail(spawnError(job.path, report.error.code, report.error.message)))
    } else {
      inFlight.delete(report.id)
      // Killed by killAll: its end is not its outcome (the spawner's record is not kept).
      const cut = job.process !== null && killed.delete(job.process.pid)
      Deferred.unsafeDone(job.exited, Effect.succeed({
        exitCode: report.exitCode,
        signal: report.signal,
        times: { startedAt: report.startedAt, endedAt: report.endedAt },
        recorded: report.recorded,
        ...(cut ? { lost: "killed: this node was cut off from the spool, and another runs it again" } : {})
      }))
    }
  }

  // The spawner died (killed by hand, out of memory): exit statuses of its
  // children can no longer reach us. No job may run on unobserved, so their
  // groups are killed and they end as interrupted, with the reason on record.
  const onLost = (slot: number, child: cp.ChildProcess) => () => {
    const helper = known.get(child)
    // Once ('error' and 'disconnect' may both come), and not for one let go.
    if (spawners[slot] === child) {
      spawners[slot] = null
      if (helper !== undefined && !helper.served) failedStart(slot, `pmjq's spawner process ${helper.id.pid} ended before it took a job`)
    }
    helper?.listed.unsafeOpen()
    helper?.ready.unsafeOpen()
    // Left to the spawners on purpose: they answer for those jobs now.
    if (left) return
    for (const [id, job] of inFlight) {
      if (job.owner !== child) continue
      inFlight.delete(id)
      if (job.process === null) {
        job.started?.(Effect.fail(new SpawnFailed({ path: job.path, code: "ESPAWNER", reason: "pmjq's spawner process died" })))
      } else {
        // Reparented to init now: it may have ended and its pid gone to another.
        signalGroupOf(job.process, "SIGKILL")
        Deferred.unsafeDone(job.exited, Effect.succeed({ exitCode: null, signal: "SIGKILL", lost: "pmjq's spawner process died" }))
      }
    }
  }

  // Spawners that failed to start in a row (the fork failed, or one ended
  // before it took a job): the next fork waits 100 ms, doubling to 30 s, and
  // each failure is logged, so a spawner that cannot start (a broken install,
  // no memory, no pids left) costs a fork every 30 s, never one per job and
  // retry. Jobs meanwhile are retried, then handed back (Job.ts: start).
  const failures = Array.from({ length: SPAWNERS }, () => 0)
  const lastFailedAt = Array.from({ length: SPAWNERS }, () => 0)
  const failedStart = (slot: number, reason: string) => {
    failures[slot]! += 1
    lastFailedAt[slot] = Date.now()
    Runtime.runFork(runtime)(Effect.logError("pmjq's spawner could not be started; jobs wait").pipe(Effect.annotateLogs({ reason, inARow: failures[slot] })))
  }
  const backingOff = (slot: number) =>
    failures[slot]! > 0 && Date.now() - lastFailedAt[slot]! < Math.min(100 * 2 ** (failures[slot]! - 1), 30_000)

  // The spawner of SLOT, forked when there is none; null when there is none to be had.
  const ensureSpawner = (slot: number): cp.ChildProcess | null => {
    const spawner = spawners[slot]
    if (spawner !== null && spawner !== undefined && spawner.connected) return spawner
    if (backingOff(slot)) return null
    let child: cp.ChildProcess
    try {
      child = cp.fork(SPAWNER, [], { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv: [], serialization: "json" })
    } catch (e) {
      // Thrown, not emitted: ENOMEM, or no file descriptor left for its pipes.
      failedStart(slot, e instanceof Error ? e.message : String(e))
      return null
    }
    child.on("message", (message: SpawnReport | Ready) => {
      if (!("ready" in message)) return onReport(message)
      const helper = known.get(child)
      if (helper === undefined) return
      helper.served = true
      failures[slot] = 0
      helper.ready.unsafeOpen()
    })
    // Messages already sent arrive before 'disconnect'.
    child.once("disconnect", onLost(slot, child))
    // 'error' covers a failed fork and a send on a closed channel; either way
    // that spawner is done. (A listener must stay: an unheard 'error' throws.)
    child.on("error", onLost(slot, child))
    if (child.pid === undefined) {
      failedStart(slot, "fork failed")
      return null
    }
    spawners[slot] = child
    known.set(child, { id: identify(child.pid), listed: Effect.unsafeMakeLatch(false), ready: Effect.unsafeMakeLatch(false), used: true, waiting: 0, served: false })
    started.unsafeOffer(undefined)
    tellKeep()
    return child
  }

  // The spawner for the next job, once it is ready and a heartbeat lists it. The wait can be
  // interrupted (a stop; a node cut off from the spool, whose beats fail).
  const readySpawner = (slot: number) =>
    Effect.suspend(() => {
      // The jobs were left (a stop): this one stays queued, and no spawner starts.
      if (left) return Effect.interrupt
      const owner = ensureSpawner(slot)
      const helper = owner === null ? undefined : known.get(owner)
      if (owner === null || helper === undefined) return Effect.fail(new NoSpawner({ reason: "pmjq's spawner process could not be started" }))
      helper.waiting++
      return Effect.zipRight(helper.ready.await, helper.listed.await).pipe(
        Effect.interruptible,
        Effect.ensuring(Effect.sync(() => helper.waiting--)),
        Effect.as(owner)
      )
    })

  // Opens the spawners a heartbeat on disk lists: by pid and start time, as
  // every process pmjq writes down (a pid may have been another's then); by
  // pid alone only when the heartbeat lists one so (its readers do the same).
  const listed = (ids: ReadonlyArray<ProcessId>) =>
    Effect.sync(() => {
      for (const spawner of spawners) {
        const helper = spawner === null ? undefined : known.get(spawner)
        if (helper !== undefined && ids.some((id) => id.pid === helper.id.pid && (id.startTicks === null || id.startTicks === helper.id.startTicks))) helper.listed.unsafeOpen()
      }
    })

  // A spawner given no job for a whole --spawner-idle, with none waiting for
  // it, is let go: told to retire (it exits once the output of its jobs'
  // children is all copied), then disconnected. Not while jobs are left to the
  // spawners (--on-stop leave): those spawners answer for them.
  const letIdleGo = Effect.suspend(() => {
    if (left) return Effect.void
    const gone = spawners.flatMap((spawner, slot) => {
      const helper = spawner === null ? undefined : known.get(spawner)
      if (spawner === null || helper === undefined) return []
      const busy = helper.waiting > 0 || [...inFlight.values()].some((job) => job.owner === spawner)
      if (busy || helper.used) {
        helper.used = busy
        return []
      }
      spawners[slot] = null
      if (!spawner.connected) return []
      const retire: RetireRequest = { retire: true }
      spawner.send(retire)
      spawner.disconnect()
      // It may copy a job's late output a while (spawner.ts: retire); pmjq does not wait for it.
      spawner.unref()
      return [helper.id.pid]
    })
    return Effect.forEach(gone, (pid) => Effect.logDebug("spawner let go: no job for --spawner-idle").pipe(Effect.annotateLogs({ pid })), { discard: true })
  })
  yield* letIdleGo.pipe(Effect.repeat(Schedule.spaced(settings.spawnerIdle)), Effect.forkScoped)

  // Each spawner knows every other (only the first that runs beats): told
  // again whenever one is started.
  function tellKeep() {
    if (keeping === null) return
    const live = spawners.filter((s): s is cp.ChildProcess => s !== null && s.connected && s.pid !== undefined)
    const message: KeepRequest = { keep: { ...keeping, spawners: live.flatMap((s) => Option.toArray(Option.fromNullable(known.get(s)?.id))) } }
    for (const spawner of live) spawner.send(message)
  }
  // A spawner left jobs to keep (--on-stop leave, SIGHUP) lives until they
  // end: not waited for (the restart in place left the old pmjq running beside
  // the new one until then). Otherwise pmjq waits for the spawners to exit,
  // having relayed the last of the jobs' output to pmjq's own.
  yield* Effect.addFinalizer(() =>
    Effect.sync(() =>
      spawners.forEach((s, slot) => {
        // Out of its slot first: one disconnected before it said it was ready
        // (a short --drain) did not fail to start (onLost).
        spawners[slot] = null
        if (s?.connected) s.disconnect()
        if (left) s?.unref()
      })
    )
  )

  // The request to OWNER; resumed by its report (onReport) or its death (onLost).
  // Whatever happened while it waited (the spawner died, or was let go, or
  // the jobs were left), a job goes only to its slot's spawner as it is now;
  // otherwise it fails with NoSpawner and the caller tries again (Job.ts:
  // start), so a job that was never sent is never lost.
  const ask = (id: number, slot: number, owner: cp.ChildProcess, spec: ProcessSpec) =>
    Effect.async<RunningProcess, JobBusy | NoSpawner | SpawnFailed>((resume) => {
      if (left) return resume(Effect.interrupt)
      if (spawners[slot] !== owner || !owner.connected) return resume(Effect.fail(new NoSpawner({ reason: "pmjq's spawner process ended before the job was sent to it" })))
      const helper = known.get(owner)
      if (helper !== undefined) helper.used = true
      inFlight.set(id, { path: spec.path, owner, exited: Deferred.unsafeMake(FiberId.none), started: resume, process: null })
      const request: SpawnRequest = {
        id,
        path: spec.path,
        cwd: spec.cwd,
        env: spec.env,
        keepEnv: spec.keepEnv,
        nproc: spec.nproc,
        stdout: spec.stdout === "inherit" ? null : spec.stdout.file,
        stderr: spec.stderr === "inherit" ? null : spec.stderr.file,
        record: spec.record,
        user: spec.user
      }
      owner.send(request)
    })

  const spawn = (spec: ProcessSpec) =>
    Effect.acquireRelease(
      Effect.suspend(() => {
        const id = nextId++
        const slot = id % SPAWNERS
        return Effect.flatMap(readySpawner(slot), (owner) => ask(id, slot, owner, spec))
      }),
      (process) => Effect.suspend(() => (left ? Effect.void : process.terminate(RELEASE_KILL_AFTER)))
    )

  const helpers = Effect.sync(() => spawners.flatMap((s) => Option.toArray(Option.fromNullable(s === null ? undefined : known.get(s)?.id))))

  // Spawns already asked for are let through first: a job whose fiber gives
  // up waiting (and hands its file back to the spool) must not start anyway
  // under a spawner that no longer stops what it runs.
  const noSpawnPending = Effect.sync(() => [...inFlight.values()].every((job) => job.process !== null)).pipe(
    Effect.repeat({ until: (done) => done, schedule: Schedule.spaced("10 millis") })
  )

  const keepJobs = (handover: Handover) => Effect.sync(() => {
    keeping = handover
    tellKeep()
  })

  const leave = Effect.zipRight(
    noSpawnPending,
    Effect.sync(() => {
      left = true
      return [...inFlight.values()].filter((job) => job.process !== null).length
    })
  )

  const killAll = Effect.sync(() => {
    cutOff = true
    const running = [...inFlight.values()].flatMap((job) => (job.process === null ? [] : [job.process]))
    running.forEach(kill)
    return running.length
  })

  const prepare = Effect.sync(() => {
    if (!left) spawners.forEach((_, slot) => ensureSpawner(slot))
  })

  return ProcessRunner.of({ spawn, helpers, unlisted: Queue.take(started), prepare, listed, keepJobs, leave, leaving: Effect.sync(() => left), killAll })
})
