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

