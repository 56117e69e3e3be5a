/**
 * The dispatcher: slot (-j), then work, then the gate (-C), then the state's
 * trust, then the job to run (oldest first; among the oldest few with peers;
 * with --max-jobs-per-user the oldest whose owner is under the cap). With
 * --drain it ends once the spool is empty and nothing runs, and says so (DaemonDone).
 */
import { Clock, Deferred, Effect, HashMap, Layer, Option, Ref } from "effect"
import { Gate } from "../gate/Gate.js"
import { ProcessRunner } from "../job/Runner.js"
import type { Accepts } from "../spool/Pending.js"
import { Spool } from "../spool/Spool.js"
import { Cancels } from "./Cancels.js"
import { DaemonConfig, type Drained, DaemonDone } from "./Config.js"
import { JobQueue } from "./JobQueue.js"
import { Jobs } from "./Jobs.js"
import { Pauses } from "./Pauses.js"
import { Running } from "./Running.js"

/** FNV-1a of node and name: a stable, well-spread preference of one node for one file. */
export const rendezvous = (node: string, name: string) => {
  let h = 0x811c9dc5
  const key = `${node}\0${name}`
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/**
 * --max-jobs-per-user: a job may start while its owner runs fewer than `cap`
 * jobs, or when no other user has a job queued. Work-conserving: a lone user
 * may use every slot; a slot is left idle only to keep it for a waiting user.
 */
export const fairShare = (cap: number, running: (uid: number) => number): Accepts => (owner, othersWaiting) =>
  !othersWaiting || running(owner) < cap

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const spool = yield* Spool
  const gate = yield* Gate
  const { feed, pending, wake } = yield* JobQueue
  const jobs = yield* Jobs
  const running = yield* Running
  const cancels = yield* Cancels
  const pauses = yield* Pauses
  const runner = yield* ProcessRunner
  const { freeSlot, takeSlot } = jobs

  const accepts = Option.match(settings.maxJobsPerUser, {
    onNone: () => Effect.succeed<Accepts | undefined>(undefined),
    onSome: (cap) => Effect.map(Ref.get(running.byOwner), (counts) => fairShare(cap, (uid) => Option.getOrElse(HashMap.get(counts, uid), () => 0)))
  })
  // Alone, a node takes the oldest job. With peers, each takes the one it
  // prefers among the 2 x nodes oldest (rendezvous hashing on node and name):
  // nodes mostly want different files, so few claims are lost to a race, and a
  // job waits behind few younger ones. Measured with 16 nodes (bench/scale.ts,
  // 2026-11): oldest-first loses 1.6 claims per claim won; 2 x nodes 0.35, and
  // jobs start a median 17 places from their place in the queue; 4 x nodes 0.18
  // and 39.
  const preference = (name: string) => rendezvous(settings.node, name)
  const next = Effect.gen(function*() {
    const peers = yield* Ref.get(running.peers)
    const accepted = yield* accepts
    return yield* (peers === 0 ? pending.poll(accepted) : pending.pollAmong(2 * (peers + 1), preference, accepted))
  })

  // In drain mode an empty queue is checked twice: once nothing runs (a job may
  // have submitted another), by a full listing. Only then is the spool drained.
  const drained = Effect.gen(function*() {
    yield* jobs.idle
    yield* feed.scan
    return (yield* pending.size) === 0
  })

  const loop = Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    yield* cancels.ready
    yield* Effect.logInfo("watching").pipe(Effect.annotateLogs({ spool: spool.path, node: settings.node, queued: yield* pending.size }))
    // The gate is asked about the moment a job would start, never about a
    // moment long past when the queue ran dry.
    for (;;) {
      yield* takeSlot
      if ((yield* pending.size) === 0) {
        if (settings.drain) {
          yield* freeSlot
          if (yield* drained) break
          continue
        }
        yield* pending.whenNonEmpty
      }
      yield* gate.whenOpen
      // `pmjq pause`: running jobs go on, nothing new is claimed.
      yield* pauses.whenResumed
      // While pmjq's own folders are not its own (see Spool.checkState), nothing is claimed.
      yield* spool.whenTrusted
      // A job is about to be claimed: its spawner, if not running, starts beside the claim.
      yield* runner.prepare
      // Closed before the look, so an end or an offer after it opens the wait below.
      yield* wake.close
      const candidate = yield* next
      if (candidate === undefined) {
        yield* freeSlot
        // Queued, yet none may start: every waiting user is at --max-jobs-per-user,
        // so one of their jobs must end or a new job arrive first. (An empty
        // queue: forgotten while the gate was closed, gone from the spool.)
        if ((yield* pending.size) > 0) yield* wake.await
        continue
      }
      // A claim not won (mostly a race lost) says the queue may be behind the
      // spool: it catches up before the next pick.
      if (!(yield* jobs.launch(candidate, freeSlot))) yield* feed.catchUp
    }
    yield* Effect.logInfo("drained").pipe(Effect.annotateLogs({ claimed: yield* Ref.get(running.won), lostRaces: yield* Ref.get(running.lost) }))
    const report: Drained = {
      _tag: "Drained",
      succeeded: yield* Ref.get(running.succeeded),
      failed: yield* Ref.get(running.failed),
      elapsedMs: (yield* Clock.currentTimeMillis) - startedAt
    }
    return report
  })

  const finished = yield* DaemonDone
  yield* Effect.forkScoped(Effect.exit(loop).pipe(Effect.flatMap((exit) => Deferred.done(finished, exit))))
})

export const Dispatcher = Layer.scopedDiscard(make)
