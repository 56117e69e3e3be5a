/**
 * The spool's events (notifications and rescans, spool/feed.ts) keep the queue
 * in step with the spool; one full listing before dispatch starts.
 */
import { Effect, Layer, Stream } from "effect"
import { spoolEvents } from "../spool/feed.js"
import { DaemonConfig } from "./Config.js"
import { JobQueue } from "./JobQueue.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const { feed } = yield* JobQueue
  const events = yield* spoolEvents(settings.poll)
  yield* events.pipe(Stream.runForEach(feed.handle), Effect.forkScoped)
  // From one --poll on: the first jobs of a backlog found at startup are not kept waiting by its reads.
  yield* Effect.forkScoped(Effect.delay(feed.readBacklog, settings.poll))
  // Let the watcher start before the first listing, so nothing falls between them.
  yield* Effect.yieldNow()
  yield* feed.scan
})

export const SpoolFeed = Layer.scopedDiscard(make)
