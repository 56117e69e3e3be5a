/**
 * One claimed job, from exec to archive, in three steps: what it is (refusal
 * checks on the claimed file, its owner, its record's first fields), how it
 * ended (refused, never started, or its process's exit: spawn, wait, time-out,
 * a stop), and its archival. The run is scoped: if the fiber is interrupted
 * (pmjq stopping), the job's process group is terminated, and the job is still
 * recorded and archived as "interrupted" before the fiber ends; or, with
 * --on-stop leave, left running under its spawner for the next pmjq to adopt.
 */
import { Cause, Clock, Deferred, Duration, Effect, type Fiber, Option, Ref, Schedule, type Scope } from "effect"
import type { ArchiveFailed, ClaimLost } from "../errors/errors.js"
import type { ProcessId } from "../process/proc.js"
import { type Ending, iso, judge, type JobRecord, type ProcessExit, type RecordBase, startedRecord, unstartedRecord } from "../record/record.js"
import { besideClaim } from "../spool/layout.js"
import { type Claim, Spool } from "../spool/Spool.js"
import { refusal, type RefusalPolicy } from "../owners/refusal.js"
import { dependencyNames, judgeDependencies, READY, type Verdict } from "../directives/dependencies.js"
import { describeProblem } from "../directives/directives.js"
import { type Account, Users } from "../owners/Users.js"
import { Archive, destinationOf, type FinishedJob } from "./Archive.js"
import { ProcessRunner, type RunningProcess } from "./Runner.js"

export interface JobSettings {
  readonly spool: string
  readonly node: string
  readonly host: string
  readonly user: string
  readonly workdir: string
  readonly archiveDir: Option.Option<string>
  readonly errorDir: Option.Option<string>
  /** Between SIGTERM and SIGKILL when a job has to be stopped. */
  readonly killAfter: Duration.DurationInput
  /** A job running longer is stopped (SIGTERM, SIGKILL after `grace`) and recorded as timed-out. */
  readonly timeout: Option.Option<Duration.Duration>
  /** How long running jobs may go on after a stop was asked for; also a timed-out job's time between SIGTERM and SIGKILL. */
  readonly grace: Duration.DurationInput
  /** Which files are refused (rejected, never run), and whether jobs run as their owner. */
  readonly policy: RefusalPolicy
  /** Where refused jobs go when there is no error dir: job-spool/.pmjq/rejected. */
  readonly rejectedDir: string
  /** How long to keep retrying a job whose file is still open for writing. */
  readonly busyFor: Duration.DurationInput
  /** Names a job run as its owner keeps from pmjq's environment (--keep-env); default none. */
  readonly keepEnv?: ReadonlyArray<string>
  /** RLIMIT_NPROC of each job run as its owner (--job-nproc); default no limit. */
  readonly jobNproc?: number | null
}


/** Hidden names, so a job called "x.out" never meets the output of a job called "x". */
const outputFiles = (claim: Claim) => ({ stdout: besideClaim(claim.path, ".out"), stderr: besideClaim(claim.path, ".err") })

// A full or missing archive dir: the job waits, finished and whole, in the
// running folder, and archival is tried again, soon and then once a minute.
const archiveRetry = Schedule.exponential("1 second").pipe(Schedule.union(Schedule.spaced("1 minute")))

/** What the daemon hears of a job as it runs. */
export interface JobEvents {
  /**
   * Its process is over (or never started): its -j slot and its place in the
   * CPU gate are free from then on, while the archival goes on.
   */
  readonly processEnded: Effect.Effect<void>
  /**
   * Archival retries after a first failure, run on without holding up a stop
   * (the job is safe on disk, and the next start archives it).
   */
  readonly keep: (retries: Effect.Effect<void>) => Effect.Effect<void>
  /** Its process once it runs (for the heartbeat's job list). */
  readonly started: (job: ProcessId) => Effect.Effect<void>
  /** Its record, once its end is known, before its archival (metrics, its trace). */
  readonly finished: (record: JobRecord) => Effect.Effect<void>
  /** Its entry, once placed whole (DIR/STAMP_NAME, without suffix), with its record. */
  readonly archived: (record: JobRecord, entry: string) => Effect.Effect<void>
  /** Marks a part of its life (pmjq.run, pmjq.archive) for its trace, when there is one. */
  readonly phase: (name: "pmjq.run" | "pmjq.archive") => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * Completed, with who asks, when the job is to be cancelled (`pmjq cancel`);
   * whoever completes it then interrupts the fiber `waiting` holds, if any: the
   * job's fiber while it waits for its process (no fiber is forked per job to
   * race the two: measured, that cost 100 µs of pmjq's CPU per job).
   */
  readonly cancel: Deferred.Deferred<string>
  readonly waiting: Ref.Ref<Option.Option<Fiber.RuntimeFiber<unknown, unknown>>>
}

