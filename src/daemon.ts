/**
 * The pipeline: spool events -> pending queue -> slot -> gate -> claim -> run -> archive.
 *
 * One dispatcher fiber takes the oldest ready job when a slot (-j) is free and
 * the CPU gate (-C) is open (with --max-jobs-per-user: the oldest whose owner
 * is under the cap, or alone in the queue), claims it, and forks its run into a FiberSet. On
 * interruption (SIGTERM/SIGINT) claiming stops at once; running jobs get `grace`
 * to finish, then their process groups are terminated and they are archived as
 * interrupted.
 */
import { Clock, Duration, Effect, FiberSet, Option, Ref, Schedule, Stream } from "effect"
import * as path from "node:path"
import { Gate } from "./gate/Gate.js"
import { LoadAverage } from "./gate/LoadAverage.js"
import { type JobSettings, runJob } from "./job/Job.js"
import { ProcessRunner } from "./job/Runner.js"
import { type HookSettings, type Observed, watchHooks } from "./hooks.js"
import { showProgress } from "./progress.js"
import { makeRecovery, type RecoverySettings } from "./recovery.js"
import { Nodes } from "./spool/Nodes.js"
import { makeFeed, spoolEvents } from "./spool/feed.js"
import { type Accepts, type Candidate, makePending, type Pending } from "./spool/Pending.js"
import { Spool } from "./spool/Spool.js"

export interface DaemonSettings extends JobSettings, RecoverySettings, HookSettings {
  /** At most this many jobs at once; 0 means no cap. */
  readonly maxJobs: number
  /** At most this many jobs of one user while another user's job waits (--max-jobs-per-user). */
  readonly maxJobsPerUser: Option.Option<number>
  readonly poll: Duration.DurationInput
  /** Exit once the spool is empty and nothing runs. */
  readonly drain: boolean
  /** Show a live progress line on stderr (a --drain on a terminal). */
  readonly progress: boolean
}

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

/** The queue, with every change that could let a held-back job start opening `wake`. */
const signalling = (pending: Pending, wake: Effect.Latch): Pending => ({
  ...pending,
  offer: (candidate) => Effect.zipRight(pending.offer(candidate), wake.open),
  forget: (name) => Effect.zipRight(pending.forget(name), wake.open),
  retain: (present) => Effect.zipRight(pending.retain(present), wake.open)
})

