/**
 * --on-finish (hooks/finishHooks.ts): told each job's end by Jobs (the jobs this
 * node ran) and RecoveryRounds (those it settled for a dead node, or adopted).
 * Built before Jobs, so that it closes after them: the jobs a stop interrupts
 * are archived, and their hooks queued, before the hooks' own close.
 */
import { Context, Deferred, Effect, Layer, Option } from "effect"
import { type FinishHooksService, makeFinishHooks } from "../hooks/finishHooks.js"
import { DaemonConfig, DaemonDone } from "./Config.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const finished = yield* DaemonDone
  // A drain ran dry (a Drained, not "restart" or "cut-off"): its hooks are part of its work.
  const ending = Effect.flatMap(Deferred.poll(finished), (why) =>
    Option.isNone(why) ? Effect.succeed("stop" as const) : Effect.map(why.value, (e) => (typeof e === "object" ? "drain" as const : "stop" as const)))
  return yield* makeFinishHooks(settings, { ending })
})

export class FinishHooks extends Context.Tag("pmjq/FinishHooks")<FinishHooks, FinishHooksService>() {
  static readonly layer = Layer.scoped(FinishHooks, make)
}
