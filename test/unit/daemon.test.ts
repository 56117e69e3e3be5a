import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Option, Ref, TestClock } from "effect"
import { daemon, type DaemonSettings } from "../../src/daemon.js"
import { Gate } from "../../src/gate/Gate.js"
import { ProcessRunner } from "../../src/job/Runner.js"
import { Archive } from "../../src/job/Archive.js"
import { RefusalsKept } from "../../src/job/RefusalsKept.js"
import { Spool } from "../../src/spool/Spool.js"
import { HookRunner } from "../../src/hooks/hooks.js"
import { Users } from "../../src/owners/Users.js"
import { Nodes } from "../../src/spool/Nodes.js"
import { busy, daemonSettings, exits, fakeHooks, fakeLoad, fakeNodes, fakeRefusals, fakeRequests, fakeRunner, fakeSpool, fakeUsers, makeFakeArchive } from "../fakes.js"
import { Requests } from "../../src/spool/Requests.js"
import { makeQuiet } from "../quiet.js"

// Tests in a file run one at a time: one watch serves them all.
const quiet = makeQuiet()

const setupWith = (archiveTakes: Duration.DurationInput, archiveFailures = 0, sweepOf?: (dir: string) => Effect.Effect<number>) => Effect.gen(function*() {
  const spool = yield* fakeSpool
  const runner = yield* fakeRunner
  const archive = yield* makeFakeArchive(archiveTakes, archiveFailures, sweepOf)
  const load = yield* fakeLoad
  const nodes = yield* fakeNodes
  const hooks = yield* fakeHooks
  const requests = yield* fakeRequests(spool.inFolder)
  const refusals = yield* fakeRefusals
  const layer = (cpuLimit: Option.Option<number> = Option.none()) =>
    Layer.mergeAll(
      Layer.succeed(Spool, spool.service),
      Layer.succeed(ProcessRunner, runner.service),
      Layer.succeed(Archive, archive.service),
      Layer.succeed(Nodes, nodes.service),
      Layer.succeed(HookRunner, hooks.service),
      Layer.succeed(Users, fakeUsers),
      Layer.succeed(Requests, requests.service),
      Layer.succeed(RefusalsKept, refusals.service),
      Gate.layer({ cpuLimit, sampleEvery: "1 second" }),
      load.layer
    ).pipe(Layer.provide(load.layer))
  const start = (settings: DaemonSettings, cpuLimit?: number) =>
    daemon(settings).pipe(Effect.scoped, Effect.provide(layer(Option.fromNullable(cpuLimit))), quiet.watch, Effect.fork)
  return { spool, runner, archive, load, nodes, hooks, requests, start }
})
const setup = setupWith(0)

/** Lets the daemon's fibers run until every one of them waits. */
const settle = quiet.settle

/** Moves the test clock on, then lets what it woke up run. */
const advance = (duration: Duration.DurationInput) => Effect.zipRight(TestClock.adjust(duration), settle)

/** Stops the daemon, waiting out the grace of the jobs still running on the test clock. */
const stop = (fiber: Fiber.RuntimeFiber<unknown, unknown>) =>
  Effect.gen(function*() {
    const stopping = yield* Effect.fork(Fiber.interrupt(fiber))
    yield* settle
    yield* TestClock.adjust("31 seconds")
    yield* Fiber.join(stopping)
  })

/** Jobs a and b, each taking `each`, with -j 1 and a limit command due after 10 s. */
const twoJobsOneSlot = (each: Duration.DurationInput) =>
  Effect.gen(function*() {
    const t = yield* setup
    for (const [name, at] of [["a", 1], ["b", 2]] as const) {
      t.runner.plan(name, exits(0, each))
      yield* t.spool.submit(name, at)
    }
    const fiber = yield* t.start(daemonSettings({ maxJobs: 1, limitCmd: Option.some("boot another"), limitAfter: "10 seconds" }))
    yield* settle
    return { t, fiber }
  })

