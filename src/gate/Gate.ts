/**
 * The CPU gate: a sampler on a Schedule keeps the latest load sample in a Ref, and
 * dispatch waits on `whenOpen` before each launch. Without `-C` the gate is always open
 * (the estimate is kept all the same).
 */
import { Clock, Context, Duration, Effect, Layer, Option, Ref, Schedule } from "effect"
import { estimateLoad, gateIsOpen, type LoadSample } from "./estimate.js"
import { LoadAverage } from "./LoadAverage.js"

export interface GateSettings {
  readonly cpuLimit: Option.Option<number>
  /** How often the load is sampled, and how often a closed gate looks again. */
  readonly sampleEvery: Duration.DurationInput
}

export class Gate extends Context.Tag("pmjq/Gate")<
  Gate,
  {
    /** Waits until a job may start. */
    readonly whenOpen: Effect.Effect<void>
    /** Tells the gate a job started; the returned effect tells it the job ended. */
    readonly started: Effect.Effect<Effect.Effect<void>>
    /** The current estimate, with or without a limit, for the metrics and the heartbeat. */
    readonly estimate: Effect.Effect<number>
    /** Whether a job may start now. */
    readonly isOpen: Effect.Effect<boolean>
  }
>() {
  static readonly layer = (settings: GateSettings) => Layer.scoped(Gate, make(settings.cpuLimit, settings.sampleEvery))
}

// The estimate is kept without -C too: the metrics and `pmjq status` show it,
// and an operator picks a -C by it.
const make = Effect.fn("Gate.make")(function*(cpuLimit: Option.Option<number>, sampleEvery: Duration.DurationInput) {
  const load = yield* LoadAverage
  const takeSample = Effect.zipWith(load.oneMinute, Clock.currentTimeMillis, (oneMinute, sampledAt): LoadSample => ({
    oneMinute,
    sampledAt
  }))
  const sample = yield* Ref.make(yield* takeSample)
  // Start times of the jobs this node is running, keyed by a launch counter;
  // changed in place, so a start or an end costs the same however many run.
  const running = new Map<number, number>()
  let launches = 0

  const resample = Effect.flatMap(takeSample, (s) => Ref.set(sample, s))
  // With -C the gate needs a recent sample at each launch: one a sampleEvery.
  // Without, only the metrics and the heartbeat ask, every few seconds: a
  // sample when asked, and no timer on an idle node.
  if (Option.isSome(cpuLimit)) {
    yield* resample.pipe(Effect.repeat(Schedule.spaced(sampleEvery)), Effect.delay(sampleEvery), Effect.forkScoped)
  }
  const current = Option.isSome(cpuLimit) ? Ref.get(sample) : Effect.zipRight(resample, Ref.get(sample))
  const estimate = Effect.map(current, (s) => estimateLoad(s, running.values()))
  const isOpen = Option.match(cpuLimit, {
    onNone: () => Effect.succeed(true),
    onSome: (limit) => Effect.map(estimate, (e) => gateIsOpen(limit, e))
  })

  const whenOpen = Option.isNone(cpuLimit) ? Effect.void : isOpen.pipe(
    Effect.repeat({ until: (open) => open, schedule: Schedule.spaced(sampleEvery) }),
    Effect.asVoid
  )

  const started = Effect.gen(function*() {
    const id = launches++
    running.set(id, yield* Clock.currentTimeMillis)
    return Effect.sync(() => void running.delete(id))
  })

  return Gate.of({ whenOpen, started, estimate, isOpen })
})
