/**
 * The daemon's composition root: the pipeline spool events -> pending queue
 * -> slot -> gate -> claim -> run -> archive, as features (src/features/),
 * each a layer that forks its own fibers, built in an order that makes a stop
 * unwind them right:
 *
 *   Running, JobQueue    shared state (Refs) and the queue with its feed
 *   Heartbeat            first beat; its finalizer (leave) runs last
 *   Jobs                 runs and archival retries; on a stop, --grace, then interruption
 *   RecoveryRounds       dead nodes' jobs (this node's previous run first), every --poll
 *   Hooks, SpoolFeed, Progress
 *   Dispatcher           takes a slot, waits for the gate, claims, launches
 *
 * On interruption (SIGTERM/SIGINT) the layers close in reverse: dispatch and
 * the feed stop at once, running jobs get `grace`, the node leaves.
 */
import { Effect, Layer } from "effect"
import { DaemonConfig, type DaemonSettings } from "./features/Config.js"
import { Dispatcher } from "./features/Dispatcher.js"
import { Heartbeat } from "./features/Heartbeat.js"
import { Hooks } from "./features/Hooks.js"
import { JobQueue } from "./features/JobQueue.js"
import { Jobs } from "./features/Jobs.js"
import { Progress } from "./features/Progress.js"
import { RecoveryRounds } from "./features/RecoveryRounds.js"
import { Running } from "./features/Running.js"
import { SpoolFeed } from "./features/SpoolFeed.js"

export type { DaemonSettings } from "./features/Config.js"
export { fairShare, rendezvous } from "./features/Dispatcher.js"

// Each layer is built after, and with, the ones before it: the order is the point.
export const DaemonLive = (settings: DaemonSettings) => {
  const state = Layer.mergeAll(Running.layer, JobQueue.layer).pipe(Layer.provideMerge(Layer.succeed(DaemonConfig, settings)))
  const beating = Heartbeat.pipe(Layer.provideMerge(state))
  const running = Jobs.layer.pipe(Layer.provideMerge(beating))
  const recovering = RecoveryRounds.pipe(Layer.provideMerge(running))
  const watching = Layer.mergeAll(Hooks, SpoolFeed, Progress).pipe(Layer.provideMerge(recovering))
  return Dispatcher.layer.pipe(Layer.provideMerge(watching))
}

/** Runs the daemon until it is interrupted, or, with --drain, until the spool is drained. */
export const daemon = (settings: DaemonSettings) =>
  Effect.flatMap(Layer.build(DaemonLive(settings)), (context) => Dispatcher.pipe(Effect.flatMap((d) => d.done), Effect.provide(context)))