describe("idle and limit commands", () => {
  it.effect("--idle-cmd runs once the queue has been idle for --idle-after, once per idle spell", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("work", exits(0, "5 seconds"))
      const fiber = yield* t.start(daemonSettings({ idleCmd: Option.some("shutdown now"), idleAfter: "30 seconds" }))
      yield* settle
      yield* advance("29 seconds")
      expect(t.hooks.runs).toEqual([])
      yield* advance("1 second")
      yield* advance("1 second")
      expect(t.hooks.runs).toMatchObject([{ hook: "idle", command: "shutdown now", env: { PMJQ_QUEUED: "0", PMJQ_RUNNING: "0", PMJQ_NODE: "node" } }])
      // Still idle: not again.
      yield* advance("2 minutes")
      expect(t.hooks.runs).toHaveLength(1)
      // Busy for a while, then idle again: once more, a full --idle-after later.
      yield* t.spool.submit("work", 1)
      yield* settle
      yield* advance("5 seconds")
      yield* advance("29 seconds")
      expect(t.hooks.runs).toHaveLength(1)
      yield* advance("2 seconds")
      expect(t.hooks.runs).toHaveLength(2)
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("--idle-cmd fires again after a busy spell shorter than the look between two samples", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("blip", exits(0, "200 millis"))
      const fiber = yield* t.start(daemonSettings({ idleCmd: Option.some("shutdown now"), idleAfter: "30 seconds" }))
      yield* settle
      yield* advance("31 seconds")
      expect(t.hooks.runs).toHaveLength(1)
      // A job that starts and ends between two looks: the idle spell is over all the same.
      yield* advance("500 millis")
      yield* t.spool.submit("blip", 1)
      yield* settle
      yield* advance("200 millis")
      expect(t.runner.spawns).toEqual(["blip"])
      expect(yield* Ref.get(t.runner.live)).toBe(0)
      yield* advance("31 seconds")
      expect(t.hooks.runs).toHaveLength(2)
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("--limit-cmd runs once jobs have been held back by -j for --limit-after, with PMJQ_LIMIT", () =>
    Effect.gen(function*() {
      const { t, fiber } = yield* twoJobsOneSlot("1 hour")
      yield* advance("9 seconds")
      expect(t.hooks.runs).toEqual([])
      yield* advance("1 second")
      yield* advance("1 second")
      expect(t.hooks.runs).toMatchObject([{ hook: "limit", command: "boot another", env: { PMJQ_LIMIT: "max-jobs", PMJQ_QUEUED: "1" } }])
      yield* advance("2 minutes")
      expect(t.hooks.runs).toHaveLength(1)
      yield* Fiber.interrupt(fiber).pipe(Effect.fork)
      yield* advance("31 seconds")
    }))

  it.effect("--limit-cmd does not run when the limit lifts before --limit-after", () =>
    Effect.gen(function*() {
      const { t, fiber } = yield* twoJobsOneSlot("5 seconds")
      for (let i = 0; i < 30; i++) yield* advance("1 second")
      expect(t.spool.files.size).toBe(0)
      expect(t.hooks.runs).toEqual([])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("--limit-cmd says PMJQ_LIMIT=load when the CPU gate holds jobs back", () =>
    Effect.gen(function*() {
      const t = yield* setup
      yield* Ref.set(t.load.load, 8)
      yield* t.spool.submit("a", 1)
      const fiber = yield* t.start(daemonSettings({ limitCmd: Option.some("boot another"), limitAfter: "10 seconds" }), 2)
      yield* settle
      for (let i = 0; i < 12; i++) yield* advance("1 second")
      expect(t.runner.spawns).toEqual([])
      expect(t.hooks.runs).toMatchObject([{ hook: "limit", env: { PMJQ_LIMIT: "load", PMJQ_QUEUED: "1", PMJQ_RUNNING: "0" } }])
      yield* Fiber.interrupt(fiber)
    }))
})

describe("daemon", () => {
  it.effect("--timeout: a job running past it is stopped and recorded as timed-out, not before", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("slow", exits(0, "1 hour"))
      t.runner.plan("quick", exits(0, "9 seconds"))
      yield* t.spool.submit("slow", 1)
      yield* t.spool.submit("quick", 2)
      const fiber = yield* t.start(daemonSettings({ drain: true, timeout: Option.some(Duration.seconds(10)) }))
      yield* settle
      yield* advance("9 seconds")
      expect(t.archive.stored.map((s) => [s.record.name, s.record.outcome])).toEqual([["quick", "succeeded"]])
      expect(t.runner.terminated).toEqual([])
      yield* advance("1 second")
      yield* Fiber.join(fiber)
      expect(t.runner.terminated).toEqual(["slow"])
      expect(t.archive.stored.map((s) => [s.record.name, s.record.outcome])).toEqual([["quick", "succeeded"], ["slow", "timed-out"]])
      expect(t.archive.stored[1]!.record.reason).toBe("ran longer than --timeout 10s; its process group was stopped (SIGTERM)")
    }))

  it.effect("a job whose archival fails is kept, its outcome written first, and archived on a later try; never run again", () =>
    Effect.gen(function*() {
      const t = yield* setupWith(0, 3)
      yield* t.spool.submit("a", 1)
      const fiber = yield* t.start(daemonSettings({ drain: true }))
      yield* settle
      expect(t.archive.settled.map((r) => r.name)).toEqual(["a"])
      expect(t.archive.stored).toEqual([])
      // Retries at 1 s, 2 s, 4 s after each failure (exponential, at most a minute apart).
      yield* advance("1 second")
      yield* advance("2 seconds")
      expect(t.archive.stored).toEqual([])
      yield* advance("4 seconds")
      yield* Fiber.join(fiber)
      expect(t.archive.stored.map((s) => s.record.name)).toEqual(["a"])
      expect(t.runner.spawns).toEqual(["a"])
    }))

  it.effect("runs every queued job exactly once, oldest first, then drains", () =>
    Effect.gen(function*() {
      const t = yield* setup
      yield* t.spool.submit("c", 3)
      yield* t.spool.submit("a", 1)
      yield* t.spool.submit("b", 2)
      yield* t.spool.submit("notes.txt", 0, false)
      const fiber = yield* t.start(daemonSettings({ drain: true, maxJobs: 1 }))
      yield* Fiber.join(fiber)
      expect(t.runner.spawns).toEqual(["a", "b", "c"])
      expect(t.archive.stored.map((s) => s.record.name)).toEqual(["a", "b", "c"])
      expect(t.spool.files.has("notes.txt")).toBe(true)
    }))

  it.effect("a claim lost to another node is skipped, not run and not an error", () =>
    Effect.gen(function*() {
      const t = yield* setup
      for (const [name, at] of [["a", 1], ["b", 2], ["c", 3]] as const) yield* t.spool.submit(name, at)
      t.spool.stolen.add("b")
      yield* Fiber.join(yield* t.start(daemonSettings({ drain: true })))
      expect(t.runner.spawns.sort()).toEqual(["a", "c"])
      expect(t.archive.stored).toHaveLength(2)
    }))

  it.effect("after a lost race the next pick waits for a turn of the event loop, where the other nodes' claims are heard of", () =>
    Effect.gen(function*() {
      const t = yield* setup
      const names = Array.from({ length: 20 }, (_, i) => `j${String(i).padStart(2, "0")}`)
      for (const [i, name] of names.entries()) {
        t.runner.plan(name, exits(0, "1 second"))
        yield* t.spool.submit(name, i)
      }
      const fiber = yield* t.start(daemonSettings({ maxJobs: 1 }))
      yield* settle
      expect(t.runner.spawns).toEqual(["j00"])
      // Another node claims every other job just as j00 ends: this node's
      // queue is stale until its event loop turns.
      t.spool.takenElsewhere(names.slice(1))
      yield* advance("1 second")
      for (let turn = 0; turn < 5; turn++) {
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        yield* settle
      }
      // One race lost, not nineteen: the notifications emptied the queue first.
      expect(t.spool.lost).toEqual(["j01"])
      expect(t.runner.spawns).toEqual(["j00"])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("at start the archive, error and rejected dirs are swept of what a crash left, each once, holding up nothing", () =>
    Effect.gen(function*() {
      // The archive dir's sweep never ends (a hung mount): neither the other
      // dirs' sweeps nor the jobs wait for it.
      const t = yield* setupWith(0, 0, (dir) => (dir === "/archive" ? Effect.never : Effect.succeed(0)))
      yield* t.spool.submit("job", 1)
      const fiber = yield* t.start(daemonSettings({ errorDir: Option.some("/errors") }))
      yield* settle
      yield* advance("10 seconds")
      expect(t.archive.swept.sort()).toEqual(["/archive", "/errors", "/spool/.pmjq/rejected"])
      expect(t.runner.spawns).toEqual(["job"])
      expect(t.archive.stored.map((s) => s.record.name)).toEqual(["job"])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("a job submitted while the daemon runs is picked up from its notification", () =>
    Effect.gen(function*() {
      const t = yield* setup
      const fiber = yield* t.start(daemonSettings())
      yield* settle
      yield* t.spool.submit("late", 5)
      yield* settle
      expect(t.runner.spawns).toEqual(["late"])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("a file missed by notifications is found by the periodic rescan", () =>
    Effect.gen(function*() {
      const t = yield* setup
      const fiber = yield* t.start(daemonSettings({ poll: "2 seconds" }))
      yield* settle
      // Written by another machine: in the listing, but no notification.
      t.spool.files.set("remote", { readyAt: 9, executable: true })
      yield* settle
      expect(t.runner.spawns).toEqual([])
      yield* advance("2 seconds")
      expect(t.runner.spawns).toEqual(["remote"])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("with 100,000 queued, a notification costs one inspect and never a listing", () =>
    Effect.gen(function*() {
      const t = yield* setup
      for (let i = 0; i < 100_000; i++) t.spool.files.set(`q${i}`, { readyAt: i, executable: true })
      // -j 1 with a job that never ends: everything else stays queued.
      t.runner.plan("q0", exits(0, "1 hour"))
      const fiber = yield* t.start(daemonSettings({ maxJobs: 1 }))
      // The initial scan looks at all 100,000 files once, before dispatch starts.
      for (let i = 0; i < 1_000_000 && t.runner.spawns.length === 0; i++) yield* Effect.yieldNow()
      expect(t.runner.spawns).toEqual(["q0"])
      const before = { ...t.spool.calls }
      for (let i = 0; i < 100; i++) yield* t.spool.submit(`new${i}`, 200_000 + i)
      yield* settle
      expect(t.spool.calls.list).toBe(before.list)
      expect(t.spool.calls.inspect - before.inspect).toBe(100)
      // A periodic rescan lists the spool once and inspects only what is not queued yet.
      const beforeRescan = { ...t.spool.calls }
      yield* TestClock.adjust("2 seconds")
      for (let i = 0; i < 10_000 && t.spool.calls.list === beforeRescan.list; i++) yield* Effect.yieldNow()
      yield* settle
      expect(t.spool.calls.list).toBe(beforeRescan.list + 1)
      expect(t.spool.calls.inspect).toBe(beforeRescan.inspect)
      // Stopping waits out the running job's grace, on the test clock.
      const stopping = yield* Effect.fork(Fiber.interrupt(fiber))
      yield* settle
      yield* TestClock.adjust("31 seconds")
      yield* Fiber.join(stopping)
    }))

  it.effect("ETXTBSY is retried until the writer is done, and the job runs once", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("half-written", busy, busy, busy, exits(0))
      yield* t.spool.submit("half-written", 1)
      const fiber = yield* t.start(daemonSettings({ drain: true }))
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      expect(t.runner.spawns).toEqual(["half-written", "half-written", "half-written", "half-written"])
      expect(t.archive.stored.map((s) => s.record.outcome)).toEqual(["succeeded"])
    }))

  it.effect("a file that stays busy is handed back to the spool, never run", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("held-open", busy)
      yield* t.spool.submit("held-open", 1)
      const fiber = yield* t.start(daemonSettings())
      yield* settle
      yield* advance("61 seconds")
      expect(t.spool.released[0]).toBe("held-open")
      expect(t.archive.stored).toHaveLength(0)
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("--max-jobs caps how many run at once", () =>
    Effect.gen(function*() {
      const t = yield* setup
      for (let i = 0; i < 10; i++) {
        t.runner.plan(`j${i}`, exits(0, "10 seconds"))
        yield* t.spool.submit(`j${i}`, i)
      }
      const fiber = yield* t.start(daemonSettings({ drain: true, maxJobs: 3 }))
      yield* settle
      expect(yield* Ref.get(t.runner.live)).toBe(3)
      for (let i = 0; i < 4; i++) {
        yield* advance("10 seconds")
      }
      yield* Fiber.join(fiber)
      expect(yield* Ref.get(t.runner.peak)).toBe(3)
      expect(t.archive.stored).toHaveLength(10)
    }))

  it.effect("-j counts running processes: a slot is free when its process ends, not when it is archived", () =>
    Effect.gen(function*() {
      const t = yield* setupWith("10 seconds")
      yield* t.spool.submit("first", 1)
      yield* t.spool.submit("second", 2)
      const fiber = yield* t.start(daemonSettings({ maxJobs: 1, drain: true }))
      yield* settle
      // "first" has exited and is being archived; "second" already runs.
      expect(t.runner.spawns).toEqual(["first", "second"])
      expect(t.archive.stored).toHaveLength(0)
      yield* advance("10 seconds")
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(fiber)
      // Drain waited for both archivals.
      expect(t.archive.stored.map((s) => s.record.name).sort()).toEqual(["first", "second"])
    }))

  it.effect("failures go to the error dir, successes to the archive dir", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("ok", exits(0))
      t.runner.plan("bad", exits(3))
      t.runner.plan("broken", { _tag: "Unstartable", reason: "no such interpreter" })
      for (const [name, at] of [["ok", 1], ["bad", 2], ["broken", 3]] as const) yield* t.spool.submit(name, at)
      yield* Fiber.join(yield* t.start(daemonSettings({ drain: true, errorDir: Option.some("/errors") })))
      const byName = Object.fromEntries(t.archive.stored.map((s) => [s.record.name, s]))
      expect(byName["ok"]?.dir).toBe("/archive")
      expect(byName["bad"]?.dir).toBe("/errors")
      expect(byName["bad"]?.record).toMatchObject({ outcome: "failed", exitCode: 3, reason: "exited with status 3" })
      expect(byName["broken"]?.dir).toBe("/errors")
      expect(byName["broken"]?.record).toMatchObject({ outcome: "failed", exitCode: null, pid: null })
      expect(byName["broken"]?.record.reason).toContain("no such interpreter")
    }))

  it.effect("without archive dirs a job is discarded after its run", () =>
    Effect.gen(function*() {
      const t = yield* setup
      yield* t.spool.submit("once", 1)
      yield* Fiber.join(yield* t.start(daemonSettings({ drain: true, archiveDir: Option.none() })))
      expect(t.archive.discarded.map((r) => r.name)).toEqual(["once"])
      expect(t.archive.stored).toHaveLength(0)
    }))

  it.effect("on stop: no new claims, running jobs get their grace, late ones are terminated and archived", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("quick", exits(0, "5 seconds"))
      t.runner.plan("slow", exits(0, "1 hour"))
      t.runner.plan("waiting", exits(0))
      yield* t.spool.submit("quick", 1)
      yield* t.spool.submit("slow", 2)
      yield* t.spool.submit("waiting", 3)
      const fiber = yield* t.start(daemonSettings({ maxJobs: 2, grace: "30 seconds" }))
      yield* settle
      expect(t.runner.spawns).toEqual(["quick", "slow"])

      const stopping = yield* Effect.fork(Fiber.interrupt(fiber))
      yield* settle
      yield* advance("5 seconds")
      // quick ended within the grace; its slot must not start "waiting".
      expect(t.archive.stored.map((s) => [s.record.name, s.record.outcome])).toEqual([["quick", "succeeded"]])
      expect(t.runner.terminated).toEqual([])

      yield* TestClock.adjust("25 seconds")
      yield* Fiber.join(stopping)
      expect(t.runner.terminated).toEqual(["slow"])
      expect(t.archive.stored.map((s) => [s.record.name, s.record.outcome])).toEqual([
        ["quick", "succeeded"],
        ["slow", "interrupted"]
      ])
      expect(t.runner.spawns).not.toContain("waiting")
      expect(t.spool.files.has("waiting")).toBe(true)
    }))

  it.effect("a stop while a job's process is being started: it is not handed back to the queue (it runs), but stopped and archived as interrupted", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("starting", exits(0, "1 hour", { startsIn: "1 second" }))
      yield* t.spool.submit("starting", 1)
      // No grace: a stop interrupts the job's fiber at once, during the spawn.
      const fiber = yield* t.start(daemonSettings({ grace: "0 seconds", killAfter: "30 seconds" }))
      yield* settle
      expect(t.runner.spawns).toEqual(["starting"])
      const stopping = yield* Effect.fork(Fiber.interrupt(fiber))
      yield* settle
      // Its process starts once pmjq was already stopping.
      yield* advance("1 second")
      yield* TestClock.adjust("30 seconds")
      yield* Fiber.join(stopping)
      expect(t.spool.released).toEqual([])
      expect(t.spool.files.has("starting")).toBe(false)
      expect(t.runner.terminated).toEqual(["starting"])
      expect(t.archive.stored.map((s) => [s.record.name, s.record.outcome])).toEqual([["starting", "interrupted"]])
    }))

  it.effect("cut off from the spool (no heartbeat written for half the lease): its jobs killed at once, no grace, and it ends so", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("long", exits(0, "1 hour"))
      yield* t.spool.submit("long", 1)
      const fiber = yield* t.start(daemonSettings({ lease: "20 seconds", grace: "30 seconds" }))
      yield* settle
      expect(t.runner.spawns).toEqual(["long"])
      t.nodes.cut(true)
      // One beat missed (lease/4): a late write, not yet a node cut off.
      yield* advance("5 seconds")
      expect(fiber.unsafePoll()).toBeNull()
      expect(t.runner.killed).toEqual([])
      // Two (lease/2): its job killed, without waiting --grace, and it ends.
      yield* advance("5 seconds")
      expect(t.runner.killed).toEqual(["long"])
      expect(yield* Fiber.join(fiber)).toBe("cut-off")
      expect(t.archive.stored.map((s) => [s.record.name, s.record.outcome])).toEqual([["long", "interrupted"]])
    }))

  it.effect("-C is asked when a job arrives, not when the queue ran dry", () =>
    Effect.gen(function*() {
      const t = yield* setup
      const fiber = yield* t.start(daemonSettings(), 2)
      yield* settle
      // The gate was open while the queue was empty; then the machine got busy.
      yield* Ref.set(t.load.load, 5)
      yield* TestClock.adjust("2 minutes")
      yield* t.spool.submit("late", 1)
      yield* settle
      yield* advance("10 seconds")
      expect(t.runner.spawns).toEqual([])
      yield* Ref.set(t.load.load, 0)
      yield* advance("2 seconds")
      expect(t.runner.spawns).toEqual(["late"])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("-C holds launches while the load is at the limit and resumes when it drops", () =>
    Effect.gen(function*() {
      const t = yield* setup
      yield* Ref.set(t.load.load, 3)
      yield* t.spool.submit("a", 1)
      const fiber = yield* t.start(daemonSettings(), 2)
      yield* settle
      yield* advance("10 seconds")
      expect(t.runner.spawns).toEqual([])
      yield* Ref.set(t.load.load, 0.5)
      yield* advance("1 second")
      yield* advance(Duration.seconds(1))
      expect(t.runner.spawns).toEqual(["a"])
      yield* Fiber.interrupt(fiber)
    }))
})

describe("--max-jobs-per-user", () => {
  const ALICE = 1001
  const BOB = 1002
  const CAROL = 1003

  /** Submits NAME owned by UID, ready at READY, running for RUNS. */
  const job = (t: Effect.Effect.Success<typeof setup>, name: string, uid: number, ready: number, runs: Duration.DurationInput) => {
    t.runner.plan(name, exits(0, runs))
    return t.spool.submit(name, ready, true, uid)
  }

  it.effect("alice's 5 long jobs queued before bob's 1, -j 2, cap 1: bob's starts at once; alice never holds 2 while bob waits", () =>
    Effect.gen(function*() {
      const t = yield* setup
      // Submitted out of order: alice's still start oldest first.
      for (const i of [3, 0, 4, 1, 2]) yield* job(t, `a${i}`, ALICE, i, "10 seconds")
      yield* job(t, "b", BOB, 5, "10 seconds")
      const fiber = yield* t.start(daemonSettings({ drain: true, maxJobs: 2, maxJobsPerUser: Option.some(1) }))
      yield* settle
      expect(t.runner.spawns).toEqual(["a0", "b"])
      // Bob has nothing left queued: alice alone may use both slots.
      yield* advance("10 seconds")
      expect(t.runner.spawns).toEqual(["a0", "b", "a1", "a2"])
      yield* advance("10 seconds")
      yield* advance("10 seconds")
      yield* Fiber.join(fiber)
      expect(t.runner.spawns).toEqual(["a0", "b", "a1", "a2", "a3", "a4"])
      expect(yield* Ref.get(t.runner.peak)).toBe(2)
    }))

  it.effect("a lone user uses every slot; bob, arriving later, gets the first slot that frees, not alice's next job", () =>
    Effect.gen(function*() {
      const t = yield* setup
      yield* job(t, "a0", ALICE, 0, "10 seconds")
      for (let i = 1; i < 5; i++) yield* job(t, `a${i}`, ALICE, i, "1 hour")
      const fiber = yield* t.start(daemonSettings({ maxJobs: 2, maxJobsPerUser: Option.some(1) }))
      yield* settle
      expect(t.runner.spawns).toEqual(["a0", "a1"])
      yield* job(t, "b", BOB, 10, "1 hour")
      yield* settle
      expect(t.runner.spawns).toEqual(["a0", "a1"])
      yield* advance("10 seconds")
      expect(t.runner.spawns).toEqual(["a0", "a1", "b"])
      yield* advance("1 minute")
      expect(t.runner.spawns).toEqual(["a0", "a1", "b"])
      yield* stop(fiber)
    }))

  it.effect("when every waiting user is at the cap a slot stays free, until a job of theirs ends, a new user's job arrives, or the other user's queue empties", () =>
    Effect.gen(function*() {
      const t = yield* setup
      yield* job(t, "a0", ALICE, 0, "10 seconds")
      yield* job(t, "a1", ALICE, 1, "1 hour")
      yield* job(t, "a2", ALICE, 2, "1 hour")
      yield* job(t, "b0", BOB, 3, "1 hour")
      yield* job(t, "b1", BOB, 4, "1 hour")
      const fiber = yield* t.start(daemonSettings({ maxJobs: 3, maxJobsPerUser: Option.some(1) }))
      yield* settle
      expect(t.runner.spawns).toEqual(["a0", "b0"])
      yield* advance("5 seconds")
      expect(yield* Ref.get(t.runner.live)).toBe(2)
      // Alice's job ends: her next one takes her share back.
      yield* advance("5 seconds")
      expect(t.runner.spawns).toEqual(["a0", "b0", "a1"])
      // Carol is under the cap: her new job takes the free slot at once.
      yield* job(t, "c0", CAROL, 5, "1 hour")
      yield* settle
      expect(t.runner.spawns).toEqual(["a0", "b0", "a1", "c0"])
      expect(yield* Ref.get(t.runner.live)).toBe(3)
      yield* stop(fiber)
    }))

  it.effect("a user left alone in the queue (the other's job removed) may use the free slot, at the next rescan", () =>
    Effect.gen(function*() {
      const t = yield* setup
      yield* job(t, "a0", ALICE, 0, "1 hour")
      yield* job(t, "a1", ALICE, 1, "1 hour")
      yield* job(t, "b0", BOB, 2, "1 hour")
      yield* job(t, "b1", BOB, 3, "1 hour")
      const fiber = yield* t.start(daemonSettings({ maxJobs: 3, maxJobsPerUser: Option.some(1), poll: "2 seconds" }))
      yield* settle
      expect(t.runner.spawns).toEqual(["a0", "b0"])
      // Removed by bob, behind the watcher's back: only the listing notices.
      t.spool.files.delete("b1")
      yield* advance("2 seconds")
      expect(t.runner.spawns).toEqual(["a0", "b0", "a1"])
      yield* stop(fiber)
    }))
})


describe("pmjq cancel", () => {
  it.effect("a running job is stopped at the next look and archived as cancelled, by whom", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("long", exits(0, "1 hour"))
      yield* t.spool.submit("long", 1)
      const fiber = yield* t.start(daemonSettings({ archiveDir: Option.some("/archive"), poll: "2 seconds" }))
      yield* settle
      expect(yield* Ref.get(t.runner.live)).toBe(1)
      t.requests.ask("long", 1000)
      yield* advance("2 seconds")
      expect(t.runner.terminated).toEqual(["long"])
      expect(t.archive.stored.map((s) => [s.record.name, s.record.outcome, s.record.signal])).toEqual([["long", "cancelled", "SIGTERM"]])
      expect(t.archive.stored[0]!.record.reason).toMatch(/^cancelled by uid 1000; its process group was stopped/)
      expect(t.requests.pending).toEqual([])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("a request that comes while the job's claim is still being read waits for it, and then cancels it", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("long", exits(0, "1 hour"))
      // Renamed into the running folder at once; its head read takes 5 s.
      t.spool.claimTakes.set("long", "5 seconds")
      yield* t.spool.submit("long", 1)
      const fiber = yield* t.start(daemonSettings({ archiveDir: Option.some("/archive"), poll: "2 seconds" }))
      yield* settle
      expect(t.spool.inFolder.has("long")).toBe(true)
      t.requests.ask("long", 1000)
      yield* advance("2 seconds")
      // Neither queued nor enrolled yet: before, dropped as nothing to cancel.
      expect(t.requests.pending.map((r) => r.name)).toEqual(["long"])
      expect(t.runner.spawns).toEqual([])
      yield* advance("4 seconds")
      expect(t.runner.terminated).toEqual(["long"])
      expect(t.archive.stored.map((s) => [s.record.name, s.record.outcome])).toEqual([["long", "cancelled"]])
      expect(t.requests.pending).toEqual([])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("a queued job is archived as cancelled without ever running, even with no slot free", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("first", exits(0, "1 hour"))
      yield* t.spool.submit("first", 1)
      yield* t.spool.submit("second", 2)
      const fiber = yield* t.start(daemonSettings({ maxJobs: 1, archiveDir: Option.some("/archive"), poll: "2 seconds" }))
      yield* settle
      t.requests.ask("second", 1000)
      yield* advance("2 seconds")
      expect(t.runner.spawns).toEqual(["first"])
      expect(t.archive.stored.map((s) => [s.record.name, s.record.outcome, s.record.pid])).toEqual([["second", "cancelled", null]])
      expect(t.spool.files.has("second")).toBe(false)
      expect(t.requests.pending).toEqual([])
      // The slot was never the cancelled job's: the first still runs alone.
      expect(yield* Ref.get(t.runner.live)).toBe(1)
      yield* stop(fiber)
    }))

  it.effect("a queued job whose file changed owner before the claim is not cancelled, and starts within -j like any job", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("first", exits(0, "10 seconds"))
      t.runner.plan("second", exits(0, "10 seconds"))
      yield* t.spool.submit("first", 1)
      yield* t.spool.submit("second", 2)
      const fiber = yield* t.start(daemonSettings({ maxJobs: 1, archiveDir: Option.some("/archive"), poll: "2 seconds" }))
      yield* settle
      // Asked by the owner of the file queued; by the claim, another user's file has the name.
      t.spool.ownerAfterInspect.set("second", 2000)
      t.requests.ask("second", 1000)
      yield* advance("2 seconds")
      // Before: it ran at once, beside "first", outside -j and the gate.
      expect(t.runner.spawns).toEqual(["first"])
      expect(t.spool.released).toEqual(["second"])
      expect(t.archive.stored).toEqual([])
      expect(t.requests.pending).toEqual([])
      yield* advance("10 seconds")
      expect(t.runner.spawns).toEqual(["first", "second"])
      yield* stop(fiber)
    }))

  it.effect("a claimed job whose file is gone (the job deleted it) is still its owner's to cancel", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("selfish", exits(0, "1 hour"))
      yield* t.spool.submit("selfish", 1, true, 1234)
      const fiber = yield* t.start(daemonSettings({ archiveDir: Option.some("/archive"), poll: "2 seconds" }))
      yield* settle
      t.requests.ask("selfish", 1234)
      yield* advance("2 seconds")
      expect(t.runner.terminated).toEqual(["selfish"])
      expect(t.archive.stored.map((s) => [s.record.name, s.record.outcome])).toEqual([["selfish", "cancelled"]])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("another user's request is refused and removed; the job runs on untouched", () =>
    Effect.gen(function*() {
      const t = yield* setup
      t.runner.plan("mine", exits(0, "1 hour"))
      yield* t.spool.submit("mine", 1)
      yield* t.spool.submit("queued", 2)
      const fiber = yield* t.start(daemonSettings({ maxJobs: 1, poll: "2 seconds" }))
      yield* settle
      t.requests.ask("mine", 4242)
      t.requests.ask("queued", 4242)
      yield* advance("2 seconds")
      expect(t.runner.terminated).toEqual([])
      expect(t.archive.stored).toEqual([])
      expect(t.spool.files.has("queued")).toBe(true)
      expect(t.requests.pending).toEqual([])
      yield* stop(fiber)
    }))

  it.effect("a request for a job another node holds is left for it; one for a job that is nowhere is removed", () =>
    Effect.gen(function*() {
      const t = yield* setup
      const fiber = yield* t.start(daemonSettings({ poll: "2 seconds" }))
      yield* settle
      t.requests.elsewhere.add("theirs")
      t.requests.ask("theirs")
      t.requests.ask("ended")
      yield* advance("2 seconds")
      expect(t.requests.pending.map((r) => r.name)).toEqual(["theirs"])
      yield* Fiber.interrupt(fiber)
    }))
})
