/**
 * What one job tells the operator's tools: a trace (a `pmjq.job` span, its
 * claim, run and archival as children, ended as an error unless the job
 * succeeded) and its metrics (the claim's result, dispatch latency, its end).
 * Without a tracer asked for (TRACED false), no span is made: four spans a job
 * are garbage pmjq's memory and CPU would pay for nothing.
 */
import { Clock, Effect, Exit, Metric, Option, Ref } from "effect"
import type { JobRecord } from "../record.js"
import { claimTried, dispatchLatency, jobEnded } from "./metrics.js"

const counted = <A, E, R>(claiming: Effect.Effect<Option.Option<A>, E, R>) =>
  claiming.pipe(
    Effect.tap((won) => claimTried(Option.isSome(won) ? "won" : "lost")),
    Effect.tapError(() => claimTried("error"))
  )

const startedAfter = (readyAt: number) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => Metric.update(dispatchLatency, Math.max(0, now - readyAt) / 1000))

export const jobTelemetry = (job: string, node: string, readyAt: number, traced: boolean) =>
  traced ? withTrace(job, node, readyAt) : Effect.succeed({
    within: <A, E, R>(effect: Effect.Effect<A, E, R>) => effect,
    phase: (_: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) => effect,
    claim: counted,
    started: startedAfter(readyAt),
    finished: (record: JobRecord) => jobEnded(record.outcome, record.durationMs),
    lost: Effect.void,
    end: Effect.void
  })

const withTrace = (job: string, node: string, readyAt: number) =>
  Effect.gen(function*() {
    const span = yield* Effect.makeSpan("pmjq.job", { root: true, attributes: { "pmjq.job": job, "pmjq.node": node } })
    const outcome = yield* Ref.make<string | null>(null)
    const ending = (said: string) => Effect.zipRight(Ref.set(outcome, said), Effect.sync(() => span.attribute("pmjq.outcome", said)))
    return {
      /** Runs a part of the job's life as a child of its span. */
      within: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.withParentSpan(effect, span),
      /** A part of the job's life as a span of its own (pmjq.run, pmjq.archive). */
      phase: (name: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.withSpan(effect, name),
      /** The claim: its own span, and its result counted (won, lost, or an error). */
      claim: <A, E, R>(claiming: Effect.Effect<Option.Option<A>, E, R>) =>
        counted(claiming).pipe(Effect.withSpan("pmjq.claim"), Effect.withParentSpan(span)),
      /** Its process started: from its arrival in the spool to now. */
      started: startedAfter(readyAt),
      finished: (record: JobRecord) => Effect.zipRight(ending(record.outcome), jobEnded(record.outcome, record.durationMs)),
      lost: ending("claimed elsewhere"),
      end: Effect.gen(function*() {
        const now = yield* Clock.currentTimeNanos
        const said = yield* Ref.get(outcome)
        span.end(now, said === null || said === "succeeded" || said === "claimed elsewhere" ? Exit.void : Exit.fail(said))
      })
    }
  })
