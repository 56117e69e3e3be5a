import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { type Accepts, makePending, type Pending } from "../../src/spool/Pending.js"

const ALICE = 1001
const BOB = 1002

/** Everything `q.poll(accepts)` hands out, in order, until it hands out nothing. */
const drain = (q: Pending, accepts?: Accepts) =>
  Effect.gen(function*() {
    const order: Array<string> = []
    for (let c = yield* q.poll(accepts); c !== undefined; c = yield* q.poll(accepts)) order.push(c.name)
    return order
  })

describe("pending queue", () => {
  it.effect("hands out the oldest ready file first, arrival order breaking ties", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      for (const [name, readyAt] of [["d", 5], ["b", 2], ["a", 1], ["c", 2], ["e", 9]] as const) {
        yield* q.offer({ name, readyAt, uid: ALICE })
      }
      expect(yield* drain(q)).toEqual(["a", "b", "c", "d", "e"])
    }))

  it.effect("with turns (--max-jobs-per-user), owners are served in turn, each its oldest first; without, oldest first whoever owns it", () =>
    Effect.gen(function*() {
      const offers = (q: Pending) =>
        Effect.gen(function*() {
          // Alice's four are all older than Bob's two (think: files pmjq will
          // refuse, which end the moment they are claimed and never fill her cap).
          for (let i = 0; i < 4; i++) yield* q.offer({ name: `a${i}`, readyAt: i, uid: ALICE })
          for (let i = 0; i < 2; i++) yield* q.offer({ name: `b${i}`, readyAt: 10 + i, uid: BOB })
        })
      const fair = yield* makePending({ turns: true })
      yield* offers(fair)
      expect(yield* drain(fair)).toEqual(["a0", "b0", "a1", "b1", "a2", "a3"])
      const plain = yield* makePending()
      yield* offers(plain)
      expect(yield* drain(plain)).toEqual(["a0", "a1", "a2", "a3", "b0", "b1"])
      // A turn is taken by pollAmong too (nodes with peers).
      const among = yield* makePending({ turns: true })
      yield* offers(among)
      const picks: Array<string | undefined> = []
      for (let i = 0; i < 3; i++) picks.push((yield* among.pollAmong(2, () => 0))?.name)
      expect(picks).toEqual(["a0", "b0", "a1"])
    }))

  it.effect("pollAmong takes the preferred one among the oldest few; the rest keep their order", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      for (let i = 0; i < 10; i++) yield* q.offer({ name: `j${i}`, readyAt: i, uid: ALICE })
      yield* q.forget("j1")
      // Prefers the highest number, but sees only the 3 oldest still queued: j0, j2, j3.
      const prefer = (name: string) => Number(name.slice(1))
      expect((yield* q.pollAmong(3, prefer))?.name).toBe("j3")
      expect((yield* q.pollAmong(1, prefer))?.name).toBe("j0")
      expect(yield* drain(q)).toEqual(["j2", "j4", "j5", "j6", "j7", "j8", "j9"])
      expect(yield* q.pollAmong(3, prefer)).toBeUndefined()
    }))

  it.effect("offers of a queued name are deduplicated", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      yield* q.offer({ name: "x", readyAt: 1, uid: ALICE })
      yield* q.offer({ name: "x", readyAt: 2, uid: ALICE })
      expect(yield* q.size).toBe(1)
      expect((yield* q.poll())?.name).toBe("x")
      expect(yield* q.poll()).toBeUndefined()
    }))

  it.effect("names gone from the spool are forgotten; a name may come back", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      for (let i = 0; i < 3000; i++) yield* q.offer({ name: `j${i}`, readyAt: i, uid: ALICE })
      yield* q.retain(new Set(["j5", "j2999"]))
      expect(yield* q.size).toBe(2)
      yield* q.offer({ name: "j7", readyAt: 7, uid: ALICE })
      expect(yield* drain(q)).toEqual(["j5", "j7", "j2999"])
    }))

  it.effect("offerAll queues many in one go, as offer would: deduplicated, oldest first, and wakes a waiter", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      yield* q.offer({ name: "b", readyAt: 2, uid: ALICE })
      const waiter = yield* Effect.fork(q.whenNonEmpty)
      yield* q.offerAll([{ name: "c", readyAt: 3, uid: ALICE }, { name: "b", readyAt: 9, uid: ALICE }, { name: "a", readyAt: 1, uid: ALICE }])
      yield* Fiber.join(waiter)
      expect(yield* q.size).toBe(3)
      expect(yield* drain(q)).toEqual(["a", "b", "c"])
    }))

  it.effect("whenNonEmpty waits for an offer and takes nothing", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      const waiter = yield* Effect.fork(q.whenNonEmpty)
      yield* Effect.yieldNow()
      expect(waiter.unsafePoll()).toBeNull()
      yield* q.offer({ name: "late", readyAt: 1, uid: ALICE })
      yield* Fiber.join(waiter)
      expect((yield* q.poll())?.name).toBe("late")
    }))

  it.effect("per owner: oldest first within each owner, and across owners the oldest top an owner accepts", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      for (const [name, readyAt, uid] of [["a3", 3, ALICE], ["b4", 4, BOB], ["a1", 1, ALICE], ["b2", 2, BOB], ["a5", 5, ALICE]] as const) {
        yield* q.offer({ name, readyAt, uid })
      }
      expect(yield* drain(q, (owner) => owner === BOB)).toEqual(["b2", "b4"])
      expect(yield* drain(q)).toEqual(["a1", "a3", "a5"])
      for (const [name, readyAt, uid] of [["a3", 3, ALICE], ["b4", 4, BOB], ["a1", 1, ALICE], ["b2", 2, BOB]] as const) {
        yield* q.offer({ name, readyAt, uid })
      }
      const taken = yield* q.poll()
      expect(taken).toEqual({ name: "a1", readyAt: 1, uid: ALICE })
      expect(yield* drain(q)).toEqual(["b2", "a3", "b4"])
    }))

  it.effect("one owner's 10,000 older jobs held back: another's one job is found by asking once per owner", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      for (let i = 0; i < 10_000; i++) yield* q.offer({ name: `a${i}`, readyAt: i, uid: ALICE })
      yield* q.offer({ name: "b", readyAt: 10_000, uid: BOB })
      const asked: Array<[number, boolean]> = []
      const notAlice: Accepts = (owner, othersWaiting) => {
        asked.push([owner, othersWaiting])
        return owner !== ALICE
      }
      expect((yield* q.poll(notAlice))?.name).toBe("b")
      expect(asked.sort()).toEqual([[ALICE, true], [BOB, true]])
      // Nothing else may start, and nothing was lost or reordered.
      expect(yield* q.poll(notAlice)).toBeUndefined()
      expect(yield* q.size).toBe(10_000)
      const order = yield* drain(q)
      expect(order).toHaveLength(10_000)
      expect(order.every((name, i) => name === `a${i}`)).toBe(true)
    }))

  it.effect("the predicate hears whether another owner is waiting; a lone owner is told none is", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      const asked: Array<[number, boolean]> = []
      const record: Accepts = (owner, othersWaiting) => {
        asked.push([owner, othersWaiting])
        return true
      }
      yield* q.offer({ name: "a", readyAt: 1, uid: ALICE })
      yield* q.offer({ name: "b", readyAt: 2, uid: BOB })
      yield* q.poll(record)
      expect(asked.sort()).toEqual([[ALICE, true], [BOB, true]])
      asked.length = 0
      yield* q.poll(record)
      expect(asked).toEqual([[BOB, false]])
    }))

  it.effect("pollAmong looks at the oldest few among accepted owners only", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      for (let i = 0; i < 10; i++) yield* q.offer({ name: `a${i}`, readyAt: i, uid: ALICE })
      for (let i = 0; i < 4; i++) yield* q.offer({ name: `b${i}`, readyAt: 20 + i, uid: BOB })
      const prefer = (name: string) => Number(name.slice(1))
      const onlyBob: Accepts = (owner) => owner === BOB
      // The 3 oldest of bob's: b0, b1, b2; the highest number wins.
      expect(yield* q.pollAmong(3, prefer, onlyBob)).toEqual({ name: "b2", readyAt: 22, uid: BOB })
      expect(yield* drain(q, onlyBob)).toEqual(["b0", "b1", "b3"])
      expect(yield* q.pollAmong(3, prefer, onlyBob)).toBeUndefined()
      expect((yield* drain(q)).join(" ")).toBe("a0 a1 a2 a3 a4 a5 a6 a7 a8 a9")
    }))

  it.effect("a name that leaves and comes back under another owner counts as the new owner's", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      yield* q.offer({ name: "x", readyAt: 1, uid: ALICE })
      yield* q.forget("x")
      yield* q.offer({ name: "x", readyAt: 5, uid: BOB })
      const asked: Array<[number, boolean]> = []
      const onlyAlice: Accepts = (owner, othersWaiting) => {
        asked.push([owner, othersWaiting])
        return owner === ALICE
      }
      expect(yield* q.poll(onlyAlice)).toBeUndefined()
      expect(asked).toEqual([[BOB, false]])
      expect(yield* q.poll()).toEqual({ name: "x", readyAt: 5, uid: BOB })
      expect(yield* q.size).toBe(0)
    }))
})
