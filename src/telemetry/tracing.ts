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
import { Layer, Option } from "effect"
import type { TraceSettings } from "./settings.js"

/** The tracer for the daemon's fibers: OTLP as asked, or Effect's own (kept in memory, sent nowhere). */
export const tracing = (settings: Option.Option<TraceSettings>) =>
  Option.match(settings, {
    onNone: () => Layer.empty,
    onSome: ({ headers, serviceName, url }) =>
      OtlpTracer.layer({ url, headers, resource: { serviceName }, exportInterval: "1 second" }).pipe(
        Layer.provide(Layer.merge(FetchHttpClient.layer, OtlpSerialization.layerJson))
      )
  })
