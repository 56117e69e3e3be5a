/**
 * What a stop (SIGTERM/SIGINT, the end of a --drain, a SIGHUP) does with the
 * jobs still running, before the Jobs FiberSets interrupt them (this layer is
 * built after Jobs, so its finalizer runs first):
 *
 * - stop (the default): they get --grace to finish, then are interrupted,
 *   which stops their process groups and archives them as interrupted; at
 *   once when the node is cut off from the spool (features/Beating.ts), as the node
 *   that takes them over runs them again;
 * - leave (--on-stop leave, or a SIGHUP restart): they are left to the
 *   spawners, told at start (or at the SIGHUP) to keep them whenever pmjq
 *   goes, and the last heartbeat lists them for the next pmjq to adopt.
 */
import { Context, Deferred, Duration, Effect, Layer, Option, Ref } from "effect"
import { ProcessRunner } from "../job/Runner.js"
import { heartbeatAside, heartbeatFile } from "../spool/layout.js"
import { Nodes } from "../spool/Nodes.js"
import { DaemonConfig, DaemonDone } from "./Config.js"
import { heartbeatNow } from "./Beating.js"
import { Jobs } from "./Jobs.js"
import { Running } from "./Running.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const jobs = yield* Jobs
  const running = yield* Running
  const runner = yield* ProcessRunner
  const nodes = yield* Nodes
  const finished = yield* DaemonDone
  /** From now on, whenever pmjq goes, its jobs stay. */
  const keepJobs = runner.keepJobs({
    heartbeatFile: heartbeatFile(settings.spool, settings.node),
    heartbeatAside: heartbeatAside(settings.spool, settings.node),
    everyMs: Duration.toMillis(settings.lease) / 4
  })
  if (settings.onStop === "leave") yield* keepJobs

  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const count = yield* jobs.count
      if (count === 0) return
      // Cut off from the spool: its jobs were killed, whatever --on-stop says (features/Beating.ts).
      const why = yield* Deferred.poll(finished)
      if (Option.isSome(why) && (yield* why.value) === "cut-off") return
      if (settings.onStop === "leave" || (yield* Ref.get(running.restarting))) {
        const left = yield* runner.leave
        // Its last word: the jobs it leaves, for the next pmjq to adopt.
        yield* Effect.flatMap(heartbeatNow, (hb) => nodes.beat({ ...hb, left: true })).pipe(Effect.ignore)
        return yield* Effect.logInfo("leaving: running jobs go on under the spawners, for the next pmjq to adopt").pipe(
          Effect.annotateLogs({ running: left })
        )
      }
      yield* Effect.logInfo("stopping").pipe(Effect.annotateLogs({ running: count, grace: Duration.format(settings.grace) }))
      const done = yield* jobs.awaitRunning.pipe(Effect.interruptible, Effect.timeoutOption(settings.grace))
      if (Option.isNone(done)) yield* Effect.logWarning("grace period over; terminating running jobs")
    })
  )
  return { keepJobs }
})

export class Stopping extends Context.Tag("pmjq/Stopping")<Stopping, Effect.Effect.Success<typeof make>>() {
  static readonly layer = Layer.scoped(Stopping, make)
}
