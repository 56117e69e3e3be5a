/**
 * The CPU gate: a sampler on a Schedule keeps the latest load sample in a Ref, and
 * dispatch waits on `whenOpen` before each launch. Without `-C` the gate is always open.
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
    /** The current estimate (0 when there is no limit), for logs and status. */
    readonly estimate: Effect.Effect<number>
    /** Whether a job may start now. */
    readonly isOpen: Effect.Effect<boolean>
  }
>() {
  static readonly layer = (settings: GateSettings) =>
    Layer.scoped(
      Gate,
      Option.match(settings.cpuLimit, {
        onNone: () => Effect.succeed(Gate.of({ whenOpen: Effect.void, started: Effect.succeed(Effect.void), estimate: Effect.succeed(0), isOpen: Effect.succeed(true) })),
        onSome: (limit) => makeLimited(limit, settings.sampleEvery)
      })
    )
}

const makeLimited = Effect.fn("Gate.make")(function*(limit: number, sampleEvery: Duration.DurationInput) {
  const load = yield* LoadAverage
  const takeSample = Effect.zipWith(load.oneMinute, Clock.currentTimeMillis, (oneMinute, sampledAt): LoadSample => ({
    oneMinute,
    sampledAt
  }))
  const sample = yield* Ref.make(yield* takeSample)
  // Start times of the jobs this node is running, keyed by a launch counter.
  const running = yield* Ref.make(new Map<number, number>())
  let launches = 0

  yield* takeSample.pipe(
    Effect.flatMap((s) => Ref.set(sample, s)),
    Effect.repeat(Schedule.spaced(sampleEvery)),
    Effect.delay(sampleEvery),
    Effect.forkScoped
  )

  const estimate = Effect.zipWith(Ref.get(sample), Ref.get(running), (s, r) => estimateLoad(s, r.values()))
  const isOpen = Effect.map(estimate, (e) => gateIsOpen(limit, e))

  const whenOpen = isOpen.pipe(
    Effect.repeat({ until: (open) => open, schedule: Schedule.spaced(sampleEvery) }),
    Effect.asVoid
  )

  const started = Effect.gen(function*() {
    const id = launches++
    const now = yield* Clock.currentTimeMillis
    yield* Ref.update(running, (m) => new Map(m).set(id, now))
    return Ref.update(running, (m) => {
      const next = new Map(m)
      next.delete(id)
      return next
    })
  })

  return Gate.of({ whenOpen, started, estimate, isOpen })
})
