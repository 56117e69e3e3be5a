/**
 * One claimed job, from exec to archive. The run is a scoped Effect: if the
 * fiber is interrupted (pmjq stopping), the job's process group is terminated,
 * and the job is still recorded and archived as "interrupted" before the fiber ends.
 */
import { Cause, Clock, Duration, Effect, Exit, Option, Schedule } from "effect"
import type { ArchiveFailed, ClaimLost } from "../errors.js"
import { type Ending, iso, judge, type JobRecord, type RecordBase, startedRecord, unstartedRecord } from "../record.js"
import { besideClaim } from "../spool/layout.js"
import { type Claim, Spool } from "../spool/Spool.js"
import { refusal, type RefusalPolicy } from "./refusal.js"
import { type Account, Users } from "./Users.js"
import { Archive, destinationOf, type Finished } from "./Archive.js"
import { type Output, ProcessRunner, type RunningProcess } from "./Runner.js"

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

/**
 * Runs a claimed job to its archive. `processEnded` is run as soon as the job's
 * process is over (or never started): its -j slot and its place in the CPU gate
 * are free from then on, while the archival goes on. If the first try at
 * archival fails, the job is kept and its later tries are handed to `keep`, so
 * that they run on without holding up a stop (the job is safe on disk, and the
 * next start archives it).
 */
