/** The daemon's settings, as one service each feature reads what it needs from. */
import { Context, type Deferred, type Duration, type Option } from "effect"
import type { FinishHookSettings } from "../hooks/finishHooks.js"
import type { HookSettings } from "../hooks/hooks.js"
import type { JobSettings } from "../job/Job.js"
import type { RunnerSettings } from "../job/Runner.js"
import type { RecoverySettings } from "../recovery/recovery.js"
import type { MetricsSettings, TraceSettings } from "../telemetry/settings.js"

export interface DaemonSettings extends JobSettings, RecoverySettings, HookSettings, FinishHookSettings, RunnerSettings {
  /** At most this many jobs at once; 0 means no cap. */
  readonly maxJobs: number
  /** At most this many jobs of one user while another user's job waits (--max-jobs-per-user). */
  readonly maxJobsPerUser: Option.Option<number>
  /** Launch no job while the load estimate is at or above this (-C). */
  readonly cpuLimit: Option.Option<number>
  readonly poll: Duration.DurationInput
  /** Exit once the spool is empty and nothing runs. */
  readonly drain: boolean
  /** Show a live progress line on stderr (a --drain on a terminal). */
  readonly progress: boolean
  /**
   * On SIGTERM/SIGINT: stop the running jobs (after --grace), or leave them
   * running under the spawners for the next pmjq with this node id to adopt.
   */
  readonly onStop: "stop" | "leave"
  /** Prometheus metrics: served (--metrics-listen) or written for node_exporter (--metrics-file); neither by default. */
  readonly metrics: MetricsSettings
  /** Where to send a trace per job (OTLP/HTTP), from the OTEL_* variables; none by default. */
  readonly traces: Option.Option<TraceSettings>
}

export class DaemonConfig extends Context.Tag("pmjq/DaemonConfig")<DaemonConfig, DaemonSettings>() {}

/** What a --drain did, for its last line and its exit status. */
export interface Drained {
  readonly _tag: "Drained"
  readonly succeeded: number
  /** Ended any other way: failed, timed out, cancelled, rejected, interrupted. */
  readonly failed: number
  readonly elapsedMs: number
}

/**
 * Why the daemon ended by itself: its --drain ran dry, SIGHUP asked for a
 * restart in place, or it was cut off from the spool (features/Beating.ts).
 */
export type DaemonEnding = Drained | "restart" | "cut-off"

/**
 * Completed when the daemon's work is over by itself (a --drain that ran dry,
 * a SIGHUP, or a dispatcher that died): the composition root then ends the
 * daemon, its layers closing as on a signal.
 */
export class DaemonDone extends Context.Tag("pmjq/DaemonDone")<DaemonDone, Deferred.Deferred<DaemonEnding>>() {}
