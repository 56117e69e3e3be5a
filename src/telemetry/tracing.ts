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

export interface TraceSettings {
  /** Where spans are sent (OTLP/HTTP, JSON). */
  readonly url: string
  readonly serviceName: string
  /** OTEL_EXPORTER_OTLP_[TRACES_]HEADERS: key=value,... (a collector's credentials). */
  readonly headers: Record<string, string>
}

/** key1=value1,key2=value2, values percent-decoded, as the OpenTelemetry specification has it. */
const headersFrom = (text: string | undefined): Record<string, string> =>
  Object.fromEntries((text ?? "").split(",").flatMap((pair) => {
    const at = pair.indexOf("=")
    if (at <= 0) return []
    try {
      return [[pair.slice(0, at).trim(), decodeURIComponent(pair.slice(at + 1).trim())]]
    } catch {
      return []
    }
  }))

/** What the standard variables ask for, if anything. */
export const tracesFrom = (env: NodeJS.ProcessEnv): Option.Option<TraceSettings> => {
  if (env.OTEL_SDK_DISABLED === "true" || env.OTEL_TRACES_EXPORTER === "none") return Option.none()
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT
  const url = traces !== undefined && traces !== "" ? traces : base !== undefined && base !== "" ? `${base.replace(/\/+$/, "")}/v1/traces` : null
  if (url === null) return Option.none()
  return Option.some({
    url,
    serviceName: env.OTEL_SERVICE_NAME || "pmjq",
    headers: { ...headersFrom(env.OTEL_EXPORTER_OTLP_HEADERS), ...headersFrom(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS) }
  })
}

/** The tracer for the daemon's fibers: OTLP as asked, or Effect's own (kept in memory, sent nowhere). */
export const tracing = (settings: Option.Option<TraceSettings>) =>
  Option.match(settings, {
    onNone: () => Layer.empty,
    onSome: ({ headers, serviceName, url }) =>
      OtlpTracer.layer({ url, headers, resource: { serviceName }, exportInterval: "1 second" }).pipe(
        Layer.provide(Layer.merge(FetchHttpClient.layer, OtlpSerialization.layerJson))
      )
  })
