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
import type { MetricReader } from "@opentelemetry/sdk-metrics"
import { Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as http from "node:http"
import * as path from "node:path"
import { verifyFileFolder } from "../dirs.js"
import { CannotServeMetrics, describe } from "../errors.js"
import { threadedCalls } from "../syscalls.js"
import type { ListenAddress, MetricsSettings } from "./settings.js"

// The scope label would be @effect/opentelemetry's name on every series.
const config = { withoutScopeInfo: true } as const

// pmjq runs as root and anyone on the host can connect to the port: the
// server must not let them use up its descriptors or memory. Connections past
// MAX_CONNECTIONS are closed at once; one that sends nothing, or too slowly,
// is closed after a few seconds. A scrape asks little and takes milliseconds.
const MAX_CONNECTIONS = 16
const IDLE_MS = 5_000
const REQUEST_MS = 10_000

// URL.parse is not in every Node 20.
const pathOf = (url: string | undefined) => {
  try {
    return new URL(url ?? "", "http://pmjq").pathname
  } catch {
    return null
  }
}

/**
 * GET /metrics on ADDR:PORT, from a server of pmjq's own (the exporter's
 * builds in no limits), answered by the exporter's own handler. Closed, and
 * its connections with it, when the scope closes.
 */
const serve = ({ host, port }: ListenAddress) =>
  Effect.acquireRelease(
    Effect.async<{ readonly exporter: PrometheusExporter; readonly server: http.Server }, CannotServeMetrics>((resume) => {
      const exporter = new PrometheusExporter({ ...config, preventServerStart: true })
      const server = http.createServer({ headersTimeout: IDLE_MS, requestTimeout: REQUEST_MS, keepAliveTimeout: IDLE_MS, maxHeaderSize: 4096 }, (request, response) => {
        if (pathOf(request.url) !== "/metrics") {
          response.statusCode = 404
          response.end()
        } else if (request.method !== "GET" && request.method !== "HEAD") {
          response.statusCode = 405
          response.setHeader("allow", "GET, HEAD")
          response.end()
        } else {
          exporter.getMetricsRequestHandler(request, response)
        }
      })
      server.maxConnections = MAX_CONNECTIONS
      server.setTimeout(IDLE_MS)
      server.once("error", (e) => resume(Effect.fail(new CannotServeMetrics({ reason: `--metrics-listen ${host}:${port}: ${describe(e)}` }))))
      // Not what keeps pmjq running: its scope closes it.
      server.listen({ host, port }, () => resume(Effect.succeed({ exporter, server: server.unref() })))
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  )

// The file is not spool state: it is written on the thread pool, as on a network filesystem.
const calls = threadedCalls

/**
 * Replaces FILE with the exposition, whole: written under a fresh hidden name
 * beside it (exclusive, no-follow, 0644) and renamed over it, in a folder
 * checked at start to be pmjq's own. The collector reads only *.prom, so
 * never the aside; a symlink at FILE is replaced, not followed.
 */
const writeTextfile = (exporter: PrometheusExporter, serializer: PrometheusSerializer, file: string) =>
  Effect.tryPromise({
    try: async () => {
      const { resourceMetrics } = await exporter.collect()
      const aside = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString("hex")}.tmp`)
      try {
        await calls.writeNew(aside, serializer.serialize(resourceMetrics), 0o644, null)
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
    const readers: Array<MetricReader> = []
    if (Option.isSome(settings.listen)) readers.push((yield* serve(settings.listen.value)).exporter)
    const forFile = Option.map(settings.file, (file) => ({ file, exporter: new PrometheusExporter({ ...config, preventServerStart: true }) }))
    if (Option.isSome(forFile)) readers.push(forFile.value.exporter)
    const producer = yield* OtelMetrics.makeProducer.pipe(Effect.provide(Resource.layer({ serviceName: "pmjq" })))
    const [first, ...more] = readers
    if (first !== undefined) yield* OtelMetrics.registerProducer(producer, () => [first, ...more])
    const serializer = new PrometheusSerializer(undefined, false, undefined, false, true)
    const write: Effect.Effect<void, CannotServeMetrics> = Option.match(forFile, {
      onNone: () => Effect.void,
      onSome: ({ exporter, file }) => writeTextfile(exporter, serializer, file)
    })
    yield* write
    return write
  })
