/**
 * The heartbeat says this node is alive, and where its archive is: written at
 * once, then every lease/4 (a lease spans four beats, so one late write does
 * not get a live node taken over). Its finalizer is the node's last act: the
 * heartbeat and the running folder go once every job has ended and been
 * archived (layers close in reverse order, and this one is built first).
 */
import { Clock, Duration, Effect, HashMap, Layer, Option, Ref, Schedule } from "effect"
import { LoadAverage } from "../gate/LoadAverage.js"
import { ProcessRunner } from "../job/Runner.js"
import { Nodes } from "../spool/Nodes.js"
import { DaemonConfig } from "./Config.js"
import { Running } from "./Running.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const nodes = yield* Nodes
  const runner = yield* ProcessRunner
  const load = yield* LoadAverage
  const running = yield* Running
  yield* Effect.addFinalizer(() =>
    nodes.leave.pipe(Effect.catchAll((e) => Effect.logWarning("could not clean up").pipe(Effect.annotateLogs({ reason: e.message }))))
  )
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
      running: yield* Ref.get(running.active),
      load: yield* load.oneMinute,
      jobs: [...HashMap.toEntries(yield* Ref.get(running.pids))].map(([name, pid]) => ({ name, pid }))
    })
  }).pipe(Effect.catchAll((e) => Effect.logWarning("heartbeat not written").pipe(Effect.annotateLogs({ reason: e.message }))))
  yield* beat
  yield* beat.pipe(Effect.repeat(Schedule.spaced(Duration.millis(leaseMs / 4))), Effect.forkScoped)
})

export const Heartbeat = Layer.scopedDiscard(make)
