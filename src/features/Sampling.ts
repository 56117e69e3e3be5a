/**
 * The gauges the metrics export shows (features/MetricsExport.ts), sampled
 * from the daemon's state every 2 s: the queue, the jobs that may not start
 * yet (held, on dependencies, paused), running jobs by user,
 * archival retries, the gate and its load, pmjq's memory and event-loop lag.
 * Nothing runs without --metrics-listen or --metrics-file.
 */
import { Effect, HashMap, Layer, Metric, Option, Ref, Schedule } from "effect"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { Gate } from "../gate/Gate.js"
import { Users } from "../owners/Users.js"
import * as M from "../telemetry/metrics.js"
import { metricsWanted } from "../telemetry/settings.js"
import { DaemonConfig } from "./Config.js"
import { JobQueue } from "./JobQueue.js"
import { Jobs } from "./Jobs.js"
import { Pauses } from "./Pauses.js"
import { Running } from "./Running.js"

const SAMPLE_EVERY = "2 seconds"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  if (!metricsWanted(settings.metrics)) return
  const { feed, pending } = yield* JobQueue
  const pauses = yield* Pauses
  const running = yield* Running
  const jobs = yield* Jobs
  const gate = yield* Gate
  const users = yield* Users
  yield* M.zeroes

  const lag = monitorEventLoopDelay({ resolution: 20 })
  lag.enable()
  yield* Effect.addFinalizer(() => Effect.sync(() => lag.disable()))

  // Every user this node ran a job of (Running.byOwner keeps them at 0), so a
  // series never vanishes once its user is idle: a dashboard shows 0, not "no data".
  // A name found is kept: every user seen is sampled every time, and asking
  // again would fork getent for each of them once a minute.
  const names = new Map<number, string>()
  const userName = (uid: number) =>
    Effect.suspend(() => {
      const known = names.get(uid)
      if (known !== undefined) return Effect.succeed(known)
      return Effect.map(users.account(uid), Option.match({
        onNone: () => String(uid),
        onSome: (a) => {
          names.set(uid, a.name)
          return a.name
        }
      }))
    })
  const sampleRunning = Effect.gen(function*() {
    const counts = new Map<string, number>()
    for (const [uid, n] of HashMap.toEntries(yield* Ref.get(running.byOwner))) {
      const name = yield* userName(uid)
      counts.set(name, (counts.get(name) ?? 0) + n)
    }
    yield* Effect.forEach(counts, ([name, n]) => Metric.set(Metric.tagged(M.jobsRunning, "user", name), n), { discard: true })
  })

  const sample = Effect.gen(function*() {
    const queued = yield* pending.size
    yield* Metric.set(M.jobsQueued, queued)
    yield* M.setWaiting(feed.waiting.counts(), queued, Option.isSome(yield* pauses.current))
    yield* sampleRunning
    yield* Metric.set(M.archiveRetries, yield* jobs.retrying)
    yield* Metric.set(M.gateOpen, (yield* gate.isOpen) ? 1 : 0)
    yield* Metric.set(M.load, yield* gate.estimate)
    yield* Metric.set(M.residentMemory, process.memoryUsage.rss())
    yield* Metric.set(M.eventLoopLag, lag.max / 1e9)
    lag.reset()
  })

  yield* Effect.forkScoped(Effect.repeat(sample, Schedule.spaced(SAMPLE_EVERY)))
})

export const Sampling = Layer.scopedDiscard(make)
