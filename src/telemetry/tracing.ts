/**
 * A trace per job (features/Jobs.ts: the job's span, with its claim, run and
 * archival as children), sent by OTLP/HTTP when the standard OpenTelemetry
 * variables ask for it, as every OpenTelemetry SDK reads them:
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL), else
 * OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces), with OTEL_EXPORTER_OTLP_HEADERS
 * and OTEL_SERVICE_NAME; none with OTEL_SDK_DISABLED=true or
 * OTEL_TRACES_EXPORTER=none. Only OTLP/HTTP with JSON is spoken. @effect/opentelemetry's OTLP tracer does the
 * sending: no OpenTelemetry SDK is loaded for it.
 */
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { RequestError } from "@effect/platform/HttpClientError"
import { Effect, Fiber, Layer, Option } from "effect"
import type { TraceSettings } from "./settings.js"

// The tracer sends spans every second from a fiber that pmjq's shutdown
// interrupts: a send cut short there lost its spans, and turned the sending
// off for a minute, so that the last flush was skipped too (a drain's traces
// never reached a collector that took a second to answer). Each send runs in
// a fiber of its own, given SEND_FOR, and the sender waits for it, stopping
// or not: pmjq's exit waits for its last spans that long at most.
const SEND_FOR = "3 seconds"
const patientClient = Layer.effect(
  HttpClient.HttpClient,
  Effect.map(HttpClient.HttpClient, (client) =>
    HttpClient.transform(client, (send, request) =>
      Effect.uninterruptible(Effect.flatMap(
        Effect.forkDaemon(Effect.interruptible(send.pipe(Effect.timeoutFail({
          duration: SEND_FOR,
          onTimeout: () => new RequestError({ request, reason: "Transport", description: `no answer within ${SEND_FOR}` })
        })))),
        Fiber.join
      ))))
).pipe(Layer.provide(FetchHttpClient.layer))

/** The tracer for the daemon's fibers: OTLP as asked, or Effect's own (kept in memory, sent nowhere). */
export const tracing = (settings: Option.Option<TraceSettings>) =>
  Option.match(settings, {
    onNone: () => Layer.empty,
    onSome: ({ headers, serviceName, url }) =>
      OtlpTracer.layer({ url, headers, resource: { serviceName }, exportInterval: "1 second" }).pipe(
        Layer.provide(Layer.merge(patientClient, OtlpSerialization.layerJson))
      )
  })
