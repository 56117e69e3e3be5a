/**
 * pmjq's metrics in Prometheus's text format, off unless asked for: served on
 * --metrics-listen (GET /metrics), and written to --metrics-file for
 * node_exporter's textfile collector. Effect's metrics reach the exposition
 * through @effect/opentelemetry (a producer reading Effect's registry) and
 * OpenTelemetry's Prometheus exporter, which names and formats them; pmjq
 * writes no exposition text of its own.
 */
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as Resource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as path from "node:path"
import { verifyFileFolder } from "../dirs.js"
import { CannotServeMetrics, describe } from "../errors.js"
import { threadedCalls } from "../syscalls.js"
import { latest, serveMetrics } from "./metricsServer.js"
import type { MetricsSettings } from "./settings.js"

// The scope label would be @effect/opentelemetry's name on every series.
const config = { withoutScopeInfo: true } as const

// The file is not spool state: it is written on the thread pool, as on a network filesystem.
const calls = threadedCalls

/**
 * Replaces FILE with the exposition, whole: written under a fresh hidden name
 * beside it (exclusive, no-follow, 0644) and renamed over it, in a folder
 * checked at start to be pmjq's own. The collector reads only *.prom, so
 * never the aside; a symlink at FILE is replaced, not followed.
 */
const writeTextfile = (exposition: () => Promise<string>, file: string) =>
  Effect.tryPromise({
    try: async () => {
      const text = await exposition()
      const aside = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString("hex")}.tmp`)
      try {
        await calls.writeNew(aside, text, 0o644, null)
        await calls.rename(aside, file)
      } catch (e) {
        await calls.unlink(aside).catch(() => undefined)
        throw e
      }
    },
    catch: (e) => new CannotServeMetrics({ reason: `--metrics-file ${file}: ${describe(e)}` })
  })

const checkFolder = (file: string) =>
  Effect.tryPromise({
    try: () => verifyFileFolder(calls, path.dirname(file)),
    catch: (e) => new CannotServeMetrics({ reason: `--metrics-file ${file}: ${e instanceof Error ? e.message : String(e)}` })
  })

/**
 * Starts the exporters asked for, fed from Effect's metrics until the scope
 * closes (the HTTP server then stops), and writes the metrics file once, so
 * that a file that cannot be written fails the start. Returns how to write it
 * again (a no-op without --metrics-file).
 */
export const exportMetrics = (settings: MetricsSettings) =>
  Effect.gen(function*() {
    for (const file of Option.toArray(settings.file)) yield* checkFolder(file)
    // One reader, pulled by both: the exporter's own server is never started.
    const reader = new PrometheusExporter({ ...config, preventServerStart: true })
    const producer = yield* OtelMetrics.makeProducer.pipe(Effect.provide(Resource.layer({ serviceName: "pmjq" })))
    yield* OtelMetrics.registerProducer(producer, () => [reader])
    const serializer = new PrometheusSerializer(undefined, false, undefined, false, config.withoutScopeInfo)
    const exposition = latest(() => reader.collect().then(({ resourceMetrics }) => serializer.serialize(resourceMetrics)))
    if (Option.isSome(settings.listen)) yield* serveMetrics(exposition, settings.listen.value)
    const write: Effect.Effect<void, CannotServeMetrics> = Option.match(settings.file, {
      onNone: () => Effect.void,
      onSome: (file) => writeTextfile(exposition, file)
    })
    yield* write
    return write
  })
