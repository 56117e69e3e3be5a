/** `pmjq status`'s view of a real spool folder, and why each queued job waits (src/spool/view.ts). */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, TestClock } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { besideClaim, endedFile, heartbeatFile, heldName, pausedFile, runningDir, stateDir } from "../../src/spool/layout.js"
import { render, watchEvery } from "../../src/cli/status.js"
import { type NodeLimits, viewSpool, type Waiting, whyWaiting } from "../../src/spool/view.js"
import { type Calls, Syscalls } from "../../src/filesystem/syscalls.js"
import { makeMemoryFs } from "../memoryfs.js"

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

describe("why a queued job waits: a pause", () => {
  const limits = (maxJobs: number) => ({ maxJobs, maxJobsPerUser: null, cpuLimit: null, loadEstimate: 0 })
  it("said only when nothing else holds the job on a node; the job is then that node's, for the jobs behind", () => {
    const paused = node({ node: "n1", limits: limits(1), paused: "the spool, by root at 2026-12-07T10:00:00.000Z (upgrade)" })
    expect(whyWaiting([job(0), job(0)], [paused])).toEqual([
      { reason: "paused", detail: "paused: the spool, by root at 2026-12-07T10:00:00.000Z (upgrade)" },
      { reason: "slots", detail: "slots: -j 1 on n1, 0 running, 1 ahead" }
    ])
    // A full node is full, paused or not; another node that can start it does.
    expect(reasons([job(0)], [{ ...paused, running: 1 }])).toEqual(["slots"])
    expect(reasons([job(0)], [paused, node({ node: "n2" })])).toEqual(["next"])
  })
})

/**
 * The view of a spool on the in-memory filesystem (test/memoryfs.ts): pmjq is
 * root; n1 (-j 2) runs build-1; broke ended failed. SECRET's head cannot be
 * read, as another user's 0700 file cannot by a status not run as root.
 */
const spoolScene = () => {
  let t = Date.now() - 60_000
  const m = makeMemoryFs({ uid: 0, gid: 0, now: () => t })
  const spool = "/srv/spool"
  m.mkdirs(spool, 0o1777)
  m.mkdirs(path.join(stateDir(spool), "nodes"), 0o755)
  m.mkdirs(path.join(stateDir(spool), "ended", "4242"), 0o755)
  m.mkdirs(path.join(stateDir(spool), "paused"), 0o755)
  m.mkdirs(runningDir(spool, "n1"), 0o755)
  m.write(heartbeatFile(spool, "n1"), JSON.stringify({
    node: "n1", host: "elsewhere", pid: 4100, helpers: [], beatAt: new Date().toISOString(), leaseMs: 3_600_000,
    maxJobs: 2, maxJobsPerUser: null, cpuLimit: null, loadEstimate: 0, runAsOwner: true
  }))
  m.write(path.join(runningDir(spool, "n1"), "build-1"), "#!/bin/sh\nmake\n", 0o755, { uid: 4242 })
  m.write(endedFile(spool, 4242, "broke"), JSON.stringify({ name: "broke", uid: 4242, outcome: "failed", exitCode: 2, endedAt: new Date().toISOString(), node: "n1" }))
  // Oldest first, a second apart.
  const job = (file: string, lines: string, uid = 4242, mode = 0o755) => {
    t += 1000
    m.write(path.join(spool, file), `#!/bin/sh\n${lines}\necho hi\n`, mode, { uid })
  }
  const secret = (calls: Calls): Calls => ({
    ...calls,
    head: (file, max, wanted) => (path.basename(file) === "secret" ? calls.head(file, max, () => false) : calls.head(file, max, wanted))
  })
  const look = (calls: Calls = m.calls) => viewSpool(spool).pipe(Effect.provide(Layer.succeed(Syscalls, secret(calls))))
  return { m, spool, job, look }
}

const byName = (view: { readonly queued: ReadonlyArray<{ readonly name: string }> }) => Object.fromEntries(view.queued.map(({ name, ...rest }) => [name, rest]))

