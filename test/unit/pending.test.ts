import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { makePending } from "../../src/spool/Pending.js"

describe("pending queue", () => {
  it.effect("hands out the oldest ready file first, arrival order breaking ties", () =>
    Effect.gen(function*() {
      const q = yield* makePending
      for (const [name, readyAt] of [["d", 5], ["b", 2], ["a", 1], ["c", 2], ["e", 9]] as const) {
        yield* q.offer({ name, readyAt })
      }
      const order: Array<string> = []
      for (let c = yield* q.poll; c !== undefined; c = yield* q.poll) order.push(c.name)
      expect(order).toEqual(["a", "b", "c", "d", "e"])
    }))

  it.effect("pollAmong takes the preferred one among the oldest few; the rest keep their order", () =>
    Effect.gen(function*() {
      const q = yield* makePending
      for (let i = 0; i < 10; i++) yield* q.offer({ name: `j${i}`, readyAt: i })
      yield* q.forget("j1")
      // Prefers the highest number, but sees only the 3 oldest still queued: j0, j2, j3.
      const prefer = (name: string) => Number(name.slice(1))
      expect((yield* q.pollAmong(3, prefer))?.name).toBe("j3")
      expect((yield* q.pollAmong(1, prefer))?.name).toBe("j0")
      const rest: Array<string> = []
      for (let c = yield* q.poll; c !== undefined; c = yield* q.poll) rest.push(c.name)
      expect(rest).toEqual(["j2", "j4", "j5", "j6", "j7", "j8", "j9"])
      expect(yield* q.pollAmong(3, prefer)).toBeUndefined()
    }))

  it.effect("offers of a queued name are deduplicated", () =>
    Effect.gen(function*() {
      const q = yield* makePending
      yield* q.offer({ name: "x", readyAt: 1 })
      yield* q.offer({ name: "x", readyAt: 2 })
      expect(yield* q.size).toBe(1)
      expect((yield* q.poll)?.name).toBe("x")
      expect(yield* q.poll).toBeUndefined()
    }))

  it.effect("names gone from the spool are forgotten; a name may come back", () =>
    Effect.gen(function*() {
      const q = yield* makePending
      for (let i = 0; i < 3000; i++) yield* q.offer({ name: `j${i}`, readyAt: i })
      yield* q.retain(new Set(["j5", "j2999"]))
      expect(yield* q.size).toBe(2)
      yield* q.offer({ name: "j7", readyAt: 7 })
      const order: Array<string> = []
      for (let c = yield* q.poll; c !== undefined; c = yield* q.poll) order.push(c.name)
      expect(order).toEqual(["j5", "j7", "j2999"])
    }))

  it.effect("whenNonEmpty waits for an offer and takes nothing", () =>
    Effect.gen(function*() {
      const q = yield* makePending
      const waiter = yield* Effect.fork(q.whenNonEmpty)
      yield* Effect.yieldNow()
      expect(waiter.unsafePoll()).toBeNull()
      yield* q.offer({ name: "late", readyAt: 1 })
      yield* Fiber.join(waiter)
      expect((yield* q.poll)?.name).toBe("late")
    }))
})