export const daemon = Effect.fn("daemon")(function*(settings: DaemonSettings) {
  const spool = yield* Spool
  const gate = yield* Gate
  const nodes = yield* Nodes
  const load = yield* LoadAverage
  const runner = yield* ProcessRunner
  const pending = yield* makePending
  // Opened by what may let a job held back by --max-jobs-per-user start: one
  // of its owner's jobs ending, or a change in the queue (a new job, or the
  // last job of another user gone). The dispatcher waits on it, never spins.
  const wake = yield* Effect.makeLatch(false)
  const feed = yield* makeFeed(Option.isSome(settings.maxJobsPerUser) ? signalling(pending, wake) : pending)
  const recovery = yield* makeRecovery(settings)
  // Registered first, so it runs last: once every job has ended and been archived.
  yield* Effect.addFinalizer(() => nodes.leave.pipe(Effect.catchAll((e) => Effect.logWarning("could not clean up").pipe(Effect.annotateLogs({ reason: e.message })))))
  // Jobs whose archival failed once: their retries go on here, and a stop does
  // not wait for them (they are kept on disk; the next start archives them).
  const kept = yield* FiberSet.make()
  const keep = (retries: Effect.Effect<void>) => FiberSet.run(kept, Effect.interruptible(retries)).pipe(Effect.asVoid)
  const jobs = yield* FiberSet.make()
  const slots = settings.maxJobs > 0 ? yield* Effect.makeSemaphore(settings.maxJobs) : null
  const takeSlot = slots === null ? Effect.void : slots.take(1)
  const freeSlot = slots === null ? Effect.void : slots.release(1)
  // Claimed jobs whose process has not ended yet: what -j counts.
  let processes = 0
  // The same, by owner (the uid the queue knew each job by): what --max-jobs-per-user counts.
  const processesOf = new Map<number, number>()
  const countProcess = (uid: number, by: 1 | -1) => {
    const n = (processesOf.get(uid) ?? 0) + by
    if (n === 0) processesOf.delete(uid)
    else processesOf.set(uid, n)
  }
  const accepts = Option.match(settings.maxJobsPerUser, {
    onNone: (): Accepts | undefined => undefined,
    onSome: (cap) => fairShare(cap, (uid) => processesOf.get(uid) ?? 0)
  })
  // Their pids by claimed name, for the heartbeat (and so pmjq status).
  const pids = new Map<string, number>()

  // Runs before the FiberSet's own finalizer (finalizers run last-in first-out),
  // so jobs get their grace before they are interrupted.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const running = yield* FiberSet.size(jobs)
      if (running === 0) return
      yield* Effect.logInfo("stopping").pipe(Effect.annotateLogs({ running, grace: Duration.format(settings.grace) }))
      const done = yield* FiberSet.awaitEmpty(jobs).pipe(Effect.interruptible, Effect.timeoutOption(settings.grace))
      if (Option.isNone(done)) yield* Effect.logWarning("grace period over; terminating running jobs")
    })
  )

  // The heartbeat says this node is alive, and where its archive is; a lease
  // spans four beats, so one late write does not get a live node taken over.
  const leaseMs = Duration.toMillis(settings.lease)
  const beat = Effect.gen(function*() {
    yield* nodes.beat({
      node: settings.node,
      host: settings.host,
      pid: process.pid,
      helpers: yield* runner.helpers,
      beatAt: new Date(yield* Clock.currentTimeMillis).toISOString(),
      leaseMs,
      archiveDir: Option.getOrNull(settings.archiveDir),
      errorDir: Option.getOrNull(settings.errorDir),
      running: yield* FiberSet.size(jobs),
      load: yield* load.oneMinute,
      jobs: [...pids].map(([name, pid]) => ({ name, pid }))
    })
  }).pipe(Effect.catchAll((e) => Effect.logWarning("heartbeat not written").pipe(Effect.annotateLogs({ reason: e.message }))))
  yield* beat
  yield* beat.pipe(Effect.repeat(Schedule.spaced(Duration.millis(leaseMs / 4))), Effect.forkScoped)

  // Jobs of nodes that died (this one's previous run among them) first, then
  // every poll: a node dies at any time.
  yield* recovery.own
  const peers = yield* Ref.make(yield* recovery.round)
  yield* recovery.round.pipe(Effect.flatMap((n) => Ref.set(peers, n)), Effect.repeat(Schedule.spaced(settings.poll)), Effect.forkScoped)

  // Alone, a node takes the oldest job. With peers, each takes the one it
  // prefers among the 2 x nodes oldest (rendezvous hashing on node and name):
  // nodes mostly want different files, so few claims are lost to a race, and a
  // job waits behind few younger ones. Measured with 16 nodes (bench/scale.ts):
  // oldest-first loses 1.6 claims per claim won; 2 x nodes 0.3, and jobs start
  // a median 18 places from their place in the queue; 4 x nodes 0.18 and 39.
  const preference = (name: string) => rendezvous(settings.node, name)
  const next = Effect.flatMap(Ref.get(peers), (n) => (n === 0 ? pending.poll(accepts) : pending.pollAmong(2 * (n + 1), preference, accepts)))
  const claims = { won: 0, lost: 0 }

  // The idle and limit commands look at this every second.
  let finished = 0
  const observe = Effect.gen(function*(): Effect.fn.Return<Observed> {
    const queued = yield* pending.size
    const running = yield* FiberSet.size(jobs)
    const activity = claims.won + finished
    if (queued === 0) return { queued, running, activity, holding: null }
    if (settings.maxJobs > 0 && processes >= settings.maxJobs) return { queued, running, activity, holding: "max-jobs" }
    return { queued, running, activity, holding: (yield* gate.isOpen) ? null : "load" }
  })
  yield* watchHooks(settings, observe).pipe(Effect.forkScoped)

  const events = yield* spoolEvents(settings.poll)
  yield* events.pipe(Stream.runForEach(feed.handle), Effect.forkScoped)
  // Let the watcher start before the first listing, so nothing falls between them.
  yield* Effect.yieldNow()
  yield* feed.scan
  if (settings.progress) {
    yield* showProgress(Effect.gen(function*() {
      return { done: finished, running: yield* FiberSet.size(jobs), queued: yield* pending.size }
    })).pipe(Effect.forkScoped)
  }
  yield* Effect.logInfo("watching").pipe(
    Effect.annotateLogs({ spool: spool.path, node: settings.node, queued: yield* pending.size })
  )

  const launch = ({ name, uid }: Candidate) =>
    Effect.uninterruptible(Effect.gen(function*() {
      const claim = yield* spool.claim(name).pipe(
        Effect.tapError((e) => Effect.logWarning("claim failed").pipe(Effect.annotateLogs({ job: name, reason: e.message }))),
        Effect.orElseSucceed(() => Option.none())
      )
      if (Option.isNone(claim)) {
        claims.lost++
        yield* Effect.logDebug("claimed elsewhere").pipe(Effect.annotateLogs({ job: name }))
        return yield* freeSlot
      }
      claims.won++
      yield* Effect.logInfo("claimed").pipe(Effect.annotateLogs({ job: name, path: claim.value.path }))
      // -j counts running processes: the slot and the gate's count are given back
      // when the process ends, once, and archival goes on without them.
      processes++
      countProcess(uid, 1)
      const ended = Effect.sync(() => {
        processes--
        countProcess(uid, -1)
      })
      const processEnded = yield* Effect.once(Effect.zipRight(yield* gate.started, freeSlot).pipe(Effect.zipRight(ended), Effect.zipRight(wake.open)))
      // A fiber forked here would inherit this uninterruptible region; the job
      // must stay interruptible so that a stop can reach it after the grace.
      const claimed = path.basename(claim.value.path)
      const started = (pid: number) => Effect.sync(() => void pids.set(claimed, pid))
      const job = runJob(claim.value, settings, processEnded, keep, started).pipe(
        Effect.ensuring(Effect.zipRight(processEnded, Effect.sync(() => {
          finished++
          pids.delete(claimed)
        })))
      )
      yield* FiberSet.run(jobs, Effect.interruptible(job))
    }))

  // In drain mode an empty queue is checked twice: once nothing runs (a job may
  // have submitted another), by a full listing. Only then is the spool drained.
  const drained = Effect.gen(function*() {
    yield* FiberSet.awaitEmpty(jobs)
    yield* FiberSet.awaitEmpty(kept)
    yield* feed.scan
    return (yield* pending.size) === 0
  })

  // Slot, then work, then the gate: the gate is asked about the moment a job
  // would start, never about a moment long past when the queue ran dry.
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
    // While pmjq's own folders are not its own (see Spool.checkState), nothing is claimed.
    yield* spool.whenTrusted
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
    yield* launch(candidate)
  }
  yield* Effect.logInfo("drained").pipe(Effect.annotateLogs({ claimed: claims.won, lostRaces: claims.lost }))
})
