/**
 * The jobs this node runs: each claimed job's run (job/Job.ts) in a FiberSet,
 * and archival retries in another (a stop does not wait for those: the job is
 * safe on disk, and the next start archives it). On a stop, running jobs get
 * --grace to finish before they are interrupted (this finalizer runs before the
 * FiberSets' own: finalizers run last-in first-out).
 */
import { Context, Deferred, Duration, Effect, Fiber, FiberSet, HashMap, Layer, Option, Ref } from "effect"
import * as path from "node:path"
import { Gate } from "../gate/Gate.js"
import { runJob } from "../job/Job.js"
import type { Candidate } from "../spool/Pending.js"
import { watchAdopted } from "../job/Adopted.js"
import { ProcessRunner } from "../job/Runner.js"
import type { Adoptable } from "../recovery.js"
import { Nodes } from "../spool/Nodes.js"
import { startTicks } from "../proc.js"
import { claimedName, heartbeatAside, heartbeatFile, type LeftoverNames } from "../spool/layout.js"
import { type Claim, Spool } from "../spool/Spool.js"
import { DaemonConfig } from "./Config.js"
import { heartbeatNow } from "./Heartbeat.js"
import { JobQueue } from "./JobQueue.js"
import { processEnded, processStarted, Running } from "./Running.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const spool = yield* Spool
  const gate = yield* Gate
  const { wake } = yield* JobQueue
  const running = yield* Running
  const runner = yield* ProcessRunner
  const nodes = yield* Nodes
  const kept = yield* FiberSet.make()
  const keep = (retries: Effect.Effect<void>) => FiberSet.run(kept, Effect.interruptible(retries)).pipe(Effect.asVoid)
  const jobs = yield* FiberSet.make()
  /** From now on, whenever pmjq goes, its jobs stay (--on-stop leave, or a SIGHUP restart). */
  const keepJobs = runner.keepJobs({
    heartbeatFile: heartbeatFile(settings.spool, settings.node),
    heartbeatAside: heartbeatAside(settings.spool, settings.node),
    everyMs: Duration.toMillis(settings.lease) / 4
  })
  if (settings.onStop === "leave") yield* keepJobs
  const slots = settings.maxJobs > 0 ? yield* Effect.makeSemaphore(settings.maxJobs) : null
  /** A -j slot (the dispatcher takes one before it looks for work). */
  const takeSlot = slots === null ? Effect.void : slots.take(1)
  const freeSlot = slots === null ? Effect.void : slots.release(1)
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const count = yield* FiberSet.size(jobs)
      if (count === 0) return
      if (settings.onStop === "leave" || (yield* Ref.get(running.restarting))) {
        const left = yield* runner.leave
        // Its last word: the jobs it leaves, for the next pmjq to adopt.
        yield* Effect.flatMap(heartbeatNow, (hb) => nodes.beat({ ...hb, left: true })).pipe(Effect.ignore)
        return yield* Effect.logInfo("leaving: running jobs go on under the spawners, for the next pmjq to adopt").pipe(
          Effect.annotateLogs({ running: left })
        )
      }
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
      const started = (pid: number) => Ref.update(running.pids, HashMap.set(claimed, { pid, startTicks: startTicks(pid) }))
      const cancel = yield* Deferred.make<string>()
      if (cancelledBy !== undefined) {
        // The asker was checked against the owner of the file queued then; one
        // put in its place since (its owner removed it, someone else wrote the
        // name) is not theirs to cancel, and runs.
        const owner = yield* spool.facts(claim.value).pipe(Effect.map((f) => f.uid), Effect.orElseSucceed(() => -1))
        if (owner === uid) yield* Deferred.succeed(cancel, cancelledBy)
        else yield* Effect.logWarning("cancel not applied: the file claimed is not the one asked about").pipe(Effect.annotateLogs({ job: name }))
      }
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

  /**
   * Takes on a job a pmjq that stopped with --on-stop leave left running
   * (job/Adopted.ts): counted against -j, the gate and --max-jobs-per-user
   * like one of ours, cancellable, and settled by `settle` once it ends.
   */
  const adopt = (job: Adoptable, settle: (names: LeftoverNames) => Effect.Effect<void>) =>
    Effect.uninterruptible(Effect.gen(function*() {
      const folder = nodes.ownFolder
      const claimed = job.names.claim!
      const left = yield* nodes.gather(folder, job.names).pipe(Effect.option)
      const uid = Option.match(left, { onNone: () => -1, onSome: (l) => l.uid ?? -1 })
      yield* processStarted(running, uid)
      yield* Ref.update(running.active, (n) => n + 1)
      // Its slot, once one is free (-j may be lower than when it started).
      const slot = yield* Ref.make(false)
      const taking = yield* Effect.fork(takeSlot.pipe(Effect.onExit((exit) => (exit._tag === "Success" ? Ref.set(slot, true) : Effect.void))))
      const freeIfTaken = Effect.zipRight(Fiber.interrupt(taking), Effect.flatMap(Ref.get(slot), (taken) => (taken ? freeSlot : Effect.void)))
      const ended = yield* Effect.once(Effect.all([yield* gate.started, freeIfTaken, processEnded(running, uid), wake.open], { discard: true }))
      const cancel = yield* Deferred.make<string>()
      const claim: Claim = { name: claimedName(claimed), path: path.join(folder, claimed), claimedAt: Option.match(left, { onNone: () => 0, onSome: (l) => l.claimedAt }), attempt: 1, noteKey: null }
      yield* Ref.update(running.held, HashMap.set(claimed, { claim, cancel }))
      if (job.pid !== null) yield* Ref.update(running.pids, HashMap.set(claimed, { pid: job.pid, startTicks: job.startTicks }))
      yield* Effect.logInfo("adopted: left running by the pmjq before").pipe(Effect.annotateLogs({ job: claim.name, pid: job.pid ?? "unknown" }))
      const watch = watchAdopted(job, folder, settings, cancel, runner.leaving, settle).pipe(
        Effect.ensuring(Effect.all([
          ended,
          Ref.update(running.finished, (n) => n + 1),
          Ref.update(running.active, (n) => n - 1),
          Ref.update(running.pids, HashMap.remove(claimed)),
          Ref.update(running.held, HashMap.remove(claimed))
        ], { discard: true })),
        Effect.annotateLogs({ job: claim.name })
      )
      yield* FiberSet.run(jobs, Effect.interruptible(watch))
    }))

  /** Until no job runs and no archival is being retried. */
  const idle = Effect.zipRight(FiberSet.awaitEmpty(jobs), FiberSet.awaitEmpty(kept))

  return { launch, adopt, idle, takeSlot, freeSlot, keepJobs }
})

export class Jobs extends Context.Tag("pmjq/Jobs")<Jobs, Effect.Effect.Success<typeof make>>() {
  static readonly layer = Layer.scoped(Jobs, make)
}
