/**
 * What pmjq keeps of refused files (job/RefusalsKept.ts), on the in-memory
 * filesystem: the newest KEEP entries of each owner, older ones removed whole,
 * and nothing that is not a refusal ever touched.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger, Option } from "effect"
import { KEEP, RefusalsKept } from "../../src/job/RefusalsKept.js"
import { type JobRecord, recordText } from "../../src/record/record.js"
import { Syscalls } from "../../src/filesystem/syscalls.js"
import { makeMemoryFs, type MemoryFs } from "../memoryfs.js"

const ERRORS = "/errors"
const ALICE = 1001
const BOB = 1002

const record = (name: string, uid: number, outcome: JobRecord["outcome"], inode: number): JobRecord => ({
  name, node: "n", host: "h", pid: null, user: "", uid, inode, attempt: 1,
  claimedAt: "2026-12-01T00:00:00.000Z", startedAt: null, endedAt: "2026-12-01T00:00:00.000Z", durationMs: 0,
  outcome, exitCode: null, signal: null, reason: outcome === "rejected" ? "writable by others" : null
})

/** An entry as the archive places it: the script (the owner's) and pmjq's record. */
const entry = (m: MemoryFs, base: string, uid: number, outcome: JobRecord["outcome"]) => {
  m.write(`${ERRORS}/${base}`, "#!/bin/sh\n", 0o777, { uid, gid: uid })
  m.write(`${ERRORS}/${base}.json`, recordText(record(base, uid, outcome, m.stat(`${ERRORS}/${base}`).ino)), 0o640)
  return `${ERRORS}/${base}`
}

const withKept = <A>(m: MemoryFs, use: (kept: RefusalsKept["Type"]) => Effect.Effect<A>) =>
  Effect.flatMap(RefusalsKept, use).pipe(
    Effect.provide(RefusalsKept.layer({ archiveDir: Option.none(), errorDir: Option.some(ERRORS), rejectedDir: "/spool/.pmjq/rejected" }).pipe(
      Layer.provide(Layer.succeed(Syscalls, m.calls))
    )),
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)),
    Effect.scoped
  )

describe("refusals kept", () => {
  it.effect("the newest KEEP of each owner stay; an older one goes whole; what ran, and others' refusals, are never touched", () =>
    Effect.gen(function*() {
      const m = makeMemoryFs({ uid: 0, gid: 0 })
      m.mkdirs(ERRORS)
      // From before this start: two of Alice's refusals, one of her jobs that failed, one refusal of Bob's.
      entry(m, "20261201T000000.000Z_old0", ALICE, "rejected")
      entry(m, "20261201T000000.001Z_old1", ALICE, "rejected")
      entry(m, "20261201T000000.002Z_ran", ALICE, "failed")
      entry(m, "20261201T000000.003Z_bobs", BOB, "rejected")
      yield* withKept(m, (kept) =>
        Effect.gen(function*() {
          yield* kept.scanned
          for (let i = 0; i < KEEP - 2; i++) yield* kept.placed(ALICE, entry(m, `20261202T000000.000Z_new${i}`, ALICE, "rejected"))
          // KEEP of hers so far: nothing removed.
          expect(m.exists(`${ERRORS}/20261201T000000.000Z_old0.json`)).toBe(true)
          yield* kept.placed(ALICE, entry(m, "20261202T000001.000Z_one-more", ALICE, "rejected"))
        }))
      const left = m.list(ERRORS)
      expect(left).not.toContain("20261201T000000.000Z_old0")
      expect(left).not.toContain("20261201T000000.000Z_old0.json")
      expect(left).toContain("20261201T000000.001Z_old1.json")
      expect(left).toContain("20261201T000000.002Z_ran.json")
      expect(left).toContain("20261201T000000.003Z_bobs.json")
      expect(left.filter((n) => n.endsWith(".json"))).toHaveLength(KEEP + 2)
    }))

  it.effect("of an entry removed, only its record and its very script go: never a file of another entry beside it", () =>
    Effect.gen(function*() {
      const m = makeMemoryFs({ uid: 0, gid: 0 })
      m.mkdirs(ERRORS)
      // A refused FIFO "x" left no script; STAMP_x.out is the script of a job called "x.out", ended in the same millisecond.
      m.write(`${ERRORS}/20261201T000000.000Z_x.json`, recordText(record("x", ALICE, "rejected", 4242)), 0o640)
      m.write(`${ERRORS}/20261201T000000.000Z_x.out`, "#!/bin/sh\n", 0o755, { uid: BOB, gid: BOB })
      m.write(`${ERRORS}/20261201T000000.000Z_x.out.json`, recordText(record("x.out", BOB, "succeeded", 1)), 0o640)
      // And a script in the entry's place that is not the file refused (another inode).
      m.write(`${ERRORS}/20261201T000000.001Z_y`, "#!/bin/sh\n", 0o755, { uid: BOB, gid: BOB })
      m.write(`${ERRORS}/20261201T000000.001Z_y.json`, recordText(record("y", ALICE, "rejected", 4343)), 0o640)
      yield* withKept(m, (kept) =>
        Effect.gen(function*() {
          yield* kept.scanned
          for (let i = 0; i < KEEP; i++) yield* kept.placed(ALICE, entry(m, `20261202T000000.000Z_new${i}`, ALICE, "rejected"))
        }))
      const left = m.list(ERRORS)
      expect(left).not.toContain("20261201T000000.000Z_x.json")
      expect(left).not.toContain("20261201T000000.001Z_y.json")
      expect(left).toContain("20261201T000000.000Z_x.out")
      expect(left).toContain("20261201T000000.000Z_x.out.json")
      expect(left).toContain("20261201T000000.001Z_y")
    }))

  it.effect("entries found at the start beyond the bound are trimmed, oldest first", () =>
    Effect.gen(function*() {
      const m = makeMemoryFs({ uid: 0, gid: 0 })
      m.mkdirs(ERRORS)
      for (let i = 0; i < KEEP + 3; i++) entry(m, `20261201T000000.000Z_r${String(i).padStart(5, "0")}`, ALICE, "rejected")
      yield* withKept(m, (kept) => kept.scanned)
      const records = m.list(ERRORS).filter((n) => n.endsWith(".json"))
      expect(records).toHaveLength(KEEP)
      expect(records[0]).toBe("20261201T000000.000Z_r00003.json")
      expect(m.list(ERRORS)).toHaveLength(2 * KEEP)
    }))
})
