/**
 * What pmjq counts, as Effect metrics, named and labelled the Prometheus way
 * (`_total` is added to counters by the exporter; times in seconds). Updated
 * where things happen (a claim, an end, a hook) or sampled (features/Metrics.ts);
 * exported only with --metrics-listen or --metrics-file (telemetry/exporter.ts).
 * contrib/grafana/pmjq.json queries these names: test/e2e/metrics.test.ts
 * checks each against what a real drain exports.
 */
import { Effect, Metric, MetricBoundaries } from "effect"
import { type Outcome, OUTCOMES } from "../record/record.js"

// 10 ms to ~3 h, four buckets per decade and a half: jobs are seconds to hours.
const durations = MetricBoundaries.exponential({ start: 0.01, factor: 3, count: 14 })
// 1 ms to ~20 s: from a job's arrival in the spool to its process's start.
const latencies = MetricBoundaries.exponential({ start: 0.001, factor: 2.5, count: 12 })

export const jobsQueued = Metric.gauge("pmjq_jobs_queued", { description: "Jobs in the spool this node knows are ready to claim" })
export const jobsWaiting = Metric.gauge("pmjq_jobs_waiting", {
  description: "Jobs this node saw that may not start yet, by reason: held (#PMJQ --hold), dependency (an --after or --after-any job not ended), paused (ready, while pmjq pause holds this node)"
})
export const jobsRunning = Metric.gauge("pmjq_jobs_running", { description: "Jobs this node holds a -j slot for (claimed, until their process ends), by the user owning the job file (0 for a user seen, idle)" })
export const jobsFinished = Metric.counter("pmjq_jobs_finished", { description: "Jobs this node saw end, by outcome", incremental: true })
export const jobDuration = Metric.histogram("pmjq_job_duration_seconds", durations, "How long jobs ran, by outcome")
export const dispatchLatency = Metric.histogram("pmjq_dispatch_latency_seconds", latencies, "From a job's arrival in the spool to the start of its process")
export const claims = Metric.counter("pmjq_claims", { description: "Claims tried by this node, by result (won, lost to another node, error)", incremental: true })
export const archiveRetries = Metric.gauge("pmjq_archive_retries_pending", { description: "Finished jobs whose archival failed and is being retried" })
export const gateOpen = Metric.gauge("pmjq_gate_open", { description: "1 when the CPU gate (-C) lets jobs start, else 0" })
export const load = Metric.gauge("pmjq_load_estimate", { description: "The gate's estimate of the load, with or without -C: the 1-minute load average plus jobs started since" })
export const hooksFired = Metric.counter("pmjq_hooks_fired", { description: "Idle, limit and on-finish commands run, by hook", incremental: true })
export const hooksFailed = Metric.counter("pmjq_hooks_failed", { description: "Hook commands that exited non-zero, were killed, timed out or could not start, by hook", incremental: true })
export const hooksDropped = Metric.counter("pmjq_hooks_dropped", { description: "On-finish commands never run: their queue was full, or pmjq stopped first", incremental: true })
export const nodes = Metric.gauge("pmjq_nodes", { description: "Nodes seen in the spool's heartbeats at the last recovery round (this one included), by state (live, stale)" })
export const residentMemory = Metric.gauge("pmjq_resident_memory_bytes", { description: "pmjq's resident memory" })
export const eventLoopLag = Metric.gauge("pmjq_event_loop_lag_seconds", { description: "Longest event-loop delay in the last sampling period" })


export const WAIT_REASONS = ["held", "dependency", "paused"] as const
type WaitReason = typeof WAIT_REASONS[number]

/**
 * pmjq_jobs_waiting, every reason each time (a dashboard shows 0, not "no
 * data"): WAITING, the jobs held or waiting on dependencies (spool/Waiting.ts);
 * READY, the queue, all held back while PAUSED.
 */
export const setWaiting = (waiting: { readonly held: number; readonly dependency: number }, ready: number, paused: boolean) => {
  const counts: Record<WaitReason, number> = { ...waiting, paused: paused ? ready : 0 }
  return Effect.forEach(WAIT_REASONS, (reason) => Metric.set(Metric.tagged(jobsWaiting, "reason", reason), counts[reason]), { discard: true })
}

/** A job ended, as its record says: counted, and its run time observed, by outcome. */
export const jobEnded = ({ durationMs, outcome }: { readonly outcome: Outcome; readonly durationMs: number }) =>
  Effect.zipRight(
    Metric.increment(Metric.tagged(jobsFinished, "outcome", outcome)),
    Metric.update(Metric.tagged(jobDuration, "outcome", outcome), durationMs / 1000)
  )

export const claimTried = (result: "won" | "lost" | "error") => Metric.increment(Metric.tagged(claims, "result", result))

const HOOKS = ["idle", "limit", "finish"] as const
export type Hook = typeof HOOKS[number]

export const hookFired = (hook: Hook) => Metric.increment(Metric.tagged(hooksFired, "hook", hook))
export const hookFailed = (hook: Hook) => Metric.increment(Metric.tagged(hooksFailed, "hook", hook))
export const hooksDroppedBy = (count: number) => Metric.incrementBy(Metric.tagged(hooksDropped, "hook", "finish"), count)

/**
 * Every counter's series at 0 from the start, as Prometheus advises: a
 * rate() or increase() over a series that appears at its first event misses
 * that event, and a dashboard shows "no data" rather than 0.
 */
export const zeroes = Effect.all([
  ...OUTCOMES.map((outcome) => Metric.incrementBy(Metric.tagged(jobsFinished, "outcome", outcome), 0)),
  ...(["won", "lost", "error"] as const).map((result) => Metric.incrementBy(Metric.tagged(claims, "result", result), 0)),
  ...HOOKS.map((hook) => Metric.incrementBy(Metric.tagged(hooksFired, "hook", hook), 0)),
  ...HOOKS.map((hook) => Metric.incrementBy(Metric.tagged(hooksFailed, "hook", hook), 0)),
  hooksDroppedBy(0)
], { discard: true })
