/**
 * `pmjq cancel`'s requests as a node reads them (spool/Requests.ts) on the
 * in-memory filesystem: who asks is the file's owner, and anything that is not
 * a small regular file with one link that decodes is removed, never believed.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger } from "effect"
import { Requests, RequestsLive } from "../../src/spool/Requests.js"
import { Syscalls } from "../../src/syscalls.js"
import { makeMemoryFs, type MemoryFs } from "../memoryfs.js"

const SPOOL = "/spool"
const ALICE = { uid: 1001, gid: 1001 }
const quiet = Logger.replace(Logger.defaultLogger, Logger.none)

const withRequests = <A>(m: MemoryFs, use: (requests: Requests["Type"]) => Effect.Effect<A>) =>
  Effect.flatMap(Requests, use).pipe(Effect.provide(RequestsLive({ spool: SPOOL }).pipe(Layer.provide(Layer.succeed(Syscalls, m.calls)))), Effect.provide(quiet))

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
      const held = yield* withRequests(m, (r) => Effect.all([r.heldBy("job"), r.heldBy("other")]))
      expect(held).toEqual([["n2"], []])
    }))
})