describe("viewSpool: what a job's #PMJQ lines say", () => {
  it.effect("held (pmjq hold, #PMJQ --hold), after a running job, a failed dependency, a priority, refused lines, unreadable ones", () =>
    Effect.gen(function*() {
      const { job, look, spool } = spoolScene()
      job("plain", "")
      job("after-build", "#PMJQ --after=build-1")
      job("self-held", "#PMJQ --hold --after=build-1")
      job(heldName("parked"), "#PMJQ --priority=-5")
      job("urgent", "#PMJQ --priority=10", 0)
      job("doomed", "#PMJQ --after-any=build-1 --after=broke")
      job("bad", "#PMJQ --frobnicate")
      job("secret", "#PMJQ --hold", 4242, 0o700)
      job("capped", "#PMJQ --priority=5")
      const view = yield* look()
      expect(view.queued.map((q) => q.name)).toEqual(["plain", "after-build", "self-held", "parked", "urgent", "doomed", "bad", "secret", "capped"])
      const plain = { held: false, after: [], afterAny: [], priority: 0 }
      expect(byName(view)).toEqual({
        // urgent (10) is walked first, and takes n1's one free slot.
        plain: { ...plain, readyAt: expect.any(String), uid: 4242, user: "4242", reason: "slots", detail: "slots: -j 2 on n1, 1 running, 1 ahead" },
        "after-build": { ...plain, readyAt: expect.any(String), uid: 4242, user: "4242", reason: "after", detail: "after build-1 (running)", after: ["build-1"] },
        "self-held": {
          readyAt: expect.any(String), uid: 4242, user: "4242", reason: "held", detail: "held by its #PMJQ --hold: pmjq release to start it",
          held: true, after: ["build-1"], afterAny: [], priority: 0
        },
        parked: { ...plain, readyAt: expect.any(String), uid: 4242, user: "4242", reason: "held", detail: "held by pmjq hold: pmjq release to start it", held: true, priority: -5 },
        urgent: { ...plain, readyAt: expect.any(String), uid: 0, user: "0", reason: "next", detail: "next: n1 can start it", priority: 10 },
        doomed: {
          ...plain, readyAt: expect.any(String), uid: 4242, user: "4242", reason: "after", detail: "dependency failed: broke ended failed; it ends unrun once claimed",
          after: ["broke"], afterAny: ["build-1"]
        },
        bad: {
          ...plain, readyAt: expect.any(String), uid: 4242, user: "4242", reason: "refused",
          detail: "refused: #PMJQ line 2: unknown directive --frobnicate; rejected when claimed, never run, unless the file changes"
        },
        // Another user's file this caller cannot read: its --hold is not seen, and not guessed at.
        secret: {
          readyAt: expect.any(String), uid: 4242, user: "4242", reason: "unknown", held: null, after: null, afterAny: null, priority: null,
          detail: "unknown: its #PMJQ lines cannot be read (its owner's or root's pmjq status can); if it has none, slots: -j 2 on n1, 1 running, 1 ahead"
        },
        // Only root (or pmjq's own user) may raise a priority: 5 counts as 0.
        capped: { ...plain, readyAt: expect.any(String), uid: 4242, user: "4242", reason: "slots", detail: "slots: -j 2 on n1, 1 running, 1 ahead" }
      })
      expect(view.paused).toEqual({ spool: null, nodes: {} })
      expect(view.untrusted).toBeNull()

      // The table: the held counted apart, and a PRIO column since a job shown has a priority.
      const text = render(view)
      expect(text).toMatch(/^queued: 9 \(1 refused, 2 held\), oldest \S+ s \(plain\)$/m)
      expect(text).toMatch(/^\s+NAME\s+USER\s+WAITING\s+PRIO\s+REASON$/m)
      expect(text).toMatch(/^\s+parked\s+4242\s+\d+ s\s+-5\s+held by pmjq hold: pmjq release to start it$/m)
      expect(text).toMatch(/^\s+urgent\s+0\s+\d+ s\s+10\s+next: n1 can start it$/m)
      expect(spool).toBe("/srv/spool")
    }))

  it.effect("no PRIO column when no job shown has a priority; a dependency on a queued or held job, or on none yet", () =>
    Effect.gen(function*() {
      const { job, look } = spoolScene()
      job("first", "")
      job(heldName("second"), "")
      job("third", "#PMJQ --after=first,second")
      job("fourth", "#PMJQ --after=second")
      job("fifth", "#PMJQ --after-any=nobody-yet")
      const view = yield* look()
      expect(Object.fromEntries(view.queued.map((q) => [q.name, q.detail]))).toEqual({
        first: "next: n1 can start it",
        second: "held by pmjq hold: pmjq release to start it",
        third: "after first (queued)",
        fourth: "after second (held)",
        fifth: "after nobody-yet (no such job yet)"
      })
      expect(render(view)).toMatch(/^\s+NAME\s+USER\s+WAITING\s+REASON$/m)
    }))

  it.effect("a dependency loop is doomed; a symlink named as held is no held job, and is never followed", () =>
    Effect.gen(function*() {
      const { job, look, m, spool } = spoolScene()
      job("a", "#PMJQ --after=b")
      job("b", "#PMJQ --after=a")
      m.mkdirs("/etc")
      m.write("/etc/secret-job", "#!/bin/sh\n#PMJQ --priority=-7\n", 0o755)
      m.symlink("/etc/secret-job", path.join(spool, heldName("link")))
      const view = yield* look()
      expect(view.queued.map((q) => [q.name, q.reason, q.detail])).toEqual([
        ["a", "after", "dependency loop: a → b → a; it ends unrun once claimed"],
        ["b", "after", "dependency loop: a → b → a; it ends unrun once claimed"]
      ])
    }))

  it.effect("a paused spool, then a paused node: the job only the pause holds is paused, the one behind waits for the slot", () =>
    Effect.gen(function*() {
      const { job, look, m, spool } = spoolScene()
      const at = "2026-12-07T10:00:00.000Z"
      m.write(pausedFile(spool, null), JSON.stringify({ by: "root", at, reason: "disk swap" }))
      job("one", "")
      job("two", "")
      let view = yield* look()
      expect(view.paused).toEqual({ spool: { by: "root", at, reason: "disk swap" }, nodes: {} })
      expect(view.queued.map((q) => [q.name, q.reason, q.detail])).toEqual([
        ["one", "paused", `paused: the spool, by root at ${at} (disk swap)`],
        ["two", "slots", "slots: -j 2 on n1, 1 running, 1 ahead"]
      ])
      expect(render(view)).toMatch(new RegExp(`^paused: the spool, by root at ${at} \\(disk swap\\)$`, "m"))

      yield* Effect.promise(() => m.calls.unlink(pausedFile(spool, null)))
      m.write(pausedFile(spool, "n1"), JSON.stringify({ by: "alice", at, reason: null }))
      view = yield* look()
      expect(view.paused).toEqual({ spool: null, nodes: { n1: { by: "alice", at, reason: null } } })
      expect(view.queued[0]!.detail).toBe(`paused: node n1, by alice at ${at}`)
      expect(render(view)).toMatch(new RegExp(`^paused: node n1, by alice at ${at}$`, "m"))
      // A pause pmjq did not write (not root's, not pmjq's) is none.
      yield* Effect.promise(() => m.calls.unlink(pausedFile(spool, "n1")))
      m.write(pausedFile(spool, "n1"), JSON.stringify({ by: "mallory", at, reason: null }), 0o644, { uid: 4242 })
      view = yield* look()
      expect(view.paused).toEqual({ spool: null, nodes: {} })
      expect(view.queued[0]!.reason).toBe("next")
    }))
})
