/**
 * A trace per job (features/Jobs.ts: the job's span, with its claim, run and
 * archival as children), sent by OTLP/HTTP when the standard OpenTelemetry
 * variables ask for it, as every OpenTelemetry SDK reads them:
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL), else
 * OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces); none with OTEL_SDK_DISABLED=true
 * or OTEL_TRACES_EXPORTER=none. @effect/opentelemetry's OTLP tracer does the
 * sending: no OpenTelemetry SDK is loaded for it.
 */
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Layer, Option } from "effect"

export const tracesEndpoint = (env: NodeJS.ProcessEnv): Option.Option<string> => {
  if (env.OTEL_SDK_DISABLED === "true" || env.OTEL_TRACES_EXPORTER === "none") return Option.none()
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  if (traces !== undefined && traces !== "") return Option.some(traces)
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT
  return base !== undefined && base !== "" ? Option.some(`${base.replace(/\/+$/, "")}/v1/traces`) : Option.none()
}

/** The tracer for the daemon's fibers: OTLP to ENDPOINT, or Effect's own (kept in memory, sent nowhere). */
export const tracing = (endpoint: Option.Option<string>, serviceName = "pmjq") =>
  Option.match(endpoint, {
    onNone: () => Layer.empty,
    onSome: (url) => OtlpTracer.layer({ url, resource: { serviceName }, exportInterval: "1 second" }).pipe(
      Layer.provide(Layer.merge(FetchHttpClient.layer, OtlpSerialization.layerJson))
    )
  })
