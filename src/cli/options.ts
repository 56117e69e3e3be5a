/** Option parsers shared by pmjq's commands. */
import { HelpDoc, Options, ValidationError } from "@effect/cli"
import { Duration, Effect, Either } from "effect"
import { parseDuration } from "../duration.js"

const invalid = (message: string) => ValidationError.invalidValue(HelpDoc.p(message))

const parsed = (name: string) =>
  Options.mapEffect((text: string) =>
    Either.match(parseDuration(text), {
      onLeft: (message) => Effect.fail(invalid(`--${name}: ${message}`)),
      onRight: (d): Effect.Effect<Duration.Duration> => Effect.succeed(d)
    })
  )

export const duration = (name: string, fallback: string, description: string) =>
  Options.text(name).pipe(Options.withDefault(fallback), Options.withDescription(description), parsed(name))

export const optionalDuration = (name: string, description: string) =>
  Options.text(name).pipe(Options.withDescription(description), parsed(name), Options.optional)

export const check = <A>(name: string, ok: (a: A) => boolean, expected: string) =>
  Options.mapEffect((a: A) => (ok(a) ? Effect.succeed(a) : Effect.fail(invalid(`--${name} must be ${expected}, not ${String(a)}`))))
