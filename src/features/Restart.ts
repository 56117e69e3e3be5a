/**
 * SIGHUP: a restart in place. The running jobs are left to the spawners (as
 * with --on-stop leave, whatever --on-stop says), the daemon ends as on a
 * stop, and the command line starts pmjq again with the same arguments and
 * node id (cli/daemon.ts), which adopts them: a new installed version, or
 * changed options, take effect without a job noticing.
 */
import { Deferred, Effect, Layer, Ref } from "effect"
import { DaemonDone } from "./Config.js"
import { Running } from "./Running.js"
import { Stopping } from "./Stopping.js"

const hangUp = Effect.async<void>((resume) => {
  const heard = () => resume(Effect.void)
  process.once("SIGHUP", heard)
  return Effect.sync(() => void process.off("SIGHUP", heard))
})

const make = Effect.gen(function*() {
  const finished = yield* DaemonDone
  const stopping = yield* Stopping
  const { restarting } = yield* Running
  yield* hangUp.pipe(
    Effect.zipRight(Effect.logInfo("SIGHUP: restarting in place; running jobs go on")),
    Effect.zipRight(Ref.set(restarting, true)),
    Effect.zipRight(stopping.keepJobs),
    Effect.zipRight(Deferred.succeed(finished, "restart")),
    Effect.forkScoped
  )
})

export const Restart = Layer.scopedDiscard(make)