export const runJob = Effect.fn("Job.run")(function*(
  claim: Claim,
  settings: JobSettings,
  processEnded: Effect.Effect<void>,
  keep: (retries: Effect.Effect<void>) => Effect.Effect<void>,
  /** Told the job's pid once its process runs (for the heartbeat's job list). */
  started: (pid: number) => Effect.Effect<void> = () => Effect.void
) {
  const runner = yield* ProcessRunner
  const archive = yield* Archive
  const spool = yield* Spool
  const users = yield* Users
  const capture = Option.isSome(settings.archiveDir) || Option.isSome(settings.errorDir)
  const files = capture ? outputFiles(claim) : null
  const output = (file: string | undefined): Output => (file === undefined ? "inherit" : { file })
  const recordFile = besideClaim(claim.path, ".json")
  // Checked on the claimed file, which only pmjq can change from here on.
  const facts = yield* spool.facts(claim).pipe(Effect.option)
  const ownerGroups = settings.policy.allowGroups !== null && Option.isSome(facts) ? yield* users.groups(facts.value.uid) : []
  const asOwner = settings.policy.asRoot && settings.policy.runAsOwner
  const owner = asOwner && Option.isSome(facts) ? yield* users.account(facts.value.uid) : Option.none<Account>()
  const refused = Option.match(facts, {
    onNone: () => "it could not be inspected",
    onSome: (f) =>
      refusal(f, settings.policy, () => ownerGroups) ??
        (asOwner && Option.isNone(owner) ? `its owner, uid ${f.uid}, has no account here` : null)
  })
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

  // ETXTBSY: a writer still holds the file open. It is not ready: wait and retry,
  // backing off to once a second, and after `busyFor` hand it back to the spool.
  const spawn = runner.spawn({
    path: claim.path,
    cwd: settings.workdir,
    env: { PMJQ_JOB: claim.name, PMJQ_SPOOL: settings.spool, PMJQ_NODE: settings.node, PMJQ_ATTEMPT: String(claim.attempt) },
    keepEnv: settings.keepEnv ?? [],
    nproc: settings.jobNproc ?? null,
    stdout: output(files?.stdout),
    stderr: output(files?.stderr),
    record: { file: recordFile, base },
    user: Option.getOrNull(owner)
  }).pipe(
    Effect.retry({
      while: (e) => e._tag === "JobBusy",
      schedule: Schedule.exponential("10 millis").pipe(
        Schedule.union(Schedule.spaced("1 second")),
        Schedule.upTo(settings.busyFor)
      )
    })
  )

  return yield* Effect.scoped(Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const spawned = refused === null ? yield* Effect.exit(restore(spawn)) : null
      const startedAt = yield* Clock.currentTimeMillis

      let ending: Ending
      let proc: RunningProcess | null = null
      if (spawned === null) {
        yield* processEnded
        yield* Effect.logWarning("rejected").pipe(Effect.annotateLogs({ reason: refused }))
        ending = { _tag: "Rejected", reason: refused ?? "" }
      } else if (Exit.isFailure(spawned)) {
        const failure = Cause.failureOption(spawned.cause)
        if (Option.isNone(failure) || failure.value._tag === "JobBusy") {
          // Never started (still being written, or pmjq is stopping): back to the queue.
          const why = Option.isNone(failure) ? "pmjq stopped before it started" : "still open for writing (ETXTBSY)"
          yield* processEnded
          const released = yield* spool.release(claim).pipe(Effect.orElseSucceed(() => false))
          if (released) {
            yield* Effect.logInfo("released").pipe(Effect.annotateLogs({ reason: why }))
            return
          }
          ending = { _tag: "NotStarted", reason: `${why}, and a new job took its name in the spool` }
        } else {
          yield* processEnded
          ending = { _tag: "NotStarted", reason: failure.value.message }
        }
      } else {
        proc = spawned.value
        yield* Effect.logInfo("started").pipe(Effect.annotateLogs({ pid: proc.pid }))
        yield* started(proc.pid)
        const running = proc
        const waited = yield* Effect.exit(restore(Option.match(settings.timeout, {
          onNone: () => Effect.map(running.exit, Option.some),
          onSome: (limit) => Effect.timeoutOption(running.exit, limit)
        })))
        if (Exit.isFailure(waited)) {
          ending = { _tag: "Exited", exit: yield* proc.terminate(settings.killAfter), interrupted: true, timedOut: null }
        } else if (Option.isSome(waited.value)) {
          ending = { _tag: "Exited", exit: waited.value.value, interrupted: false, timedOut: null }
        } else {
          const limit = Duration.format(Option.getOrThrow(settings.timeout))
          yield* Effect.logWarning("timed out; stopping its process group").pipe(Effect.annotateLogs({ timeout: limit }))
          ending = { _tag: "Exited", exit: yield* proc.terminate(settings.grace), interrupted: false, timedOut: limit }
        }
        yield* processEnded
      }

      const endedAt = yield* Clock.currentTimeMillis
      const exit = ending._tag === "Exited" ? ending.exit : null
      // Already on disk when the spawner saw the process end and judged as we do.
      const recorded = exit?.recorded === true && ending._tag === "Exited" && !ending.interrupted && ending.timedOut === null &&
        exit.lost === undefined
      const record: JobRecord = proc === null
        ? unstartedRecord(base, endedAt, judge(ending))
        : startedRecord(base, proc.pid, exit?.times?.startedAt ?? startedAt, exit?.times?.endedAt ?? endedAt, ending)
      yield* Effect.log("finished").pipe(
        Effect.annotateLogs({
          outcome: record.outcome,
          ...(record.exitCode !== null ? { exitCode: record.exitCode } : {}),
          ...(record.signal !== null ? { signal: record.signal } : {}),
          durationMs: record.durationMs,
          ...(record.reason !== null ? { reason: record.reason } : {})
        })
      )

      // A job that never started has no output: the spawner removed its empty files.
      const output = proc === null ? null : files
      const finished: Finished = {
        script: claim.path,
        stdout: output?.stdout ?? null,
        stderr: output?.stderr ?? null,
        recordFile,
        record,
        owner: Option.match(owner, {
          onSome: (a) => ({ uid: a.uid, gid: a.gid }),
          onNone: () => Option.match(facts, { onNone: () => null, onSome: (f) => ({ uid: f.uid, gid: f.gid }) })
        })
      }
      // Written down before anything moves: should pmjq die from here on, recovery
      // archives this outcome and never runs the job again. If it cannot be
      // written now, archival below writes it.
      if (!recorded) {
        yield* archive.settle(finished).pipe(
          Effect.catchTag("ArchiveFailed", (error) => Effect.logWarning("record not written yet").pipe(Effect.annotateLogs({ reason: error.message })))
        )
      }
      const destination = destinationOf(record.outcome, settings)
      const place: Effect.Effect<string | null, ArchiveFailed | ClaimLost> = Option.isSome(destination)
        ? archive.store(destination.value, finished)
        : Effect.as(archive.discard(finished), null)
      const attempt = place.pipe(Effect.tapErrorTag("ArchiveFailed", (error) =>
        Effect.logError("not archived yet; kept, will retry").pipe(Effect.annotateLogs({ reason: error.message, kept: claim.path }))
      ))
      const done = (placed: Effect.Effect<string | null, ArchiveFailed | ClaimLost>) =>
        placed.pipe(
          Effect.flatMap((entry) => (entry === null ? Effect.void : Effect.logInfo("archived").pipe(Effect.annotateLogs({ path: entry })))),
          Effect.zipRight(spool.vacated(claim)),
          Effect.catchTag("ClaimLost", (lost) =>
            Effect.logWarning("taken over by another node, which answers for it now").pipe(Effect.annotateLogs({ reason: lost.message })))
        )
      // The first try is part of the job's end, even when pmjq is stopping.
      yield* done(attempt).pipe(
        Effect.catchTag("ArchiveFailed", () =>
          keep(done(attempt.pipe(Effect.retry({ schedule: archiveRetry, while: (e) => e._tag === "ArchiveFailed" }), Effect.delay("1 second"))).pipe(
            Effect.catchAll(() => Effect.void), // never: the retries go on until one works
            Effect.annotateLogs({ job: claim.name })
          )))
      )
    })
  )).pipe(Effect.annotateLogs({ job: claim.name }))
})
