/**
 * Jobs that may not start yet, on the in-memory filesystem: the feed keeps
 * held jobs and jobs waiting on dependencies out of the queue, hands them to
 * it once their dependencies ended (an ended note another node wrote), and
 * dooms a loop; `pmjq pause`'s files as the nodes read them.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Logger, Option, TestClock } from "effect"
import { DaemonConfig } from "../../src/features/Config.js"
import { Pauses } from "../../src/features/Pauses.js"
import { daemonSettings, fakeSpool } from "../fakes.js"
import type { JobRecord } from "../../src/record/record.js"
import { dependencyFacts } from "../../src/spool/dependencyFacts.js"
import { makeEndedNotes, pruneEnded } from "../../src/spool/ended.js"
import { makeFeed, READ_AT_ONCE } from "../../src/spool/feed.js"
import { makePending, type Pending } from "../../src/spool/Pending.js"
import { readPause, removePause, writePause } from "../../src/spool/pauses.js"
import { Spool } from "../../src/spool/Spool.js"
import { Syscalls } from "../../src/filesystem/syscalls.js"
import { makeMemoryFs } from "../memoryfs.js"

const SPOOL = "/spool"

const ended = (name: string, outcome: JobRecord["outcome"]): JobRecord => ({
  name, node: "elsewhere", host: "h", pid: 1, user: "root", uid: 0, inode: 1, attempt: 1,
  claimedAt: "2026-12-07T00:00:00.000Z", startedAt: "2026-12-07T00:00:00.000Z", endedAt: "2026-12-07T00:00:01.000Z",
  durationMs: 1000, outcome, exitCode: outcome === "succeeded" ? 0 : 1, signal: null, reason: null
})

const queued = (q: Pending) =>
  Effect.gen(function*() {
    const out: Array<string> = []
    for (let c = yield* q.poll(); c !== undefined; c = yield* q.poll()) out.push(c.loop === undefined ? c.name : `${c.name} (loop)`)
    return out.sort()
  })

describe("jobs that may not start yet", () => {
  it.effect("stay out of the queue while held or waiting; join it once a dependency ended elsewhere; a loop is doomed", () =>
    Effect.gen(function*() {
      const m = makeMemoryFs({ uid: 0, gid: 0 })
      m.mkdirs(SPOOL, 0o1777)
      m.write(`${SPOOL}/build`, "#!/bin/sh\nmake\n", 0o755)
      m.write(`${SPOOL}/test`, "#!/bin/sh\n#PMJQ --after=build\nmake check\n", 0o755)
      m.write(`${SPOOL}/any`, "#!/bin/sh\n#PMJQ --after-any=test\n", 0o755)
      m.write(`${SPOOL}/held`, "#!/bin/sh\n#PMJQ --hold\n", 0o755)
      m.write(`${SPOOL}/loop-a`, "#!/bin/sh\n#PMJQ --after=loop-b\n", 0o755)
      m.write(`${SPOOL}/loop-b`, "#!/bin/sh\n#PMJQ --after=loop-a\n", 0o755)
      m.write(`${SPOOL}/bad`, "#!/bin/sh\n#PMJQ --after=\n", 0o755)
      const services = Spool.layer({ spool: SPOOL, node: "n1" }).pipe(Layer.provideMerge(Layer.succeed(Syscalls, m.calls)))
      const pending = yield* makePending()
      const feed = yield* makeFeed(pending, Effect.void, "1 second").pipe(Effect.provide(services))
      yield* feed.scan
      // A file whose directives are wrong is queued: claimed, it is refused with a record naming the line.
      expect(yield* queued(pending)).toEqual(["bad", "build", "loop-a (loop)", "loop-b (loop)"])
      expect(feed.waiting.counts()).toEqual({ held: 1, dependency: 2 })
      // Claimed (gone from the spool); "build" then ends on another node: its ended note.
      for (const name of ["bad", "build", "loop-a", "loop-b"]) yield* Effect.promise(() => m.calls.unlink(`${SPOOL}/${name}`))
      yield* feed.scan
      expect(yield* queued(pending)).toEqual([])
      yield* Effect.promise(() => makeEndedNotes(m.calls, SPOOL)(ended("build", "succeeded")))
      yield* feed.scan
      expect(yield* queued(pending)).toEqual(["test"])
      // "any" waits on "test", still in the spool (queued): it was handed out, not claimed.
      expect(feed.waiting.counts()).toEqual({ held: 1, dependency: 1 })
      yield* Effect.promise(() => m.calls.unlink(`${SPOOL}/test`))
      yield* Effect.promise(() => makeEndedNotes(m.calls, SPOOL)(ended("test", "failed")))
      yield* feed.review
      expect(yield* queued(pending)).toEqual(["any"])
      expect(feed.waiting.counts()).toEqual({ held: 1, dependency: 0 })
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none))))

  it.effect("what a claimed job's dependencies are judged on: queued, held, running, then the last ended note", () =>
    Effect.gen(function*() {
      const m = makeMemoryFs({ uid: 0, gid: 0 })
      m.mkdirs(SPOOL, 0o1777)
      m.write(`${SPOOL}/q`, "#!/bin/sh\n", 0o755)
      m.write(`${SPOOL}/.pmjq-held-h`, "#!/bin/sh\n", 0o755)
      const spool = yield* Spool.pipe(Effect.provide(Spool.layer({ spool: SPOOL, node: "n1" }).pipe(Layer.provide(Layer.succeed(Syscalls, m.calls)))))
      m.write(`${SPOOL}/r`, "#!/bin/sh\n", 0o755)
      expect(Option.isSome(yield* spool.claim("r"))).toBe(true)
      const notes = makeEndedNotes(m.calls, SPOOL)
      yield* Effect.promise(() => notes(ended("q", "failed")))
      yield* Effect.promise(() => notes(ended("done", "failed")))
      yield* Effect.promise(() => notes(ended("done", "succeeded")))
      const facts = yield* spool.dependencies(["q", "h", "r", "done", "never"], 0)
      expect(Object.fromEntries(facts.presence)).toEqual({ q: "queued", h: "held", r: "running" })
      expect([...facts.ended.keys()]).toEqual(["done"])
      expect(facts.ended.get("done")?.outcome).toBe("succeeded")
      // Names are public: another user's queued, held or ended job of the name is not the dependency of root's job,
      // nor root's of theirs.
      m.write(`${SPOOL}/theirs`, "#!/bin/sh\n", 0o755, { uid: 1001, gid: 1001 })
      m.write(`${SPOOL}/.pmjq-held-theirs-held`, "#!/bin/sh\n", 0o755, { uid: 1001, gid: 1001 })
      yield* Effect.promise(() => notes({ ...ended("theirs-done", "succeeded"), uid: 1001 }))
      const mine = yield* spool.dependencies(["theirs", "theirs-held", "theirs-done"], 0)
      expect([mine.presence.size, mine.ended.size]).toEqual([0, 0])
      expect((yield* spool.dependencies(["q", "theirs-done"], 1001)).ended.get("theirs-done")?.uid).toBe(1001)
      expect((yield* spool.dependencies(["q"], 1001)).presence.size).toBe(0)
      // A note not pmjq's own is not believed.
      m.write(`${SPOOL}/.pmjq/ended/0/forged`, JSON.stringify({ ...ended("forged", "succeeded"), node: "x" }), 0o644, { uid: 1001, gid: 1001 })
      expect((yield* spool.dependencies(["forged"], 0)).ended.size).toBe(0)
      // An end archived late (recovery, a retry) does not replace a later one's.
      yield* Effect.promise(() => notes({ ...ended("done", "failed"), endedAt: "2026-12-06T00:00:00.000Z" }))
      expect((yield* spool.dependencies(["done"], 0)).ended.get("done")?.outcome).toBe("succeeded")
    }))

  it.effect("a pause of the spool holds every node, one of a node only that node; root's holds a node run as pmjq's own user", () =>
    Effect.gen(function*() {
      const m = makeMemoryFs({ uid: 0, gid: 0 })
      m.mkdirs(`${SPOOL}/.pmjq`, 0o755)
      const note = { by: "root", at: "2026-12-07T00:00:00.000Z", reason: "maintenance" }
      yield* Effect.promise(() => writePause(m.calls, SPOOL, "n2", note))
      expect(yield* Effect.promise(() => readPause(m.calls, SPOOL, "n1", 0))).toBeNull()
      expect(yield* Effect.promise(() => readPause(m.calls, SPOOL, "n2", 0))).toEqual({ ...note, node: "n2" })
      yield* Effect.promise(() => writePause(m.calls, SPOOL, null, note))
      expect((yield* Effect.promise(() => readPause(m.calls, SPOOL, "n1", 999)))?.node).toBeNull()
      expect(yield* Effect.promise(() => removePause(m.calls, SPOOL, null))).toBe(true)
      expect(yield* Effect.promise(() => removePause(m.calls, SPOOL, null))).toBe(false)
      expect((yield* Effect.promise(() => readPause(m.calls, SPOOL, "n2", 0)))?.reason).toBe("maintenance")
      // Readable by every node whatever the pauser's umask.
      const strict = makeMemoryFs({ uid: 0, gid: 0, umask: 0o077 })
      strict.mkdirs(`${SPOOL}/.pmjq`, 0o755)
      yield* Effect.promise(() => writePause(strict.calls, SPOOL, null, note))
      expect((yield* Effect.promise(() => strict.calls.lstat(`${SPOOL}/.pmjq/paused`))).mode & 0o777).toBe(0o755)
      expect((yield* Effect.promise(() => strict.calls.lstat(`${SPOOL}/.pmjq/paused/spool`))).mode & 0o777).toBe(0o644)
    }))
})

describe("a pause as the dispatcher waits on it", () => {
  it.scoped("read before dispatch and every --poll: claims wait while it holds, and go on once it is gone", () =>
    Effect.gen(function*() {
      const fake = yield* fakeSpool
      const layer = Pauses.layer.pipe(
        Layer.provide(Layer.succeed(Spool, fake.service)),
        Layer.provide(Layer.succeed(DaemonConfig, daemonSettings({ poll: "1 second" })))
      )
      fake.pause.now = Option.some({ by: "root", at: "2026-12-07T00:00:00.000Z", reason: null, node: null })
      // Built in the test's scope: its --poll loop runs until the test ends.
      const pauses = Context.get(yield* Layer.build(layer), Pauses)
      // Paused from the first look, before any claim.
      expect(Option.isSome(yield* pauses.current)).toBe(true)
      const claim = yield* Effect.fork(pauses.whenResumed)
      yield* TestClock.adjust("5 seconds")
      expect(claim.unsafePoll()).toBeNull()
      fake.pause.now = Option.none()
      yield* TestClock.adjust("999 millis")
      expect(claim.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(claim)
      expect(Option.isNone(yield* pauses.current)).toBe(true)
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none))))
})

describe("ended notes kept a week", () => {
  it.effect("the old ones are pruned; one a job wrote again is kept, and an end archived late never replaces a later one", () =>
    Effect.gen(function*() {
      let clock = 0
      const m = makeMemoryFs({ uid: 0, gid: 0, now: () => clock })
      m.mkdirs(SPOOL, 0o1777)
      const notes = makeEndedNotes(m.calls, SPOOL)
      const week = 7 * 24 * 3600 * 1000
      yield* Effect.promise(() => notes(ended("old", "failed")))
      yield* Effect.promise(() => notes(ended("again", "failed")))
      clock = week + 1
      // Written again since: its note is new.
      yield* Effect.promise(() => notes({ ...ended("again", "succeeded"), endedAt: "2026-12-08T00:00:00.000Z" }))
      expect(yield* Effect.promise(() => pruneEnded(m.calls, SPOOL, clock, week))).toBe(1)
      const facts = yield* Effect.promise(() => dependencyFacts(m.calls, SPOOL, ["old", "again"], 0, 0))
      expect([...facts.ended.keys()]).toEqual(["again"])
      expect(facts.ended.get("again")?.outcome).toBe("succeeded")
    }))
})

describe("a backlog too large to read at once", () => {
  it.effect("is queued first, then its heads are read a chunk at a time: a held job leaves the queue, a priority takes its place", () =>
    Effect.gen(function*() {
      const m = makeMemoryFs({ uid: 0, gid: 0 })
      m.mkdirs(SPOOL, 0o1777)
      const many = READ_AT_ONCE + 200
      for (let i = 0; i < many; i++) m.write(`${SPOOL}/j${i}`, "#!/bin/sh\n", 0o755)
      m.write(`${SPOOL}/urgent`, "#!/bin/sh\n#PMJQ --priority=10\n", 0o755)
      m.write(`${SPOOL}/held`, "#!/bin/sh\n#PMJQ --hold\n", 0o755)
      const services = Spool.layer({ spool: SPOOL, node: "n1" }).pipe(Layer.provideMerge(Layer.succeed(Syscalls, m.calls)))
      const pending = yield* makePending()
      const feed = yield* makeFeed(pending, Effect.void, "1 second").pipe(Effect.provide(services))
      yield* feed.scan
      // Queued unread: dispatch may start at once.
      expect(yield* pending.size).toBe(many + 2)
      const reader = yield* Effect.fork(feed.readBacklog)
      for (let turns = 0; feed.waiting.counts().held === 0; turns++) {
        expect(turns).toBeLessThan(1000)
        yield* Effect.yieldNow()
      }
      yield* Fiber.interrupt(reader)
      expect(yield* pending.size).toBe(many + 1)
      expect((yield* pending.poll())?.name).toBe("urgent")
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none))))
})
