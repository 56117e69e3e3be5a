/** `pmjq status`'s view of a real spool folder, and why each queued job waits (src/spool/view.ts). */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { besideClaim, runningDir } from "../../src/spool/layout.js"
import { watchEvery } from "../../src/cli/status.js"
import { type NodeLimits, viewSpool, type Waiting, whyWaiting } from "../../src/spool/view.js"
import { Syscalls } from "../../src/syscalls.js"

describe("viewSpool", () => {
  it.effect("a claimed job is ended once its record is beside it, also under a name too long for .NAME.json", () =>
    Effect.gen(function*() {
      const spool = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-view-"))
      const folder = runningDir(spool, "n1")
      fs.mkdirSync(folder, { recursive: true, mode: 0o755 })
      const long = "l".repeat(250)
      for (const name of ["short-ended", "short-running", long, "x".repeat(250)]) {
        fs.writeFileSync(path.join(folder, name), "#!/bin/sh\n", { mode: 0o755 })
      }
      // Where the spawner writes a record: for a long name, cut and hashed.
      for (const name of ["short-ended", long]) fs.writeFileSync(besideClaim(path.join(folder, name), ".json"), "{}\n")
      const view = yield* viewSpool(spool).pipe(Effect.provide(Syscalls.Direct))
      const states = Object.fromEntries(view.running.map((r) => [r.name, r.state]))
      expect(states).toEqual({ "short-ended": "ended", "short-running": "running", [long]: "ended", ["x".repeat(250)]: "running" })
      fs.rmSync(spool, { recursive: true })
    }))
})

const node = (over: Partial<NodeLimits> & { node: string }): NodeLimits => ({
  taking: true,
  limits: { maxJobs: 4, maxJobsPerUser: null, cpuLimit: null, loadEstimate: 0 },
  running: 0,
  byUser: new Map(),
  ...over
})
const job = (uid: number, refusal: string | null = null): Waiting => ({ uid, refusal })
const reasons = (queue: ReadonlyArray<Waiting>, nodes: ReadonlyArray<NodeLimits>) => whyWaiting(queue, nodes).map((h) => h.reason)

