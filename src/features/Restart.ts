/**
 * SIGHUP: a restart in place. The running jobs are left to the spawners (as
 * with --on-stop leave, whatever --on-stop says), the daemon ends as on a
 * stop, and the command line starts pmjq again with the same arguments and
 * node id (cli/daemon.ts), which adopts them: a new installed version, or
 * changed options, take effect without a job noticing.
 */
import { Deferred, Effect, Layer, Ref } from "effect"
import { Finished } from "./Config.js"
import { Jobs } from "./Jobs.js"
import { Running } from "./Running.js"

const hangUp = Effect.async<void>((resume) => {
  const heard = () => resume(Effect.void)
  process.once("SIGHUP", heard)
  return Effect.sync(() => void process.off("SIGHUP", heard))
})

const make = Effect.gen(function*() {
  const finished = yield* Finished
  const jobs = yield* Jobs
  const { restarting } = yield* Running
  yield* hangUp.pipe(
    Effect.zipRight(Effect.logInfo("SIGHUP: restarting in place; running jobs go on")),
    Effect.zipRight(Ref.set(restarting, true)),
    Effect.zipRight(jobs.keepJobs),
    Effect.zipRight(Deferred.succeed(finished, "restart")),
    Effect.forkScoped
  )
})

export const Restart = Layer.scopedDiscard(make)
