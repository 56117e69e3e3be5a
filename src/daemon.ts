/**
 * The daemon's composition root: the pipeline spool events -> pending queue
 * -> slot -> gate -> claim -> run -> archive, as features (src/features/),
 * each a layer that forks its own fibers, built in an order that makes a stop
 * unwind them right:
 *
 *   MetricsExport        when asked for: a port or file refused ends pmjq before any job is touched
 *   Running, JobQueue    shared state (Refs) and the queue with its feed
 *   Beating              first beat; its finalizer (leave) runs last
 *   FinishHooks          --on-finish: closes after Jobs, so a stop's interrupted jobs are told to it
 *   Jobs, Stopping       runs, archival retries, -j slots; on a stop, --grace (or
 *                        leave them to the spawners), then interruption
 *   RecoveryRounds       dead nodes' jobs (this node's previous run first), every --poll
 *   Cancels              `pmjq cancel`'s requests, every --poll and when one appears
 *   Pauses               `pmjq pause`, read every --poll
 *   Hooks, SpoolFeed, Progress, Restart (SIGHUP), Sampling (the metrics' gauges),
 *   ArchiveSweep         (once: what a crash left half placed in the archive dirs)
 *   Dispatcher           takes a slot, waits for the gate, claims, launches
 *
 * under the services they use (Spool, Nodes, Requests, Gate, Archive, ProcessRunner,
 * ...: ServicesLive), all on one filesystem seam (Syscalls).
 *
 * The whole is a layer that never ends (Layer.launch): on interruption
 * (SIGTERM/SIGINT) the layers close in reverse, dispatch and the feed stop at
 * once, running jobs get `grace`, the node leaves. With --drain the Dispatcher
 * says when the spool is drained (DaemonDone), which ends it the same way.
 */
import { Deferred, Effect, Fiber, Layer, Option } from "effect"
import { ArchiveSweep } from "./features/ArchiveSweep.js"
import { DaemonConfig, type DaemonSettings, type DaemonEnding, DaemonDone } from "./features/Config.js"
import { Cancels } from "./features/Cancels.js"
import { Dispatcher } from "./features/Dispatcher.js"
import { FinishHooks } from "./features/FinishHooks.js"
import { Beating } from "./features/Beating.js"
import { Hooks } from "./features/Hooks.js"
import { JobQueue } from "./features/JobQueue.js"
import { Jobs } from "./features/Jobs.js"
import { MetricsExport } from "./features/MetricsExport.js"
import { Progress } from "./features/Progress.js"
import { RecoveryRounds } from "./features/RecoveryRounds.js"
import { Restart } from "./features/Restart.js"
import { Running } from "./features/Running.js"
import { Sampling } from "./features/Sampling.js"
import { SpoolFeed } from "./features/SpoolFeed.js"
import { Stopping } from "./features/Stopping.js"
import { Gate } from "./gate/Gate.js"
import { LoadAverage } from "./gate/LoadAverage.js"
import { HookRunner } from "./hooks/hooks.js"
import { Archive } from "./job/Archive.js"
import { RefusalsKept } from "./job/RefusalsKept.js"
import { ProcessRunner } from "./job/Runner.js"
import { Users } from "./owners/Users.js"
import { Pauses } from "./features/Pauses.js"
import { Nodes } from "./spool/Nodes.js"
import { Requests } from "./spool/Requests.js"
import { Spool } from "./spool/Spool.js"
import { Syscalls } from "./filesystem/syscalls.js"

export type { DaemonSettings } from "./features/Config.js"
export { fairShare, rendezvous } from "./features/Dispatcher.js"

// Each layer is built after, and with, the ones before it: the order is the point.
export const DaemonLive = (settings: DaemonSettings) => {
  const config = Layer.succeed(DaemonConfig, settings)
  const state = Layer.mergeAll(Running.layer, JobQueue.layer).pipe(Layer.provideMerge(MetricsExport.pipe(Layer.provideMerge(config))))
  const beating = Beating.pipe(Layer.provideMerge(state))
  const running = Stopping.layer.pipe(Layer.provideMerge(Jobs.layer), Layer.provideMerge(FinishHooks.layer), Layer.provideMerge(beating))
  const recovering = Layer.mergeAll(RecoveryRounds, Cancels.layer).pipe(Layer.provideMerge(running))
  // Pauses under the rest: Sampling counts what a pause holds, the Dispatcher waits on it.
  const watching = Layer.mergeAll(Hooks, SpoolFeed, Progress, Restart, Sampling, ArchiveSweep).pipe(Layer.provideMerge(Pauses.layer), Layer.provideMerge(recovering))
  return Dispatcher.pipe(Layer.provideMerge(watching))
}

/** The services the features run on, every filesystem call through one seam chosen for where the directories live. */
export const ServicesLive = (settings: DaemonSettings) =>
  Layer.mergeAll(
    Spool.layer(settings),
    Nodes.layer(settings),
    Requests.layer(settings),
    Gate.layer({ cpuLimit: settings.cpuLimit, sampleEvery: "1 second" }),
    HookRunner.layer,
    Users.layer,
    ProcessRunner.layer(settings),
    Archive.layer(settings),
    RefusalsKept.layer(settings)
  ).pipe(
    // The gate samples the load source the metrics read too: one, provided once.
    Layer.provideMerge(LoadAverage.layer),
    Layer.provide(Syscalls.forDirectories([settings.spool, ...Option.toArray(settings.archiveDir), ...Option.toArray(settings.errorDir)]))
  )

/**
 * Runs the daemon until it is interrupted, or says why it ended by itself:
 * its --drain ran dry, or SIGHUP asked for a restart in place (its jobs left
 * running for the pmjq that takes its place).
 */
export const daemon = (settings: DaemonSettings) =>
  Effect.gen(function*() {
    const finished = yield* Deferred.make<DaemonEnding>()
    const main = DaemonLive(settings).pipe(Layer.provide(Layer.succeed(DaemonDone, finished)))
    // The tracer is set for the fiber that builds the layers: the fibers they fork inherit it.
    const running = yield* Effect.fork(Layer.launch(main).pipe(Effect.provide(tracing(settings.traces))))
    // Interrupting the daemon waits for its layers to close (the jobs' grace,
    // the node's leave): a fiber's children are otherwise interrupted without
    // being waited for, and the process would exit under its running jobs.
    return yield* Effect.raceFirst(Fiber.join(running), Deferred.await(finished)).pipe(Effect.ensuring(Fiber.interrupt(running)))
  })

/**
 * A trace per job when the OpenTelemetry variables ask for one; the exporter
 * is loaded only then (telemetry/settings.ts says why).
 */
const tracing = (settings: DaemonSettings["traces"]) =>
  Option.isNone(settings)
    ? Layer.empty
    : Layer.unwrapEffect(Effect.map(Effect.promise(() => import("./telemetry/tracing.js")), (t) => t.tracing(settings)))

/** The daemon on the live services: what `pmjq` runs. */
export const launch = (settings: DaemonSettings) => Effect.provide(daemon(settings), ServicesLive(settings))