/** A claimed job as pmjq found it: why it is refused (or null), and its record's first fields. */
const inspect = Effect.fnUntraced(function*(claim: Claim, settings: JobSettings) {
  const spool = yield* Spool
  const users = yield* Users
  // Checked on the claimed file, which only pmjq can change from here on.
  // A requeued file (recovery's note matches it) may have one more name for a
  // while: recovery's own, in a dead node's folder, when a crash came between
  // its link and its unlink (the next round removes it). Not a name anyone
  // else could change it by.
  const facts = yield* spool.facts(claim).pipe(
    Effect.map((f) => (claim.noteKey !== null && f.nlink === 2 ? { ...f, nlink: 1 } : f)),
    Effect.option
  )
  const ownerGroups = settings.policy.allowGroups !== null && Option.isSome(facts) ? yield* users.groups(facts.value.uid) : []
  const asOwner = settings.policy.asRoot && settings.policy.runAsOwner
  const owner = asOwner && Option.isSome(facts) ? yield* users.account(facts.value.uid) : Option.none<Account>()
  const refused = Option.match(facts, {
    onNone: () => "it could not be inspected",
    onSome: (f) =>
      refusal(f, settings.policy, () => ownerGroups) ??
        (claim.read.problem !== null ? describeProblem(claim.read.problem) : null) ??
        (asOwner && Option.isNone(owner) ? `its owner, uid ${f.uid}, has no account here` : null)
  })
  const verdict = refused === null ? yield* judgeClaim(claim) : READY
  const base: RecordBase = {
    name: claim.name,
    node: settings.node,
    host: settings.host,
    user: Option.match(owner, { onNone: () => settings.user, onSome: (a) => a.name }),
    uid: Option.match(facts, { onNone: () => null, onSome: (f) => f.uid }),
    inode: Option.match(facts, { onNone: () => null, onSome: (f) => f.ino }),
    attempt: claim.attempt,
    claimedAt: iso(claim.claimedAt)
  }
  // Who may read its record: its owner (uid, primary gid when known).
  const readers = Option.match(owner, {
    onSome: (a) => ({ uid: a.uid, gid: a.gid }),
    onNone: () => Option.match(facts, { onNone: () => null, onSome: (f) => ({ uid: f.uid, gid: f.gid }) })
  })
  return { refused, verdict, base, owner: Option.getOrNull(owner), readers }
})

/**
 * Whether the claimed job may run now, by the directives read through the
 * claim's descriptor: held or waiting goes back to the queue; a failed
 * dependency (or a loop the queue found) ends it unrun.
 */
const judgeClaim = (claim: Claim) =>
  Effect.gen(function*(): Effect.fn.Return<Verdict, never, Spool> {
    const d = claim.read.directives
    if (d.hold) return { _tag: "Waiting", reason: "held (#PMJQ --hold)" }
    const names = dependencyNames(d)
    if (names.length === 0) return READY
    if (claim.loop !== undefined) return { _tag: "Failed", reason: claim.loop }
    const spool = yield* Spool
    return yield* spool.dependencies(names, claim.owner).pipe(
      Effect.map((facts) => judgeDependencies(d, facts)),
      Effect.orElseSucceed((): Verdict => ({ _tag: "Waiting", reason: "its dependencies could not be looked up" }))
    )
  })

type Inspected = Effect.Effect.Success<ReturnType<typeof inspect>>

