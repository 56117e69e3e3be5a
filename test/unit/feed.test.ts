/**
 * The feed (spool/feed.ts) on the in-memory filesystem: what a rescan costs
 * with many names that are not jobs, and how soon one made executable in
 * place is queued.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger } from "effect"
import { makeFeed } from "../../src/spool/feed.js"
import { makeUnchanged } from "../../src/spool/unchanged.js"
import { makePending } from "../../src/spool/Pending.js"
import { Spool } from "../../src/spool/Spool.js"
import { type Calls, Syscalls } from "../../src/filesystem/syscalls.js"
import { makeMemoryFs } from "../memoryfs.js"

const SPOOL = "/spool"
const NOT_JOBS = 600

const setup = Effect.gen(function*() {
  const m = makeMemoryFs({ uid: 0, gid: 0 })
  m.mkdirs(SPOOL, 0o1777)
  for (let i = 0; i < NOT_JOBS; i++) m.write(`${SPOOL}/data${i}`, "", 0o644, { uid: 1001, gid: 1001 })
  m.write(`${SPOOL}/job`, "#!/bin/sh\n", 0o755)
  const looked: Array<string> = []
  // A name is looked at through a descriptor (what it is, and a job's directives): one call each.
  const counted: Calls = { ...m.calls, head: (file, max, wanted) => (looked.push(file), m.calls.head(file, max, wanted)) }
  return { m, looked, calls: counted }
})

describe("the feed's rescans", () => {
  it.effect("names that are not jobs cost a slice of a rescan, not one look each; each is looked at again within a minute", () =>
    Effect.gen(function*() {
      const { calls, looked, m } = yield* setup
      const pending = yield* makePending()
      // --poll 1s: one sixtieth of them a rescan.
      const feed = yield* makeFeed(pending, Effect.void, "1 second").pipe(
        Effect.provide(Spool.layer({ spool: SPOOL, node: "n1" }).pipe(Layer.provide(Layer.succeed(Syscalls, calls))))
      )
      yield* feed.scan
      expect(yield* pending.size).toBe(1)
      const first = looked.splice(0).filter((f) => f.startsWith(`${SPOOL}/data`)).length
      expect(first).toBe(NOT_JOBS)
      const perRescan: Array<number> = []
      for (let i = 0; i < 60; i++) {
        yield* feed.scan
        perRescan.push(looked.splice(0).filter((f) => f.startsWith(`${SPOOL}/data`)).length)
      }
      expect(Math.max(...perRescan)).toBe(NOT_JOBS / 60)
      expect(perRescan.reduce((a, b) => a + b)).toBe(NOT_JOBS)
      // Made executable in place with no notification (another machine): queued within 60 rescans.
      m.chmod(`${SPOOL}/data7`, 0o755)
      let rescans = 0
      while (!pending.has("data7")) {
        yield* feed.scan
        rescans++
        expect(rescans).toBeLessThanOrEqual(60)
      }
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none))))

  it.effect("a notification about a name that was not a job looks at it at once", () =>
    Effect.gen(function*() {
      const { calls, m } = yield* setup
      const pending = yield* makePending()
      const feed = yield* makeFeed(pending, Effect.void, "1 second").pipe(
        Effect.provide(Spool.layer({ spool: SPOOL, node: "n1" }).pipe(Layer.provide(Layer.succeed(Syscalls, calls))))
      )
      yield* feed.scan
      m.chmod(`${SPOOL}/data3`, 0o755)
      yield* feed.handle({ _tag: "Touched", name: "data3" })
      expect(pending.has("data3")).toBe(true)
      // And it is not forgotten as a non-job by the next rescan.
      yield* feed.scan
      expect(pending.has("data3")).toBe(true)
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none))))
})

describe("a file without an execute bit", () => {
  it.effect("is said once in the log, not at each rescan nor after a notification; again only once it is gone and back; a flood in a dozen lines", () =>
    Effect.gen(function*() {
      const { calls, m } = yield* setup
      const said: Array<string> = []
      const logger = Logger.make(({ message }) => {
        const text = Array.isArray(message) ? message.join(" ") : String(message)
        if (text.startsWith("not executable")) said.push(text)
      })
      const pending = yield* makePending()
      const feed = yield* makeFeed(pending, Effect.void, "1 second").pipe(
        Effect.provide(Spool.layer({ spool: SPOOL, node: "n1" }).pipe(Layer.provide(Layer.succeed(Syscalls, calls))))
      )
      const logged = Logger.replace(Logger.defaultLogger, logger)
      yield* Effect.gen(function*() {
        for (let i = 0; i < 120; i++) yield* feed.scan
        yield* feed.handle({ _tag: "Touched", name: "data3" })
        for (let i = 0; i < 5; i++) yield* feed.scan
      }).pipe(Effect.provide(logged))
      // 600 at once: ten named, then one line for the rest; never again.
      expect(said).toHaveLength(11)
      expect(said.slice(0, 10).every((line) => /^not executable: chmod \+x data\d+ to run it$/.test(line))).toBe(true)
      expect(said[10]).toBe(`not executable: ${NOT_JOBS - 10} more files (chmod +x each to run it)`)
      // Gone, then written again: a new file, said again.
      yield* Effect.promise(() => m.calls.unlink(`${SPOOL}/data3`))
      yield* feed.scan.pipe(Effect.provide(logged))
      m.write(`${SPOOL}/data3`, "", 0o644, { uid: 1001, gid: 1001 })
      m.write(`${SPOOL}/-rf ~`, "", 0o644, { uid: 1001, gid: 1001 })
      yield* feed.scan.pipe(Effect.provide(logged))
      expect(said.slice(11).sort()).toEqual(["not executable: chmod +x './-rf ~' to run it", "not executable: chmod +x data3 to run it"].sort())
    }))
})

describe("a listing made again only when the folder may have changed (spool/unchanged.ts)", () => {
  it.effect("unchanged mtime: no listing; a name made, a recent mtime, or a minute gone: listed", () =>
    Effect.promise(async () => {
      let t = 1_000_000
      const m = makeMemoryFs({ uid: 0, gid: 0, now: () => t })
      m.mkdirs(SPOOL, 0o1777)
      let lists = 0
      const list = () => (lists++, m.calls.readdir(SPOOL))
      const folder = makeUnchanged(m.calls, SPOOL, () => t, () => t)
      t += 5_000
      expect(await folder.listing(list)).toEqual([])
      t += 5_000
      expect(await folder.listing(list)).toBeNull()
      // A name made: the folder's mtime moves.
      m.write(`${SPOOL}/job`, "", 0o755)
      expect(await folder.listing(list)).toEqual(["job"])
      // That mtime is not a second old: not believed, listed again.
      t += 500
      expect(await folder.listing(list)).toEqual(["job"])
      t += 5_000
      expect(await folder.listing(list)).toEqual(["job"])
      expect(await folder.listing(list)).toBeNull()
      t += 60_000
      expect(await folder.listing(list)).toEqual(["job"])
      expect(lists).toBe(5)
    }))
})
