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
import { verifyFileFolder } from "../filesystem/dirs.js"
import { CannotServeMetrics, describe } from "../errors/errors.js"
import { threadedCalls } from "../filesystem/syscalls.js"
import { serveMetrics } from "./metricsServer.js"
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
const writeTextfile = <E>(exposition: Effect.Effect<string, E>, file: string) =>
  Effect.flatMap(exposition, (text) =>
    Effect.tryPromise(async () => {
      const aside = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString("hex")}.tmp`)
      try {
        await calls.writeNew(aside, text, 0o644, null)
        await calls.rename(aside, file)
      } catch (e) {
        await calls.unlink(aside).catch(() => undefined)
        throw e
      }
    })).pipe(Effect.mapError((e) => new CannotServeMetrics({ reason: `--metrics-file ${file}: ${describe(e)}` })))

const checkFolder = (file: string) =>
  Effect.tryPromise({
    try: () => verifyFileFolder(calls, path.dirname(file)),
    catch: (e) => new CannotServeMetrics({ reason: `--metrics-file ${file}: ${e instanceof Error ? e.message : String(e)}` })
  })

/**
 * Reads Effect's metrics through one reader until the scope closes, serves
 * them on --metrics-listen and writes --metrics-file once, so that a port
 * taken or a file that cannot be written fails the start. Returns how to
 * write the file again (a no-op without --metrics-file).
 */
export const exportMetrics = (settings: MetricsSettings) =>
  Effect.gen(function*() {
    for (const file of Option.toArray(settings.file)) yield* checkFolder(file)
    // The exporter as a reader only: its own server is never started.
    const reader = new PrometheusExporter({ ...config, preventServerStart: true })
    const producer = yield* OtelMetrics.makeProducer.pipe(Effect.provide(Resource.layer({ serviceName: "pmjq" })))
    yield* OtelMetrics.registerProducer(producer, () => [reader])
    const serializer = new PrometheusSerializer(undefined, false, undefined, false, config.withoutScopeInfo)
    // Built at most once a second, however many scrapes ask (a failure too is kept that long).
    const exposition = yield* Effect.cachedWithTTL(
      Effect.tryPromise(() => reader.collect().then(({ resourceMetrics }) => serializer.serialize(resourceMetrics))),
      "1 second"
    )
    if (Option.isSome(settings.listen)) yield* serveMetrics(exposition, settings.listen.value)
    const write: Effect.Effect<void, CannotServeMetrics> = Option.match(settings.file, {
      onNone: () => Effect.void,
      onSome: (file) => writeTextfile(exposition, file)
    })
    yield* write
    return write
  })