/** How a job ended, before it is written down; "released" when it went back to the spool. */
interface Ended {
  readonly ending: Ending
  readonly pid: number | null
  readonly startedAt: number
  readonly endedAt: number
}

/** How the wait for a job's process ended. */
type Waited =
  | { readonly _tag: "Exited"; readonly exit: ProcessExit }
  | { readonly _tag: "TimedOut" }
  | { readonly _tag: "Stopped" }
  | { readonly _tag: "Cancelled"; readonly by: string }

/** How the spawn ended: a process, a file handed back (busy, or a stop first), or one that cannot start. */
type Spawned =
  | { readonly _tag: "Started"; readonly proc: RunningProcess }
  | { readonly _tag: "Back"; readonly why: string }
  | { readonly _tag: "Unstartable"; readonly reason: string }

const interrupted = <A>(value: A) => (cause: Cause.Cause<never>) =>
  Cause.isInterruptedOnly(cause) ? Effect.succeed(value) : Effect.failCause(cause)

type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/** An ending, with the time it came (and when its process started, if it did). */
const endedNow = (ending: Ending, pid: number | null = null, startedAt?: number) =>
  Effect.map(Clock.currentTimeMillis, (now): Ended => ({ ending, pid, startedAt: startedAt ?? now, endedAt: now }))

/** Back to the queue, never started, unless a new job took its name meanwhile. */
const handBack = (claim: Claim, why: string, said: string) =>
  Effect.gen(function*() {
    const spool = yield* Spool
    if (yield* spool.release(claim).pipe(Effect.orElseSucceed(() => false))) {
      yield* Effect.logInfo(said).pipe(Effect.annotateLogs({ reason: why }))
      return "released" as const
    }
    return yield* endedNow({ _tag: "NotStarted", reason: `${why}, and a new job took its name in the spool` })
  })

/** How a job ends before any process: refused, cancelled while claimed, a dependency failed, or back to wait; none when it is to start. */
const beforeStart = (claim: Claim, job: Inspected, events: JobEvents) =>
  Effect.gen(function*(): Effect.fn.Return<Option.Option<Ended | "released">, never, Spool> {
    if (job.refused !== null) {
      yield* events.processEnded
      yield* Effect.logWarning("rejected").pipe(Effect.annotateLogs({ reason: job.refused }))
      return Option.some(yield* endedNow({ _tag: "Rejected", reason: job.refused }))
    }
    // A cancel is seen before the job's dependencies: a waiting job cancelled is cancelled, not put back.
    const early = yield* Deferred.poll(events.cancel)
    if (Option.isSome(early)) {
      yield* events.processEnded
      return Option.some(yield* endedNow({ _tag: "Cancelled", by: yield* early.value, exit: null }))
    }
    if (job.verdict._tag === "Failed") {
      yield* events.processEnded
      yield* Effect.logWarning("dependency failed").pipe(Effect.annotateLogs({ reason: job.verdict.reason }))
      return Option.some(yield* endedNow({ _tag: "DependencyFailed", reason: job.verdict.reason }))
    }
    if (job.verdict._tag === "Waiting") {
      // Not to run yet: back to the queue, where it waits without a claim.
      yield* events.processEnded
      return Option.some(yield* handBack(claim, job.verdict.reason, "waiting"))
    }
    return Option.none()
  })

