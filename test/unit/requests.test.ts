/**
 * `pmjq cancel`'s requests as a node reads them (spool/Requests.ts) on the
 * in-memory filesystem: who asks is the file's owner, and anything that is not
 * a small regular file with one link that decodes is removed, never believed.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Layer, Logger } from "effect"
import type { Calls } from "../../src/filesystem/syscalls.js"
import { Requests } from "../../src/spool/Requests.js"
import { Syscalls } from "../../src/filesystem/syscalls.js"
import { makeMemoryFs, type MemoryFs } from "../memoryfs.js"

const SPOOL = "/spool"
const ALICE = { uid: 1001, gid: 1001 }
const quiet = Logger.replace(Logger.defaultLogger, Logger.none)

const withRequests = <A>(m: MemoryFs, use: (requests: Requests["Type"]) => Effect.Effect<A>, calls: Calls = m.calls, logger = quiet) =>
  Effect.flatMap(Requests, use).pipe(Effect.provide(Requests.layer({ spool: SPOOL }).pipe(Layer.provide(Layer.succeed(Syscalls, calls)))), Effect.provide(logger))

const spool = () => {
  const m = makeMemoryFs({ uid: 0, gid: 0 })
  m.mkdirs(SPOOL, 0o1777)
  return m
}

describe("cancel requests", () => {
  it.effect("a well-formed request speaks for its file's owner; done removes it", () =>
    Effect.gen(function*() {
      const m = spool()
      m.write(`${SPOOL}/.pmjq-cancel-1001-1-aa`, JSON.stringify({ name: "job" }), 0o644, ALICE)
      // Not requests: the aside of one being written, and ordinary hidden files.
      m.write(`${SPOOL}/.pmjq-cancel-1001-2-bb.tmp`, "{", 0o644, ALICE)
      m.write(`${SPOOL}/.hidden`, "x", 0o644, ALICE)
      const found = yield* withRequests(m, (r) => Effect.flatMap(r.cancels, (all) => Effect.as(Effect.forEach(all, r.done), all)))
      expect(found).toEqual([{ file: `${SPOOL}/.pmjq-cancel-1001-1-aa`, uid: 1001, name: "job" }])
      expect(m.list(SPOOL)).toEqual([".hidden", ".pmjq-cancel-1001-2-bb.tmp"])
    }))

  it.effect("anything else is removed, never believed: not JSON, a name with a slash, a symlink, a FIFO, too large, a hard link", () =>
    Effect.gen(function*() {
      const m = spool()
      m.write(`${SPOOL}/.pmjq-cancel-a`, "not json", 0o644, ALICE)
      m.write(`${SPOOL}/.pmjq-cancel-b`, JSON.stringify({ name: "../.pmjq/x" }), 0o644, ALICE)
      m.write("/elsewhere", JSON.stringify({ name: "job" }), 0o644)
      m.symlink("/elsewhere", `${SPOOL}/.pmjq-cancel-c`)
      m.fifo(`${SPOOL}/.pmjq-cancel-d`)
      m.write(`${SPOOL}/.pmjq-cancel-e`, JSON.stringify({ name: "job", pad: "x".repeat(5000) }), 0o644, ALICE)
      // A hard link to another's file would speak in that owner's name.
      m.write("/roots", JSON.stringify({ name: "job" }), 0o644)
      yield* Effect.promise(() => m.calls.link("/roots", `${SPOOL}/.pmjq-cancel-f`))
      const found = yield* withRequests(m, (r) => r.cancels)
      expect(found).toEqual([])
      expect(m.list(SPOOL)).toEqual([])
      expect(m.exists("/elsewhere")).toBe(true)
      expect(m.read("/roots")).toBe(JSON.stringify({ name: "job" }))
    }))

  it.effect("a job is held anywhere when a node's running folder has it (its copies .~N~ too)", () =>
    Effect.gen(function*() {
      const m = spool()
      m.mkdirs(`${SPOOL}/.pmjq/running/n1`)
      m.mkdirs(`${SPOOL}/.pmjq/running/n2`)
      m.write(`${SPOOL}/.pmjq/running/n2/job.~1~`, "#!/bin/sh\n", 0o755, ALICE)
      m.write(`${SPOOL}/.pmjq/running/n2/.other.json`, "{}", 0o640)
      // An ended job, its archival waiting: its record beside it.
      m.write(`${SPOOL}/.pmjq/running/n1/over`, "#!/bin/sh\n", 0o755, ALICE)
      m.write(`${SPOOL}/.pmjq/running/n1/.over.json`, "{}", 0o640)
      const held = yield* withRequests(m, (r) => Effect.map(r.holders, (heldBy) => [heldBy("job"), heldBy("other"), heldBy("over")]))
      expect(held).toEqual([[{ node: "n2", claimed: "job.~1~", ended: false }], [], [{ node: "n1", claimed: "over", ended: true }]])
    }))

  it.effect("folders named like requests cost no call, keep no memory, and are said only when there are more; junk is one line a look", () =>
    Effect.gen(function*() {
      // The filesystem's clock: the spool's mtime says when names changed.
      let t = 1_000
      const m = makeMemoryFs({ uid: 0, gid: 0, now: () => t })
      m.mkdirs(SPOOL, 0o1777)
      for (let i = 0; i < 1000; i++) m.mkdirs(`${SPOOL}/.pmjq-cancel-d${i}`, 0o755, ALICE)
      m.write(`${SPOOL}/.pmjq-cancel-1001-1-aa`, JSON.stringify({ name: "job" }), 0o644, ALICE)
      for (const bad of ["x", "y", "z"]) m.write(`${SPOOL}/.pmjq-cancel-${bad}`, "not json", 0o644, ALICE)
      // Every call naming a path, by path.
      const touched: Array<string> = []
      const counted = new Proxy(m.calls, {
        get: (target, op: keyof Calls) => (file: string, ...rest: Array<never>) => {
          if (op !== "entries" && op !== "readdir") touched.push(file)
          return (target[op] as (...a: Array<unknown>) => unknown)(file, ...rest)
        }
      })
      const lines: Array<string> = []
      const logger = Logger.replace(Logger.defaultLogger, Logger.make(({ annotations, message }) => {
        lines.push([String(message), ...HashMap.toEntries(annotations).map(([k, v]) => `${k}=${String(v)}`)].join(" "))
      }))
      const looks = yield* withRequests(m, (r) =>
        Effect.gen(function*() {
          const first = yield* r.cancels
          const second = yield* r.cancels
          t += 10_000
          for (let i = 1000; i < 1005; i++) m.mkdirs(`${SPOOL}/.pmjq-cancel-d${i}`, 0o755, ALICE)
          const third = yield* r.cancels
          return [first, second, third]
        }), counted, logger)
      expect(looks.map((found) => found.map((r) => r.name))).toEqual([["job"], ["job"], ["job"]])
      expect(touched.filter((file) => file.includes("cancel-d"))).toEqual([])
      expect(lines).toEqual([
        "folders named like cancel requests: not requests, left alone count=1000",
        expect.stringMatching(/^cancel requests not understood; removed (?=.*count=3)(?=.*reason=not JSON)(?=.*first=\/spool\/\.pmjq-cancel-[xyz])/),
        "folders named like cancel requests: not requests, left alone count=1005"
      ])
      expect(m.list(SPOOL).filter((n) => n.startsWith(".pmjq-cancel-d"))).toHaveLength(1005)
    }))
})
