/**
 * What the operator asked of metrics and traces, read from the command line
 * and the standard OpenTelemetry variables. Kept apart from the exporters
 * (telemetry/exporter.ts, telemetry/tracing.ts), which are loaded only when
 * asked for: OpenTelemetry's code costs startup time and memory (measured with
 * 100,000 queued: ~30 MiB more resident when loaded).
 */
import { Option } from "effect"

export interface ListenAddress {
  readonly host: string
  readonly port: number
}

export interface MetricsSettings {
  readonly listen: Option.Option<ListenAddress>
  readonly file: Option.Option<string>
}

export const metricsWanted = (settings: MetricsSettings) => Option.isSome(settings.listen) || Option.isSome(settings.file)

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