/** The claim made durable, then the job's process started through a spawner: started, handed back, or unstartable. */
const start = (claim: Claim, settings: JobSettings, job: Inspected, files: ReturnType<typeof outputFiles> | null, restore: Restore) =>
  Effect.gen(function*(): Effect.fn.Return<Spawned, never, ProcessRunner | Spool | Scope.Scope> {
    const runner = yield* ProcessRunner
    const spool = yield* Spool
    // A stop while the spawner forks and execs: the process may be running by
    // the time the interruption is seen. Noted as soon as the spawn returns
    // (before any point where the stop can cut in), so that it is stopped and
    // recorded, never handed back to the queue while it runs.
    const startedProc = yield* Ref.make(Option.none<RunningProcess>())
    // ETXTBSY: a writer still holds the file open. It is not ready: wait and
    // retry, backing off to once a second, and after `busyFor` hand it back.
    // The same when no spawner could take it (Runner.ts: NoSpawner).
    const spawn = runner.spawn({
      path: claim.path,
      cwd: settings.workdir,
      env: { PMJQ_JOB: claim.name, PMJQ_SPOOL: settings.spool, PMJQ_NODE: settings.node, PMJQ_ATTEMPT: String(claim.attempt) },
      keepEnv: settings.keepEnv ?? [],
      nproc: settings.jobNproc ?? null,
      stdout: files === null ? "inherit" : { file: files.stdout },
      stderr: files === null ? "inherit" : { file: files.stderr },
      record: { file: besideClaim(claim.path, ".json"), base: job.base },
      user: job.owner
    }).pipe(Effect.tap((proc) => Ref.set(startedProc, Option.some(proc))), Effect.uninterruptible, Effect.retry({
      while: (e) => e._tag === "JobBusy" || e._tag === "NoSpawner",
      schedule: Schedule.exponential("10 millis").pipe(Schedule.union(Schedule.spaced("1 second")), Schedule.upTo(settings.busyFor))
    }))
    // The claim is on disk before the job starts: after a power cut, a job
    // that ran is found claimed (recovery records it), never queued again.
    const uncommitted = yield* spool.commit(claim).pipe(Effect.as(null), Effect.catchAll((e) => Effect.succeed(e.reason)))
    if (uncommitted !== null) return { _tag: "Back", why: `its claim could not be synced to disk (${uncommitted})` }
    return yield* restore(spawn).pipe(
      Effect.map((proc): Spawned => ({ _tag: "Started", proc })),
      Effect.catchTags({
        JobBusy: () => Effect.succeed<Spawned>({ _tag: "Back", why: "still open for writing (ETXTBSY)" }),
        NoSpawner: (e) => Effect.succeed<Spawned>({ _tag: "Back", why: e.reason }),
        SpawnFailed: (e) => Effect.succeed<Spawned>({ _tag: "Unstartable", reason: e.message })
      }),
      Effect.catchAllCause((cause) =>
        Effect.flatMap(Ref.get(startedProc), Option.match({
          onNone: () => interrupted<Spawned>({ _tag: "Back", why: "pmjq stopped before it started" })(cause),
          // Started all the same: the wait below sees the stop at once.
          onSome: (proc) => interrupted<Spawned>({ _tag: "Started", proc })(cause)
        }))
      )
    )
  })

/** The wait for PROC's end: its exit, --timeout, a cancel, or a stop. */
const waitFor = (proc: RunningProcess, settings: JobSettings, events: JobEvents, restore: Restore) =>
  Effect.gen(function*(): Effect.fn.Return<Waited> {
    const exited: Effect.Effect<Waited> = Option.match(settings.timeout, {
      onNone: () => Effect.map(proc.exit, Option.some),
      onSome: (limit) => Effect.timeoutOption(proc.exit, limit)
    }).pipe(
      Effect.map(Option.match({ onNone: () => ({ _tag: "TimedOut" as const }), onSome: (exit) => ({ _tag: "Exited" as const, exit }) }))
    )
    // A cancel asked for before this point is seen here; one asked for during
    // the wait interrupts it, and is told from a stop by the deferred.
    const self = yield* Effect.withFiberRuntime<Fiber.RuntimeFiber<unknown, unknown>>((fiber) => Effect.succeed(fiber))
    yield* Ref.set(events.waiting, Option.some(self))
    const cancelAsked = Effect.flatMap(Deferred.poll(events.cancel), Option.match({ onNone: () => Effect.succeedNone, onSome: Effect.asSome }))
    const asked = yield* cancelAsked
    const waited: Waited = Option.isSome(asked)
      ? { _tag: "Cancelled", by: asked.value }
      : yield* restore(exited).pipe(
        Effect.catchAllCause(interrupted<Waited>({ _tag: "Stopped" })),
        Effect.flatMap((w): Effect.Effect<Waited> =>
          w._tag !== "Stopped" ? Effect.succeed(w) : Effect.map(cancelAsked, Option.match({
            onNone: () => w,
            onSome: (by): Waited => ({ _tag: "Cancelled", by })
          }))
        )
      )
    yield* Ref.set(events.waiting, Option.none())
    return waited
  })

