/** DURATION on the command line: `500ms`, `30s`, `5m`, `1h`, or bare (decimal) seconds. */
import { Duration, Either } from "effect"

const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }

export const parseDuration = (text: string): Either.Either<Duration.Duration, string> => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text)
  if (match === null) {
    return Either.left(`invalid duration "${text}" (expected e.g. 500ms, 30s, 5m, 1h or a number of seconds)`)
  }
  const millis = Number(match[1]) * units[match[2] ?? "s"]!
  return Either.right(Duration.millis(Math.round(millis)))
}

/**
 * The longest wait that means anything: Effect's timers, like setTimeout, take
 * at most 2^31-1 ms (about 24.8 days) and treat a longer one as never.
 */
export const MAX_DURATION_MS = 2 ** 31 - 1

/** Whether a duration of 0 means something for this option (a grace of 0: no grace), or is a mistake. */
export type ZeroDuration = "zero allowed" | "positive"

/**
 * The one range check for every DURATION option: the duration, or what it
 * must be instead ("more than 0", "at most 24 days ..."). Checked after
 * rounding to milliseconds, so `0.1ms` counts as 0.
 */
export const durationInRange = (d: Duration.Duration, zero: ZeroDuration): Either.Either<Duration.Duration, string> => {
  const ms = Duration.toMillis(d)
  if (zero === "positive" && ms <= 0) return Either.left("more than 0")
  if (ms > MAX_DURATION_MS) return Either.left(`at most 24 days (${MAX_DURATION_MS} ms: longer timers never fire)`)
  return Either.right(d)
}
