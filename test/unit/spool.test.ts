/** The live Spool on a real folder: what a claim does with what it finds. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Readable } from "node:stream"
import { Spool } from "../../src/spool/Spool.js"
import { Syscalls } from "../../src/filesystem/syscalls.js"
import { logLines } from "../../src/log/text.js"

const spoolAt = (dir: string) => Spool.pipe(Effect.provide(Spool.layer({ spool: dir, node: "n1" }).pipe(Layer.provide(Syscalls.Direct))))

describe("Spool.claim", () => {
  it.effect("a folder swapped in for a queued file is never kept: it goes back under its name", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-spool-"))
      const spool = yield* spoolAt(dir)
      fs.writeFileSync(path.join(dir, "job"), "#!/bin/sh\n", { mode: 0o755 })
      expect(Option.isSome(yield* spool.inspect("job"))).toBe(true)
      // The user swaps the file for a folder of theirs between the look and the claim.
      fs.unlinkSync(path.join(dir, "job"))
      fs.mkdirSync(path.join(dir, "job"))
      fs.writeFileSync(path.join(dir, "job", "inside"), "x")
      expect(yield* spool.claim("job")).toEqual(Option.none())
      expect(fs.readdirSync(path.join(dir, "job"))).toEqual(["inside"])
      expect(fs.readdirSync(path.join(dir, ".pmjq", "running", "n1"))).toEqual([])
      fs.rmSync(dir, { recursive: true })
    }))

  it.effect("a claimed file's facts are those the claim saw", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-spool-"))
      const spool = yield* spoolAt(dir)
      fs.writeFileSync(path.join(dir, "job"), "#!/bin/sh\n", { mode: 0o755 })
      const claim = yield* spool.claim("job")
      expect(Option.isSome(claim)).toBe(true)
      const facts = yield* spool.facts(Option.getOrThrow(claim))
      expect(facts).toMatchObject({ isFile: true, isSymlink: false, nlink: 1, ino: fs.statSync(Option.getOrThrow(claim).path).ino })
      fs.rmSync(dir, { recursive: true })
    }))
})

describe("Spool.claim beside what a crash left", () => {
  it.effect("an archival mark left by a crash is never taken for a new same-named job's: the claim goes to NAME.~1~", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-spool-"))
      const running = path.join(dir, ".pmjq", "running", "n1")
      fs.mkdirSync(running, { recursive: true })
      // Killed between the last of an earlier "job"'s files and its mark.
      fs.writeFileSync(path.join(running, ".job.done"), JSON.stringify({ entry: "/archive/S_job", host: "h", state: "placed", at: "2026-01-01T00:00:00.000Z" }))
      fs.writeFileSync(path.join(running, "..other.done"), "{}")
      const spool = yield* spoolAt(dir)
      fs.writeFileSync(path.join(dir, "job"), "#!/bin/sh\n", { mode: 0o755 })
      fs.writeFileSync(path.join(dir, "other"), "#!/bin/sh\n", { mode: 0o755 })
      expect(path.basename(Option.getOrThrow(yield* spool.claim("job")).path)).toBe("job.~1~")
      expect(path.basename(Option.getOrThrow(yield* spool.claim("other")).path)).toBe("other.~1~")
      fs.rmSync(dir, { recursive: true })
    }))
})

describe("Spool.requeue", () => {
  it.effect("after a recovery killed between its link and its unlink, the leftover name goes and nothing is queued twice", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-spool-"))
      const spool = yield* spoolAt(dir)
      const dead = path.join(dir, ".pmjq", "running", "dead")
      fs.mkdirSync(dead, { recursive: true })
      const left = path.join(dead, "job")
      fs.writeFileSync(left, "#!/bin/sh\n", { mode: 0o755 })
      expect(yield* spool.requeue(left, "job", 1)).toBe(true)
      // The kill came after the link: the leftover still has its name.
      fs.linkSync(path.join(dir, "job"), left)
      expect(fs.statSync(left).nlink).toBe(2)
      expect(yield* spool.requeue(left, "job", 2)).toBe(true)
      expect(fs.existsSync(left)).toBe(false)
      expect(fs.statSync(path.join(dir, "job")).nlink).toBe(1)
      // Its attempts are those of the requeue that happened.
      expect(yield* spool.startedBefore(path.join(dir, "job"), "job")).toBe(1)
      fs.rmSync(dir, { recursive: true })
    }))
})

const through = async (name: string, chunks: ReadonlyArray<string | Buffer>) => {
  let out = ""
  for await (const piece of Readable.from(chunks.map((c) => (typeof c === "string" ? Buffer.from(c) : c))).pipe(logLines(name))) out += String(piece)
  return out
}

describe("logLines: a job's error output on its way into pmjq's log", () => {
  it("marks each line with the job's name and escapes control characters, across chunk boundaries", async () => {
    expect(await through("j", ["one\ntw", "o\n", "\u001b]0;x\u0007 and\ttab\n", "last"])).toBe(
      "[j] one\n[j] two\n[j] \\x1b]0;x\\x07 and\ttab\n[j] last\n"
    )
  })

  it("a character split between two writes stays whole; a name with controls is escaped too", async () => {
    const e = Buffer.from("é")
    expect(await through("a\u001bb", [e.subarray(0, 1), Buffer.concat([e.subarray(1), Buffer.from("\n")])])).toBe("[a\\x1bb] é\n")
  })

  it("a job that never writes a newline is cut into lines of 64 KiB, never held whole", async () => {
    const out = await through("j", ["x".repeat(150 * 1024)])
    expect(out.split("\n").filter(Boolean).map((l) => l.length)).toEqual([65536 + 4, 65536 + 4, 150 * 1024 - 2 * 65536 + 4])
  })
})
