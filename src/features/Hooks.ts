/** The idle and limit commands (hooks.ts), fed what the daemon looks like each second. */
import { Effect, Layer, Ref } from "effect"
import { Gate } from "../gate/Gate.js"
import { type Observed, watchHooks } from "../hooks/hooks.js"
import { DaemonConfig } from "./Config.js"
import { JobQueue } from "./JobQueue.js"
import { Running } from "./Running.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const gate = yield* Gate
  const { pending } = yield* JobQueue
  const running = yield* Running
  const observe = Effect.gen(function*(): Effect.fn.Return<Observed> {
    const queued = yield* pending.size
    const active = yield* Ref.get(running.active)
    const activity = (yield* Ref.get(running.won)) + (yield* Ref.get(running.finished))
    if (queued === 0) return { queued, running: active, activity, holding: null }
    if (settings.maxJobs > 0 && (yield* Ref.get(running.processes)) >= settings.maxJobs) {
      return { queued, running: active, activity, holding: "max-jobs" }
    }
    return { queued, running: active, activity, holding: (yield* gate.isOpen) ? null : "load" }
  })
  yield* watchHooks(settings, observe).pipe(Effect.forkScoped)
})

export const Hooks = Layer.scopedDiscard(make)
