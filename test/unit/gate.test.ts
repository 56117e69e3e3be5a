import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option, Ref, Schedule, TestClock } from "effect"
import { estimateLoad, gateIsOpen } from "../../src/gate/estimate.js"
import { Gate } from "../../src/gate/Gate.js"
import { LoadAverage } from "../../src/gate/LoadAverage.js"

/**
 * The kernel's 1-minute load average, simulated: every 5 s it moves toward the
 * number of runnable tasks by a factor 1 - e^-5/60, exactly as Linux does.
 */
const simulatedKernel = Effect.gen(function*() {
  const load = yield* Ref.make(0)
  const runnable = yield* Ref.make(0)
  const decay = Math.exp(-5 / 60)
  yield* Effect.gen(function*() {
    const n = yield* Ref.get(runnable)
    yield* Ref.update(load, (l) => l * decay + n * (1 - decay))
  }).pipe(Effect.repeat(Schedule.spaced("5 seconds")), Effect.delay("5 seconds"), Effect.forkScoped)
  return { load, runnable, layer: Layer.succeed(LoadAverage, { oneMinute: Ref.get(load) }) }
})

const gate = (limit: number, source: Layer.Layer<LoadAverage>) =>
  Gate.layer({ cpuLimit: Option.some(limit), sampleEvery: "1 second" }).pipe(Layer.provide(source))

describe("CPU gate", () => {
  it("the estimate counts jobs the average has not caught up with", () => {
    // Two jobs started at the sample: the average shows none of them yet.
    expect(estimateLoad({ oneMinute: 0, sampledAt: 1000 }, [1000, 1000])).toBe(2)
    // Nor a job started within the kernel's last update period.
    expect(estimateLoad({ oneMinute: 0, sampledAt: 10_000 }, [5_000])).toBe(1)
    // A job started a minute before the kernel's last update is e^-1 unseen.
    expect(estimateLoad({ oneMinute: 0.632, sampledAt: 66_000 }, [0])).toBeCloseTo(1, 2)
    expect(gateIsOpen(2, 1.99)).toBe(true)
    expect(gateIsOpen(2, 2)).toBe(false)
  })

  it.scoped("-C 2 from an idle machine never bursts: 100 CPU-bound jobs queued, 2 run, for 10 minutes", () =>
    Effect.gen(function*() {
      const kernel = yield* simulatedKernel
      const started = yield* Ref.make(0)
      const dispatch = Effect.gen(function*() {
        const g = yield* Gate
        for (let i = 0; i < 100; i++) {
          yield* g.whenOpen
          yield* g.started
          yield* Ref.update(started, (n) => n + 1)
          // A CPU-bound job that never ends is one more runnable task.
          yield* Ref.update(kernel.runnable, (n) => n + 1)
        }
      })
      const fiber = yield* dispatch.pipe(Effect.provide(gate(2, kernel.layer)), Effect.scoped, Effect.fork)
      let peak = 0
      for (let second = 0; second < 600; second++) {
        yield* TestClock.adjust("1 second")
        peak = Math.max(peak, yield* Ref.get(started))
      }
      expect(peak).toBe(2)
      // The kernel now agrees: the load settled at the limit.
      expect(yield* Ref.get(kernel.load)).toBeCloseTo(2, 1)
      yield* Fiber.interrupt(fiber)
    }))

  it.scoped("jobs that end free their place: short jobs keep flowing at the limit", () =>
    Effect.gen(function*() {
      const kernel = yield* simulatedKernel
      const done = yield* Ref.make(0)
      const job = (ended: Effect.Effect<void>) =>
        Effect.gen(function*() {
          yield* Ref.update(kernel.runnable, (n) => n + 1)
          yield* Effect.sleep("10 seconds")
          yield* Ref.update(kernel.runnable, (n) => n - 1)
          yield* ended
          yield* Ref.update(done, (n) => n + 1)
        })
      const dispatch = Effect.gen(function*() {
        const g = yield* Gate
        for (;;) {
          yield* g.whenOpen
          yield* Effect.fork(job(yield* g.started))
          yield* Effect.yieldNow()
        }
      })
      const fiber = yield* dispatch.pipe(Effect.provide(gate(2, kernel.layer)), Effect.scoped, Effect.fork)
      let peak = 0
      for (let second = 0; second < 300; second++) {
        yield* TestClock.adjust("1 second")
        peak = Math.max(peak, yield* Ref.get(kernel.runnable))
      }
      // Never above the limit; and the gate keeps opening as jobs end (at most
      // 60 could finish two at a time, 10 s each, in 5 minutes).
      expect(peak).toBe(2)
      const finished = yield* Ref.get(done)
      expect(finished).toBeGreaterThan(25)
      expect(finished).toBeLessThanOrEqual(60)
      yield* Fiber.interrupt(fiber)
    }))

  it.scoped("a busy machine closes the gate; it opens once the load falls", () =>
    Effect.gen(function*() {
      const load = yield* Ref.make(3.5)
      const opened = yield* Ref.make(false)
      const wait = Effect.flatMap(Gate, (g) => g.whenOpen).pipe(
        Effect.zipRight(Ref.set(opened, true)),
        Effect.provide(gate(2, Layer.succeed(LoadAverage, { oneMinute: Ref.get(load) }))),
        Effect.scoped
      )
      const fiber = yield* Effect.fork(wait)
      yield* TestClock.adjust("1 minute")
      expect(yield* Ref.get(opened)).toBe(false)
      yield* Ref.set(load, 1.2)
      yield* TestClock.adjust("2 seconds")
      expect(yield* Ref.get(opened)).toBe(true)
      yield* Fiber.join(fiber)
    }))

  it.scoped("without -C the gate is always open, and the load is estimated all the same (the metrics show it)", () =>
    Effect.gen(function*() {
      const g = yield* Gate.pipe(
        Effect.provide(Gate.layer({ cpuLimit: Option.none(), sampleEvery: "1 second" }).pipe(
          Layer.provide(Layer.succeed(LoadAverage, { oneMinute: Effect.succeed(99) }))
        ))
      )
      const ends = []
      for (let i = 0; i < 1000; i++) ends.push(yield* g.started)
      yield* g.whenOpen
      expect(yield* g.isOpen).toBe(true)
      expect(yield* g.estimate).toBe(99 + 1000)
      for (const ended of ends.slice(0, 400)) yield* ended
      expect(yield* g.estimate).toBe(99 + 600)
    }))
})
