/**
 * Metrics export (--metrics-listen, --metrics-file; neither by default): built
 * first, before anything is recovered or adopted, so that a port taken or a
 * folder refused ends pmjq (EX_UNAVAILABLE) before it touches a job. The file
 * is written again every 5 s; one that cannot be written then is said, and
 * tried again. What is exported is counted where it happens
 * (telemetry/metrics.ts) and sampled by features/Sampling.ts.
 */
import { Effect, Layer, Schedule } from "effect"
import { metricsWanted } from "../telemetry/settings.js"
import { DaemonConfig } from "./Config.js"

const WRITE_EVERY = "5 seconds"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  if (!metricsWanted(settings.metrics)) return
  // Loaded only now (telemetry/settings.ts says why).
  const { exportMetrics } = yield* Effect.promise(() => import("../telemetry/exporter.js"))
  const write = yield* exportMetrics(settings.metrics)
  const again = write.pipe(Effect.catchAll((e) => Effect.logWarning("metrics file not written").pipe(Effect.annotateLogs({ reason: e.message }))))
  yield* Effect.forkScoped(Effect.repeat(again, Schedule.spaced(WRITE_EVERY)))
})

export const MetricsExport = Layer.scopedDiscard(make)