describe("why a queued job waits", () => {
  it("slots: -j full; the jobs a free slot goes to are next, the ones behind them wait for slots", () => {
    const full = node({ node: "n1", limits: { maxJobs: 1, maxJobsPerUser: null, cpuLimit: null, loadEstimate: 0 }, running: 1, byUser: new Map([[0, 1]]) })
    expect(whyWaiting([job(0)], [full])).toEqual([{ reason: "slots", detail: "slots: -j 1 on n1, 1 running" }])
    const twoFree = node({ node: "n1", running: 2 })
    expect(reasons([job(0), job(0), job(0)], [twoFree])).toEqual(["next", "next", "slots"])
    expect(whyWaiting([job(0), job(0), job(0)], [twoFree])[2]!.detail).toBe("slots: -j 4 on n1, 2 running, 2 ahead")
    // -j 0: no cap.
    expect(reasons([job(0), job(0)], [node({ node: "n1", limits: { maxJobs: 0, maxJobsPerUser: null, cpuLimit: null, loadEstimate: 0 }, running: 500 })])).toEqual(["next", "next"])
  })

  it("load: the estimate at or above -C holds it; each job started ahead adds 1 to it, as the gate counts", () => {
    const gated = (loadEstimate: number) => node({ node: "n1", limits: { maxJobs: 8, maxJobsPerUser: null, cpuLimit: 2, loadEstimate } })
    expect(whyWaiting([job(0)], [gated(2)])).toEqual([{ reason: "load", detail: "load: 2 on n1, -C 2" }])
    expect(reasons([job(0), job(0), job(0)], [gated(0.5)])).toEqual(["next", "next", "load"])
    expect(whyWaiting([job(0)], [node({ node: "n1", limits: { maxJobs: 8, maxJobsPerUser: null, cpuLimit: 0.01, loadEstimate: 0.337 } })])[0]!.detail)
      .toBe("load: 0.34 on n1, -C 0.01")
    // A slot is waited for before the gate, as the dispatcher does.
    expect(reasons([job(0)], [node({ node: "n1", limits: { maxJobs: 1, maxJobsPerUser: null, cpuLimit: 1, loadEstimate: 5 }, running: 1 })])).toEqual(["slots"])
  })

  it("user share: an owner at --max-jobs-per-user waits while another user's job waits, and may use every slot alone", () => {
    const shared = node({ node: "n1", limits: { maxJobs: 4, maxJobsPerUser: 1, cpuLimit: null, loadEstimate: 0 }, running: 1, byUser: new Map([[1000, 1]]) })
    const names = (uid: number) => (uid === 1000 ? "alice" : String(uid))
    expect(whyWaiting([job(1000), job(1001)], [shared], names)).toEqual([
      { reason: "user-share", detail: "user share: alice runs 1 on n1, --max-jobs-per-user 1, others wait" },
      { reason: "next", detail: "next: n1 can start it" }
    ])
    // Alone in the queue: work-conserving.
    expect(reasons([job(1000), job(1000)], [shared])).toEqual(["next", "next"])
    // Bob's job started ahead: alice's next one now waits for him to be served, his second for the share.
    expect(reasons([job(1001), job(1000), job(1001)], [node({ ...shared, byUser: new Map([[1000, 1]]) })])).toEqual(["next", "user-share", "user-share"])
  })

  it("refused: said first, whatever the nodes; it holds no slot from the jobs behind it", () => {
    const one = node({ node: "n1", limits: { maxJobs: 1, maxJobsPerUser: null, cpuLimit: null, loadEstimate: 0 } })
    expect(whyWaiting([job(0, "set-uid or set-gid"), job(0)], [one])).toEqual([
      { reason: "refused", detail: "refused: set-uid or set-gid" },
      { reason: "next", detail: "next: n1 can start it" }
    ])
    expect(reasons([job(0, "no execute bit")], [])).toEqual(["refused"])
  })

  it("no node takes jobs: none alive, or only stale and left ones", () => {
    expect(reasons([job(0)], [])).toEqual(["no-node"])
    expect(reasons([job(0)], [node({ node: "gone", taking: false })])).toEqual(["no-node"])
  })

  it("several nodes: next when any can start it; their reasons, in node order, when none can; unknown when one does not say", () => {
    const slots = node({ node: "n1", limits: { maxJobs: 1, maxJobsPerUser: null, cpuLimit: null, loadEstimate: 0 }, running: 1 })
    const load = node({ node: "n2", limits: { maxJobs: 4, maxJobsPerUser: null, cpuLimit: 1, loadEstimate: 3 } })
    const free = node({ node: "n3" })
    expect(reasons([job(0)], [slots, load, free])).toEqual(["next"])
    expect(whyWaiting([job(0)], [slots, load])).toEqual([{ reason: "slots,load", detail: "slots: -j 1 on n1, 1 running; load: 3 on n2, -C 1" }])
    expect(reasons([job(0)], [slots, { ...slots, node: "n9" }])).toEqual(["slots"])
    // An older pmjq's heartbeat says no limits: what is known is said, the rest is not guessed.
    expect(whyWaiting([job(0)], [slots, node({ node: "old", limits: null })])).toEqual([
      { reason: "unknown", detail: "slots: -j 1 on n1, 1 running; old does not say (an older pmjq)" }
    ])
    expect(reasons([job(0)], [node({ node: "old", limits: null }), free])).toEqual(["next"])
  })
})

describe("pmjq status --watch", () => {
  it.effect("a frame at once, then one a second on the schedule, until interrupted", () =>
    Effect.gen(function*() {
      let frames = 0
      const fiber = yield* Effect.fork(watchEvery(Effect.sync(() => void frames++), "1 second"))
      yield* TestClock.adjust("0 millis")
      expect(frames).toBe(1)
      yield* TestClock.adjust("999 millis")
      expect(frames).toBe(1)
      yield* TestClock.adjust("1 millis")
      expect(frames).toBe(2)
      yield* TestClock.adjust("3 seconds")
      expect(frames).toBe(5)
      yield* Fiber.interrupt(fiber)
      yield* TestClock.adjust("10 seconds")
      expect(frames).toBe(5)
    }))
})