/** What the wait's end makes of the job: its process stopped where pmjq judged so; "left" to its spawner on --on-stop leave. */
const endingOf = (waited: Waited, proc: RunningProcess, settings: JobSettings) =>
  Effect.gen(function*(): Effect.fn.Return<Ending | "left", never, ProcessRunner> {
    switch (waited._tag) {
      case "Exited":
        return { _tag: "Exited", exit: waited.exit, interrupted: false, timedOut: null }
      case "Cancelled":
        yield* Effect.logInfo("cancelled; stopping its process group").pipe(Effect.annotateLogs({ by: waited.by }))
        return { _tag: "Cancelled", by: waited.by, exit: yield* proc.terminate(settings.grace) }
      case "Stopped": {
        if (yield* (yield* ProcessRunner).leaving) {
          // --on-stop leave: it runs on under its spawner, which writes its record;
          // the next pmjq with this node id adopts and archives it.
          yield* Effect.logInfo("left running").pipe(Effect.annotateLogs({ pid: proc.pid }))
          return "left"
        }
        return { _tag: "Exited", exit: yield* proc.terminate(settings.killAfter), interrupted: true, timedOut: null }
      }
      case "TimedOut": {
        const limit = Duration.format(Option.getOrThrow(settings.timeout))
        yield* Effect.logWarning("timed out; stopping its process group").pipe(Effect.annotateLogs({ timeout: limit }))
        return { _tag: "Exited", exit: yield* proc.terminate(settings.grace), interrupted: false, timedOut: limit }
      }
    }
  })

/**
 * Runs the job's process to its end. Called uninterruptibly; `restore` makes
 * the spawn and the wait interruptible, and a stop there is an ending too.
 */
const end = (
  claim: Claim,
  settings: JobSettings,
  job: Inspected,
  files: ReturnType<typeof outputFiles> | null,
  events: JobEvents,
  restore: Restore
): Effect.Effect<Ended | "released" | "left", never, ProcessRunner | Spool | Scope.Scope> =>
  Effect.gen(function*() {
    const early = yield* beforeStart(claim, job, events)
    if (Option.isSome(early)) return early.value
    const spawned = yield* start(claim, settings, job, files, restore)
    if (spawned._tag === "Unstartable") {
      yield* events.processEnded
      return yield* endedNow({ _tag: "NotStarted", reason: spawned.reason })
    }
    if (spawned._tag === "Back") {
      yield* events.processEnded
      return yield* handBack(claim, spawned.why, "released")
    }
    const proc = spawned.proc
    const startedAt = yield* Clock.currentTimeMillis
    yield* Effect.logInfo("started").pipe(Effect.annotateLogs({ pid: proc.pid }))
    yield* events.started({ pid: proc.pid, startTicks: proc.startTicks })
    const ending = yield* endingOf(yield* waitFor(proc, settings, events, restore), proc, settings)
    if (ending === "left") return ending
    yield* events.processEnded
    return yield* endedNow(ending, proc.pid, startedAt)
  })

