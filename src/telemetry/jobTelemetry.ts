/**
 * What one job tells the operator's tools: a trace (a `pmjq.job` span, its
 * claim, run and archival as children, ended as an error unless the job
 * succeeded) and its metrics (the claim's result, dispatch latency, its end).
 * Each only when asked for: four spans and four metric updates a job are
 * garbage and CPU pmjq would pay for nothing (measured: ~20 µs of CPU a job,
 * ~5 % of a drain's throughput).
 */
import { Clock, Effect, Exit, Metric, Option, Ref } from "effect"
import type { JobRecord } from "../record/record.js"
import { claimTried, dispatchLatency, jobEnded } from "./metrics.js"
import { type MetricsSettings, metricsWanted, type TraceSettings } from "./settings.js"

interface Counting {
  readonly claim: <A, E, R>(claiming: Effect.Effect<Option.Option<A>, E, R>) => Effect.Effect<Option.Option<A>, E, R>
  readonly started: Effect.Effect<void>
  readonly finished: (record: JobRecord) => Effect.Effect<void>
}

const counting = (readyAt: number): Counting => ({
  claim: (claiming) =>
    claiming.pipe(
      Effect.tap((won) => claimTried(Option.isSome(won) ? "won" : "lost")),
      Effect.tapError(() => claimTried("error"))
    ),
  // From its arrival in the spool to its process's start.
  started: Effect.flatMap(Clock.currentTimeMillis, (now) => Metric.update(dispatchLatency, Math.max(0, now - readyAt) / 1000)),
  finished: jobEnded
})

const uncounted: Counting = { claim: (claiming) => claiming, started: Effect.void, finished: () => Effect.void }

/** For JOB, come into the spool at READYAT, on the node that SETTINGS are of. */
export const jobTelemetry = (
  job: string,
  readyAt: number,
  settings: { readonly node: string; readonly metrics: MetricsSettings; readonly traces: Option.Option<TraceSettings> }
) => {
  const counts = metricsWanted(settings.metrics) ? counting(readyAt) : uncounted
  return Option.isSome(settings.traces) ? withTrace(job, settings.node, counts) : Effect.succeed({
    within: <A, E, R>(effect: Effect.Effect<A, E, R>) => effect,
    phase: (_: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) => effect,
    ...counts,
    lost: Effect.void,
    end: Effect.void
  })
}

const withTrace = (job: string, node: string, counts: Counting) =>
  Effect.gen(function*() {
    const span = yield* Effect.makeSpan("pmjq.job", { root: true, attributes: { "pmjq.job": job, "pmjq.node": node } })
    const outcome = yield* Ref.make<string | null>(null)
    const ending = (said: string) => Effect.zipRight(Ref.set(outcome, said), Effect.sync(() => span.attribute("pmjq.outcome", said)))
    return {
      /** Runs a part of the job's life as a child of its span. */
      within: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.withParentSpan(effect, span),
      /** A part of the job's life as a span of its own (pmjq.run, pmjq.archive). */
      phase: (name: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.withSpan(effect, name),
      /** The claim: its own span, and its result counted. */
      claim: <A, E, R>(claiming: Effect.Effect<Option.Option<A>, E, R>) =>
        counts.claim(claiming).pipe(Effect.withSpan("pmjq.claim"), Effect.withParentSpan(span)),
      started: counts.started,
      finished: (record: JobRecord) => Effect.zipRight(ending(record.outcome), counts.finished(record)),
      lost: ending("claimed elsewhere"),
      end: Effect.gen(function*() {
        const now = yield* Clock.currentTimeNanos
        const said = yield* Ref.get(outcome)
        span.end(now, said === null || said === "succeeded" || said === "claimed elsewhere" ? Exit.void : Exit.fail(said))
      })
    }
  })
