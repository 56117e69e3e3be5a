/**
 * Live progress of a --drain on a terminal: one line on stderr, redrawn twice a
 * second, e.g. `drain: 120/500 done (3 failed), 8 running, 42.0 jobs/s, about 9 s left`.
 * Drawn once the queue is known (the first scan), so it never starts at 0/0.
 * Log lines clear it as they print (see log.ts); nothing of it reaches a file
 * or a pipe.
 */
import { Clock, Effect, Schedule } from "effect"

export interface Counts {
  readonly done: number
  /** Of the done, those that did not succeed. */
  readonly failed: number
  readonly running: number
  readonly queued: number
}

const duration = (seconds: number) =>
  seconds < 90 ? `${Math.ceil(seconds)} s` : seconds < 5400 ? `${Math.round(seconds / 60)} min` : `${(seconds / 3600).toFixed(1)} h`

/** The line for COUNTS after ELAPSEDMS; TOTAL when more is known than the counts show (see showProgress). */
export const progressLine = (counts: Counts, elapsedMs: number, atLeast = 0): string => {
  const total = Math.max(atLeast, counts.done + counts.running + counts.queued)
  const rate = elapsedMs > 0 ? (counts.done * 1000) / elapsedMs : 0
  const left = total - counts.done
  const eta = rate > 0 ? `, about ${duration(left / rate)} left` : ""
  const failed = counts.failed > 0 ? ` (${counts.failed} failed)` : ""
  return `drain: ${counts.done}/${total} done${failed}, ${counts.running} running, ${rate.toFixed(1)} jobs/s${eta}`
}

/** Redraws the line every 500 ms until interrupted, then clears it. */
export const showProgress = (counts: Effect.Effect<Counts>) =>
  Effect.gen(function*() {
    const started = yield* Clock.currentTimeMillis
    // A job being claimed has left the queue and is not running yet: the
    // total the counts add up to dips by it. A drain's total only grows.
    let total = 0
    const draw = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const seen = yield* counts
      total = Math.max(total, seen.done + seen.running + seen.queued)
      if (total > 0) process.stderr.write(`\r\x1b[K${progressLine(seen, now - started, total)}`)
    })
    yield* draw.pipe(Effect.repeat(Schedule.spaced("500 millis")), Effect.ensuring(Effect.sync(() => process.stderr.write("\r\x1b[K"))))
  })