/** Writes a job's end down (unless its spawner did) and archives it; retries go to `keep`. */
const archiveJob = (claim: Claim, settings: JobSettings, job: Inspected, files: ReturnType<typeof outputFiles> | null, result: Ended, events: JobEvents) =>
  Effect.gen(function*() {
    const archive = yield* Archive
    const spool = yield* Spool
    const { ending } = result
    const exit = ending._tag === "Exited" || ending._tag === "Cancelled" ? ending.exit : null
    // Already on disk when the spawner saw the process end and judged as we do.
    const recorded = exit !== null && exit.recorded === true && ending._tag === "Exited" && !ending.interrupted && ending.timedOut === null &&
      exit.lost === undefined
    const record: JobRecord = result.pid === null
      ? unstartedRecord(job.base, result.endedAt, judge(ending))
      : startedRecord(job.base, result.pid, exit?.times?.startedAt ?? result.startedAt, exit?.times?.endedAt ?? result.endedAt, ending)
    yield* Effect.log("finished").pipe(
      Effect.annotateLogs({
        outcome: record.outcome,
        ...(record.exitCode !== null ? { exitCode: record.exitCode } : {}),
        ...(record.signal !== null ? { signal: record.signal } : {}),
        durationMs: record.durationMs,
        ...(record.reason !== null ? { reason: record.reason } : {})
      })
    )
    yield* events.finished(record)
    // A job that never started has no output: the spawner removed its empty files.
    const output = result.pid === null ? null : files
    const finished: FinishedJob = {
      script: claim.path,
      stdout: output?.stdout ?? null,
      stderr: output?.stderr ?? null,
      recordFile: besideClaim(claim.path, ".json"),
      record,
      owner: job.readers
    }
    // Written down before anything moves: should pmjq die from here on, recovery
    // archives this outcome and never runs the job again. If it cannot be
    // written now, archival below writes it.
    const settled = recorded || (yield* archive.settle(finished).pipe(
      Effect.as(true),
      Effect.catchTag("ArchiveFailed", (error) =>
        Effect.as(Effect.logWarning("record not written yet").pipe(Effect.annotateLogs({ reason: error.message })), false))
    ))
    // Its record's name on disk too (the running folder synced, shared with
    // the claims and records of the moment): a power cut from here on finds
    // the job ended, never to run again, however long its archival takes.
    if (settled) {
      yield* spool.commit(claim).pipe(
        Effect.catchAll((error) => Effect.logWarning("record not synced to disk").pipe(Effect.annotateLogs({ reason: error.reason })))
      )
    }
    const destination = destinationOf(record.outcome, settings)
    const place = (fresh: boolean): Effect.Effect<string | null, ArchiveFailed | ClaimLost> =>
      Option.isSome(destination)
        ? archive.store(destination.value, { ...finished, fresh })
        : Effect.as(archive.discard(finished), null)
    const attempt = (fresh: boolean) =>
      place(fresh).pipe(Effect.tapErrorTag("ArchiveFailed", (error) =>
        Effect.logError("not archived yet; kept, will retry").pipe(Effect.annotateLogs({ reason: error.message, kept: claim.path }))
      ))
    const done = (placed: Effect.Effect<string | null, ArchiveFailed | ClaimLost>) =>
      placed.pipe(
        Effect.flatMap((entry) =>
          entry === null ? Effect.void : Effect.zipRight(Effect.logInfo("archived").pipe(Effect.annotateLogs({ path: entry })), events.archived(record, entry))
        ),
        Effect.zipRight(spool.vacated(claim)),
        Effect.catchTag("ClaimLost", (lost) =>
          Effect.logWarning("taken over by another node, which answers for it now").pipe(Effect.annotateLogs({ reason: lost.message })))
      )
    // The first try is part of the job's end, even when pmjq is stopping.
    // The first try is fresh: nothing was tried before it (Archive.store).
    yield* done(attempt(settled)).pipe(
      Effect.catchTag("ArchiveFailed", () =>
        events.keep(done(attempt(false).pipe(Effect.retry({ schedule: archiveRetry, while: (e) => e._tag === "ArchiveFailed" }), Effect.delay("1 second"))).pipe(
          Effect.catchAll(() => Effect.void), // never: the retries go on until one works
          Effect.annotateLogs({ job: claim.name })
        )))
    )
  })

/** Runs a claimed job to its archive (see JobEvents for what the daemon hears of it). */
// Traced as its run and its archival, children of the job's span (features/Jobs.ts).
export const runJob = Effect.fnUntraced(function*(claim: Claim, settings: JobSettings, events: JobEvents) {
  const job = yield* inspect(claim, settings)
  const capture = Option.isSome(settings.archiveDir) || Option.isSome(settings.errorDir)
  const files = capture ? outputFiles(claim) : null
  return yield* Effect.scoped(Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(end(claim, settings, job, files, events, restore).pipe(events.phase("pmjq.run")), (result) =>
      result === "released" || result === "left"
        ? Effect.void
        : archiveJob(claim, settings, job, files, result, events).pipe(events.phase("pmjq.archive")))
  )).pipe(Effect.annotateLogs({ job: claim.name }))
})
