/** Option parsers shared by pmjq's commands. */
import { HelpDoc, Options, ValidationError } from "@effect/cli"
import { Duration, Effect, Either } from "effect"
import { durationInRange, parseDuration, type ZeroDuration } from "./duration.js"

const invalid = (message: string) => ValidationError.invalidValue(HelpDoc.p(message))

// Syntax first, then the range every duration option shares (see durationInRange).
const parsed = (name: string, zero: ZeroDuration) =>
  Options.mapEffect((text: string) =>
    Either.match(parseDuration(text), {
      onLeft: (message) => Effect.fail(invalid(`--${name}: ${message}`)),
      onRight: (d): Effect.Effect<Duration.Duration, ValidationError.ValidationError> =>
        Either.match(durationInRange(d, zero), {
          onLeft: (expected) => Effect.fail(invalid(`--${name} must be ${expected}, not ${text}`)),
          onRight: Effect.succeed
        })
    })
  )

/** A DURATION option with a default; more than 0 unless `zero` is "zero allowed". */
export const duration = (name: string, fallback: string, description: string, zero: ZeroDuration = "positive") =>
  Options.text(name).pipe(Options.withPseudoName("DURATION"), Options.withDefault(fallback), Options.withDescription(description), parsed(name, zero))

/** A DURATION option that may be left out; when given, more than 0. */
export const optionalDuration = (name: string, description: string) =>
  Options.text(name).pipe(Options.withPseudoName("DURATION"), Options.withDescription(description), parsed(name, "positive"), Options.optional)

export const check = <A>(name: string, ok: (a: A) => boolean, expected: string) =>
  Options.mapEffect((a: A) => (ok(a) ? Effect.succeed(a) : Effect.fail(invalid(`--${name} must be ${expected}, not ${String(a)}`))))

/**
 * [ADDR:]PORT, [V6ADDR]:PORT: where to listen; the loopback address when only
 * a port is given (nothing is exposed to the network unless asked).
 */
export const parseListen = (text: string): Either.Either<{ readonly host: string; readonly port: number }, string> => {
  const m = /^(?:(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]+)):)?(\d{1,5})$/.exec(text)
  const port = m === null ? NaN : Number(m[3])
  if (m === null || !(port >= 1 && port <= 65535)) return Either.left(`expected [ADDR:]PORT (e.g. 9477, 0.0.0.0:9477, [::1]:9477), not ${JSON.stringify(text)}`)
  return Either.right({ host: m[1] ?? m[2] ?? "127.0.0.1", port })
}

export const listenAddress = (name: string) =>
  Options.mapEffect((text: string) =>
    Either.match(parseListen(text), { onLeft: (message) => Effect.fail(invalid(`--${name}: ${message}`)), onRight: Effect.succeed })
  )

/**
 * Text to a whole number, said as such when it is not one (@effect/cli's own
 * integer says "'abc' is not a integer", without naming the option).
 */
export const asInteger = (name: string) =>
  Options.mapEffect((text: string) =>
    /^[+-]?\d+$/.test(text.trim()) ? Effect.succeed(Number(text)) : Effect.fail(invalid(`--${name} needs an integer, not '${text}'`))
  )

/** Text to a number, possibly with a fraction (a load). */
export const asNumber = (name: string) =>
  Options.mapEffect((text: string) => {
    const n = Number(text)
    return text.trim() !== "" && Number.isFinite(n) ? Effect.succeed(n) : Effect.fail(invalid(`--${name} needs a number, not '${text}'`))
  })
