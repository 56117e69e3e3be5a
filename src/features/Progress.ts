/** --drain on a terminal: a live progress line (log/progress.ts). */
import { Effect, Layer, Ref } from "effect"
import { showProgress } from "../log/progress.js"
import { DaemonConfig } from "./Config.js"
import { JobQueue } from "./JobQueue.js"
import { Running } from "./Running.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  if (!settings.progress) return
  const { pending } = yield* JobQueue
  const running = yield* Running
  yield* showProgress(Effect.all({ done: Ref.get(running.finished), failed: Ref.get(running.failed), running: Ref.get(running.active), queued: pending.size })).pipe(Effect.forkScoped)
})

export const Progress = Layer.scopedDiscard(make)
