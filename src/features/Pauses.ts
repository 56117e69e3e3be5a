/**
 * `pmjq pause` as this node sees it: the pause files (spool/pauses.ts) read
 * once before dispatch starts and every --poll after, so a pause made on any
 * node holds here within one. While paused, the dispatcher claims nothing;
 * running jobs go on.
 */
import { Context, Effect, Layer, Option, Ref } from "effect"
import { type Pause } from "../spool/pauses.js"
import { Spool } from "../spool/Spool.js"
import { DaemonConfig } from "./Config.js"

const describePause = (p: Pause) => `${p.node === null ? "the spool" : `node ${p.node}`} paused by ${p.by}${p.reason === null ? "" : `: ${p.reason}`}`

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const spool = yield* Spool
  const current = yield* Ref.make(Option.none<Pause>())
  const running = yield* Effect.makeLatch(true)
  const look = Effect.gen(function*() {
    const now = yield* spool.paused
    const before = yield* Ref.getAndSet(current, now)
    const same = Option.isSome(now) && Option.isSome(before) && now.value.node === before.value.node && now.value.at === before.value.at
    if (Option.isSome(now) && !same) {
      yield* running.close
      yield* Effect.logWarning(`${describePause(now.value)}; claiming nothing new until resumed`)
    } else if (Option.isNone(now) && Option.isSome(before)) {
      yield* running.open
      yield* Effect.logInfo("resumed; claiming again")
    }
  })
  yield* look
  yield* Effect.sleep(settings.poll).pipe(Effect.zipRight(look), Effect.forever, Effect.forkScoped)
  return {
    /** Until no pause holds this node. */
    whenResumed: running.await,
    /** The pause that holds this node now, if any. */
    current: Ref.get(current)
  }
})

export class Pauses extends Context.Tag("pmjq/Pauses")<Pauses, Effect.Effect.Success<typeof make>>() {
  static readonly layer = Layer.scoped(Pauses, make)
}
