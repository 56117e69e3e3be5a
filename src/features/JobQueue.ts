/**
 * The jobs this node knows are ready (spool/Pending.ts), the feed that keeps
 * them in step with the spool (spool/feed.ts), and `wake`: opened by whatever
 * may let a job held back by --max-jobs-per-user start (one of its owner's
 * jobs ending, a change in the queue), so the dispatcher waits, never spins;
 * `requested`: opened when the kernel tells of a new request (a cancel), so
 * that it is seen at once rather than at the next --poll.
 */
import { Context, Effect, Layer, Option } from "effect"
import { makeFeed } from "../spool/feed.js"
import { makePending, type Pending } from "../spool/Pending.js"
import { DaemonConfig } from "./Config.js"

/** The queue, with every change that could let a held-back job start opening `wake`. */
const signalling = (pending: Pending, wake: Effect.Latch): Pending => ({
  ...pending,
  offer: (candidate) => Effect.zipRight(pending.offer(candidate), wake.open),
  offerAll: (candidates) => Effect.zipRight(pending.offerAll(candidates), wake.open),
  forget: (name) => Effect.zipRight(pending.forget(name), wake.open),
  retain: (present) => Effect.zipRight(pending.retain(present), wake.open)
})

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const pending = yield* makePending({ turns: Option.isSome(settings.maxJobsPerUser) })
  const wake = yield* Effect.makeLatch(false)
  const requested = yield* Effect.makeLatch(false)
  const feed = yield* makeFeed(Option.isSome(settings.maxJobsPerUser) ? signalling(pending, wake) : pending, requested.open, settings.poll)
  return { pending, wake, requested, feed }
})

export class JobQueue extends Context.Tag("pmjq/JobQueue")<JobQueue, Effect.Effect.Success<typeof make>>() {
  static readonly layer = Layer.effect(JobQueue, make)
}
