/**
 * The jobs this node runs: each claimed job's run (job/Job.ts) in a FiberSet,
 * and archival retries in another (a stop does not wait for those: the job is
 * safe on disk, and the next start archives it). On a stop, running jobs get
 * --grace to finish before they are interrupted (this finalizer runs before the
 * FiberSets' own: finalizers run last-in first-out).
 */
import { Context, Deferred, Duration, Effect, FiberSet, HashMap, Layer, Option, Ref } from "effect"
import * as path from "node:path"
import { Gate } from "../gate/Gate.js"
import { runJob } from "../job/Job.js"
import type { Candidate } from "../spool/Pending.js"
import { Spool } from "../spool/Spool.js"
import { DaemonConfig } from "./Config.js"
import { JobQueue } from "./JobQueue.js"
import { processEnded, processStarted, Running } from "./Running.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const spool = yield* Spool
  const gate = yield* Gate
  const { wake } = yield* JobQueue
  const running = yield* Running
  const kept = yield* FiberSet.make()
  const keep = (retries: Effect.Effect<void>) => FiberSet.run(kept, Effect.interruptible(retries)).pipe(Effect.asVoid)
  const jobs = yield* FiberSet.make()
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const count = yield* FiberSet.size(jobs)
      if (count === 0) return
      yield* Effect.logInfo("stopping").pipe(Effect.annotateLogs({ running: count, grace: Duration.format(settings.grace) }))
      const done = yield* FiberSet.awaitEmpty(jobs).pipe(Effect.interruptible, Effect.timeoutOption(settings.grace))
      if (Option.isNone(done)) yield* Effect.logWarning("grace period over; terminating running jobs")
    })
  )

  /**
   * Claims CANDIDATE and runs it; `release` gives its slot back, once: when the
   * claim is lost, or when the job's process ends (archival goes on without it).
   * With `cancelledBy` (a cancel of a queued job), it is archived as cancelled
   * without being run. True when the claim was won.
   */
  const launch = ({ name, uid }: Candidate, release: Effect.Effect<void>, cancelledBy?: string) =>
    Effect.uninterruptible(Effect.gen(function*() {
      const claim = yield* spool.claim(name).pipe(
        Effect.tapError((e) => Effect.logWarning("claim failed").pipe(Effect.annotateLogs({ job: name, reason: e.message }))),
        Effect.orElseSucceed(() => Option.none())
      )
      if (Option.isNone(claim)) {
        yield* Ref.update(running.lost, (n) => n + 1)
        yield* Effect.logDebug("claimed elsewhere").pipe(Effect.annotateLogs({ job: name }))
        yield* release
        return false
      }
      yield* Ref.update(running.won, (n) => n + 1)
      yield* Effect.logInfo("claimed").pipe(Effect.annotateLogs({ job: name, path: claim.value.path }))
      yield* processStarted(running, uid)
      yield* Ref.update(running.active, (n) => n + 1)
      const ended = yield* Effect.once(
        Effect.all([yield* gate.started, release, processEnded(running, uid), wake.open], { discard: true })
      )
      const claimed = path.basename(claim.value.path)
      const started = (pid: number) => Ref.update(running.pids, HashMap.set(claimed, pid))
      const cancel = yield* Deferred.make<string>()
      if (cancelledBy !== undefined) yield* Deferred.succeed(cancel, cancelledBy)
      yield* Ref.update(running.held, HashMap.set(claimed, { claim: claim.value, cancel }))
      const job = runJob(claim.value, settings, { processEnded: ended, keep, started, cancel }).pipe(
        Effect.ensuring(Effect.all([
          ended,
          Ref.update(running.finished, (n) => n + 1),
          Ref.update(running.active, (n) => n - 1),
          Ref.update(running.pids, HashMap.remove(claimed)),
          Ref.update(running.held, HashMap.remove(claimed))
        ], { discard: true }))
      )
      // A fiber forked here would inherit this uninterruptible region; the job
      // must stay interruptible so that a stop can reach it after the grace.
      yield* FiberSet.run(jobs, Effect.interruptible(job))
      return true
    }))

  /** Until no job runs and no archival is being retried. */
  const idle = Effect.zipRight(FiberSet.awaitEmpty(jobs), FiberSet.awaitEmpty(kept))

  return { launch, idle }
})

export class Jobs extends Context.Tag("pmjq/Jobs")<Jobs, Effect.Effect.Success<typeof make>>() {
  static readonly layer = Layer.scoped(Jobs, make)
}
