/**
 * The jobs this node runs: each claimed job's run (job/Job.ts) in a FiberSet,
 * and archival retries in another (a stop does not wait for those: the job is
 * safe on disk, and the next start archives it); the -j slots. What a stop
 * does before the FiberSets interrupt what is left is Stopping's.
 */
import { Context, Deferred, Effect, type Fiber, FiberSet, HashMap, identity, Layer, Option, Ref } from "effect"
import * as path from "node:path"
import { Gate } from "../gate/Gate.js"
import { destinationOf } from "../job/Archive.js"
import { runJob } from "../job/Job.js"
import type { Candidate } from "../spool/Pending.js"
import type { ProcessId } from "../process/proc.js"
import { jobTelemetry } from "../telemetry/jobTelemetry.js"
import { type Claim, Spool } from "../spool/Spool.js"
import type { JobRecord } from "../record/record.js"
import { DaemonConfig } from "./Config.js"
import { FinishHooks } from "./FinishHooks.js"
import { RefusalsKept } from "../job/RefusalsKept.js"
import { JobQueue } from "./JobQueue.js"
import { type HeldJob, processEnded, processStarted, recordMade, Running } from "./Running.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const spool = yield* Spool
  const gate = yield* Gate
  const { feed, wake } = yield* JobQueue
  const running = yield* Running
  const refusals = yield* RefusalsKept
  const hooks = yield* FinishHooks
  // Refusals are kept within a bound per owner (RefusalsKept).
  // Without --on-finish, a job's end costs no hook effect at all (the per-job path).
  const hooked = Option.isSome(settings.onFinish)
  const archived = (record: JobRecord, entry: string) => {
    const kept = record.outcome === "rejected" && record.uid !== null ? refusals.placed(record.uid, entry) : Effect.void
    return hooked ? Effect.zipRight(kept, hooks.fire(record, entry)) : kept
  }
  const kept = yield* FiberSet.make()
  const keep = (retries: Effect.Effect<void>) => FiberSet.run(kept, Effect.interruptible(retries)).pipe(Effect.asVoid)
  const jobs = yield* FiberSet.make()
  const slots = settings.maxJobs > 0 ? yield* Effect.makeSemaphore(settings.maxJobs) : null
  /** A -j slot (the dispatcher takes one before it looks for work). */
  const takeSlot = slots === null ? Effect.void : slots.take(1)
  const freeSlot = slots === null ? Effect.void : slots.release(1)
  /**
   * Counts a claimed job as this node's (-j through `release`, which gives its
   * slot back once; --max-jobs-per-user; the gate; the heartbeat; `pmjq
   * cancel`) and runs BODY for it in the jobs' FiberSet. BODY is told when
   * the job's process is over (`ended`) and its cancel (completed at once with
   * `cancelledBy`).
   */
  const enroll = <R>(
    claim: Claim, uid: number, release: Effect.Effect<void>, cancelledBy: Option.Option<string>,
    body: (ended: Effect.Effect<void>, held: HeldJob) => Effect.Effect<void, never, R>
  ) =>
    Effect.gen(function*() {
      yield* processStarted(running, uid)
      yield* Ref.update(running.active, (n) => n + 1)
      const ended = yield* Effect.once(
        Effect.all([yield* gate.started, release, processEnded(running, uid), wake.open], { discard: true })
      )
      const claimed = path.basename(claim.path)
      const held: HeldJob = { claim, cancel: yield* Deferred.make<string>(), waiting: yield* Ref.make(Option.none<Fiber.RuntimeFiber<unknown, unknown>>()) }
      if (Option.isSome(cancelledBy)) yield* Deferred.succeed(held.cancel, cancelledBy.value)
      yield* Ref.update(running.held, HashMap.set(claimed, held))
      const job = body(ended, held).pipe(
        Effect.ensuring(Effect.all([
          ended,
          Ref.update(running.finished, (n) => n + 1),
          Ref.update(running.active, (n) => n - 1),
          Ref.update(running.pids, HashMap.remove(claimed)),
          Ref.update(running.held, HashMap.remove(claimed))
        ], { discard: true }))
      )
      // A fiber forked in an uninterruptible region inherits it; the job must
      // stay interruptible so that a stop can reach it after the grace.
      yield* FiberSet.run(jobs, Effect.interruptible(job))
    })

  /**
   * Claims CANDIDATE and runs it; `release` gives its slot back, once: when the
   * claim is lost, or when the job's process ends (archival goes on without it).
   * With `cancelledBy` (a cancel of a queued job), it is archived as cancelled
   * without being run. True when the claim was won.
   */
  const launch = ({ loop, name, readyAt, uid }: Candidate, release: Effect.Effect<void>, cancelledBy?: string) =>
    Effect.uninterruptible(Effect.gen(function*() {
      const told = yield* jobTelemetry(name, readyAt, settings)
      const claim = yield* told.claim(spool.claim(name)).pipe(
        Effect.map(Option.map((c): Claim => (loop === undefined ? c : { ...c, loop }))),
        Effect.tapError((e) => Effect.logWarning("claim failed").pipe(Effect.annotateLogs({ job: name, reason: e.message }))),
        Effect.orElseSucceed(() => Option.none())
      )
      if (Option.isNone(claim)) {
        yield* Ref.update(running.lost, (n) => n + 1)
        yield* Effect.logDebug("claimed elsewhere").pipe(Effect.annotateLogs({ job: name }))
        yield* release
        yield* Effect.zipRight(told.lost, told.end)
        return false
      }
      yield* Ref.update(running.won, (n) => n + 1)
      yield* Effect.logInfo("claimed").pipe(Effect.annotateLogs({ job: name, path: claim.value.path }))
      const claimed = path.basename(claim.value.path)
      const started = (job: ProcessId) => Effect.zipRight(Ref.update(running.pids, HashMap.set(claimed, job)), told.started)
      let recorded: JobRecord | null = null
      const judged = (record: JobRecord) => {
        const made = Effect.zipRight(recordMade(running, record.outcome), told.finished(record))
        return hooked ? Effect.zipLeft(made, Effect.sync(() => void (recorded = record))) : made
      }
      // No `archived` comes for a job with no archive dir to go to: its hook
      // is told once its run is over (its record written, its files gone).
      const discarded = Effect.suspend(() =>
        recorded === null || Option.isSome(destinationOf(recorded.outcome, settings)) ? Effect.void : hooks.fire(recorded, null))
      const run = (slot: Effect.Effect<void>, cancel: Option.Option<string>) =>
        enroll(claim.value, uid, slot, cancel, (ended, { cancel, waiting }) =>
          runJob(claim.value, settings, { processEnded: ended, keep, started, finished: judged, archived, phase: told.phase, cancel, waiting }).pipe(
            hooked ? Effect.ensuring(discarded) : identity,
            told.within,
            Effect.ensuring(told.end),
            // Its ended note is written: the jobs waiting on it are judged now, not at the next --poll.
            Effect.zipRight(feed.ended(name))
          ))
      // The asker was checked against the owner of the file queued then; one
      // put in its place since (its owner removed it, someone else wrote the
      // name) is not theirs to cancel. Claimed here for a cancel, it took no
      // -j slot and passed no gate: it goes back to the queue, to start as
      // any job does. Should a new file have taken its name meanwhile, it
      // waits for a slot and the gate in a fiber of its own (never in the
      // caller's: every cancel would wait behind it); a stop leaves it
      // claimed, for the next start to put back.
      if (cancelledBy !== undefined && claim.value.owner !== uid) {
        yield* Effect.logWarning("cancel not applied: the file claimed is not the one asked about").pipe(Effect.annotateLogs({ job: name }))
        const back = yield* spool.release(claim.value).pipe(
          Effect.tapError((e) => Effect.logWarning("not put back in the queue").pipe(Effect.annotateLogs({ job: name, reason: e.message }))),
          Effect.orElseSucceed(() => false)
        )
        if (back) {
          yield* told.end
          return true
        }
        yield* FiberSet.run(jobs, Effect.interruptible(takeSlot).pipe(
          Effect.zipRight(Effect.interruptible(gate.whenOpen).pipe(Effect.onInterrupt(() => freeSlot))),
          Effect.zipRight(run(freeSlot, Option.none())),
          Effect.onInterrupt(() => told.end)
        ))
        return true
      }
      yield* run(release, Option.fromNullable(cancelledBy))
      return true
    }))

  /** Until no job runs and no archival is being retried. */
  const idle = Effect.zipRight(FiberSet.awaitEmpty(jobs), FiberSet.awaitEmpty(kept))
  return {
    launch, enroll, idle, takeSlot, freeSlot,
    /** How many jobs this node runs or archives now. */
    count: FiberSet.size(jobs),
    /** Until no job runs (archival retries aside). */
    awaitRunning: FiberSet.awaitEmpty(jobs),
    /** How many finished jobs' archivals are being retried. */
    retrying: FiberSet.size(kept)
  }
})

export class Jobs extends Context.Tag("pmjq/Jobs")<Jobs, Effect.Effect.Success<typeof make>>() {
  static readonly layer = Layer.scoped(Jobs, make)
}
