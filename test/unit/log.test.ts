/** `pmjq log`'s follower on a scripted spool and a test clock, and its opening of output files on real ones. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, TestClock } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { CHUNK, followJob, openOutput, type OutputFile, type Sighting, type Watch } from "../../src/cli/log.js"
import { endOf } from "../../src/cli/waited.js"
import { OutputLost } from "../../src/errors/errors.js"
import type { JobRecord } from "../../src/record/record.js"

/** A file as a descriptor sees it: its bytes, whatever name it has now (or none). */
interface FakeFile {
  readonly ino: number
  data: Buffer
  /** Lost to this client (ESTALE: removed through another NFS client). */
  lost: boolean
}

const record = (entry: string, over: Partial<JobRecord> = {}) => ({
  name: "job", node: "n1", host: "h", pid: 42, user: "u", uid: 1000, inode: 7, attempt: 1,
  claimedAt: "2026-01-01T00:00:00.000Z", startedAt: "2026-01-01T00:00:00.100Z", endedAt: "2026-01-01T00:00:01.000Z",
  durationMs: 900, outcome: "failed", exitCode: 3, signal: null, reason: "exited with status 3", entry, ...over
} as const)

const RUN = { out: "/spool/.pmjq/running/n1/.job.out", err: "/spool/.pmjq/running/n1/.job.err" }
const ENTRY = "/archive/20260101T000001.000Z_job"
const running: Sighting = { at: "running", node: "n1", stdout: RUN.out, stderr: RUN.err }
const ended = (over: Partial<JobRecord> = {}): Sighting => ({ at: "ended", record: record(ENTRY, over) })

/** A spool whose sighting and files the test sets, and what log printed. */
const world = (first: Sighting) => {
  let nextIno = 100
  const names = new Map<string, FakeFile>()
  const reads: Array<number> = []
  const out: Array<string> = []
  const err: Array<string> = []
  const notes: Array<string> = []
  const state = { seen: first, keeps: true, opened: 0, closed: 0 }
  const make = (name: string, text = "") => {
    const file: FakeFile = { ino: nextIno++, data: Buffer.from(text), lost: false }
    names.set(name, file)
    return file
  }
  const descriptor = (file: FakeFile): OutputFile => ({
    ino: file.ino,
    size: Effect.suspend(() => (file.lost ? Effect.fail(new OutputLost({ reason: "ESTALE" })) : Effect.succeed(file.data.length))),
    read: (at, max) =>
      Effect.suspend(() => {
        if (file.lost) return Effect.fail(new OutputLost({ reason: "ESTALE" }))
        reads.push(max)
        return Effect.succeed(file.data.subarray(at, at + max))
      }),
    close: Effect.sync(() => void state.closed++)
  })
  const watch: Watch = {
    look: Effect.sync(() => state.seen),
    open: (name) =>
      Effect.sync(() => {
        const file = names.get(name)
        if (file === undefined) return null
        state.opened++
        return descriptor(file)
      }),
    inodeAt: (name) => Effect.sync(() => names.get(name)?.ino ?? null),
    keepsOutput: () => Effect.sync(() => state.keeps)
  }
  const sinks = {
    stdout: (b: Uint8Array) => Effect.sync(() => void out.push(Buffer.from(b).toString())),
    stderr: (b: Uint8Array) => Effect.sync(() => void err.push(Buffer.from(b).toString())),
    note: (line: string) => Effect.sync(() => void notes.push(line))
  }
  const append = (file: FakeFile, text: string) => void (file.data = Buffer.concat([file.data, Buffer.from(text)]))
  return {
    state, names, reads, make, append, watch, sinks, notes,
    out: () => out.join(""),
    err: () => err.join(""),
    follow: (follow: boolean) => followJob("job", watch, sinks, first, follow)
  }
}

const poll = TestClock.adjust("200 millis")

describe("pmjq log, following a job", () => {
  it.effect("without -f: a running job's output so far, stdout and stderr apart; nothing after", () =>
    Effect.gen(function*() {
      const w = world(running)
      w.make(RUN.out, "one\n")
      w.make(RUN.err, "warn\n")
      expect(yield* w.follow(false)).toBeNull()
      expect([w.out(), w.err(), w.notes]).toEqual(["one\n", "warn\n", []])
      // Both descriptors closed.
      expect(w.state.closed).toBe(w.state.opened)
    }))

  it.effect("-f: what is written between looks is printed once and in order, until the record says the job ended", () =>
    Effect.gen(function*() {
      const w = world(running)
      const out = w.make(RUN.out, "a")
      const err = w.make(RUN.err)
      const fiber = yield* Effect.fork(w.follow(true))
      yield* Effect.yieldNow()
      expect(w.out()).toBe("a")
      w.append(out, "b")
      w.append(err, "e1")
      yield* poll
      expect([w.out(), w.err()]).toEqual(["ab", "e1"])
      // Nothing new: nothing printed, and it goes on looking.
      yield* poll
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      // The job writes its last, then is archived by a link (the same files, new names) and its running names go.
      w.append(out, "c\n")
      w.names.set(`${ENTRY}.out`, out)
      w.names.set(`${ENTRY}.err`, err)
      w.names.delete(RUN.out)
      w.names.delete(RUN.err)
      w.state.seen = ended()
      yield* poll
      const end = yield* Fiber.join(fiber)
      expect(end?.exitCode).toBe(3)
      expect([w.out(), w.err(), w.notes]).toEqual(["abc\n", "e1", []])
      expect(w.state.closed).toBe(w.state.opened)
    }))

  it.effect("a queued job: without -f, no output and one note; with -f, it waits for the start and follows", () =>
    Effect.gen(function*() {
      const once = world({ at: "queued" })
      expect(yield* once.follow(false)).toBeNull()
      expect([once.out(), once.notes]).toEqual(["", ["pmjq: job: queued, not started yet: no output"]])

      const w = world({ at: "queued" })
      const fiber = yield* Effect.fork(w.follow(true))
      yield* Effect.yieldNow()
      yield* poll
      yield* poll
      expect(w.notes).toEqual(["pmjq: job: queued, not started yet; its output follows once it starts"])
      // Claimed: the spawn has not made its files yet.
      w.state.seen = running
      yield* poll
      const out = w.make(RUN.out, "started\n")
      w.make(RUN.err)
      yield* poll
      expect(w.out()).toBe("started\n")
      w.append(out, "done\n")
      w.names.set(`${ENTRY}.out`, out)
      w.state.seen = ended({ exitCode: 0, outcome: "succeeded" })
      yield* poll
      expect((yield* Fiber.join(fiber))?.outcome).toBe("succeeded")
      expect(w.out()).toBe("started\ndone\n")
      expect(w.notes).toHaveLength(1)
    }))

  it.effect("an archived job: all its output, and its record", () =>
    Effect.gen(function*() {
      const w = world(ended())
      w.make(`${ENTRY}.out`, "x".repeat(3 * CHUNK + 5))
      w.make(`${ENTRY}.err`, "oops\n")
      const end = yield* w.follow(false)
      expect(end?.entry).toBe(ENTRY)
      expect(w.out()).toHaveLength(3 * CHUNK + 5)
      expect(w.err()).toBe("oops\n")
      // In bounded reads, never the whole file at once.
      expect(Math.max(...w.reads)).toBe(CHUNK)
    }))

  it.effect("a file that shrinks is followed from its new end, said once", () =>
    Effect.gen(function*() {
      const w = world(running)
      const out = w.make(RUN.out, "0123456789")
      w.make(RUN.err)
      const fiber = yield* Effect.fork(w.follow(true))
      yield* Effect.yieldNow()
      out.data = Buffer.from("012")
      yield* poll
      w.append(out, "new")
      yield* poll
      expect(w.out()).toBe("0123456789new")
      expect(w.notes).toEqual(["pmjq: job: its standard output shrank from 10 to 3 bytes; followed from there"])
      yield* Fiber.interrupt(fiber)
      expect(w.state.closed).toBe(w.state.opened)
    }))

  it.effect("a running file lost to this client (ESTALE: archived and removed by a node on another host): the archived copy from where it stood", () =>
    Effect.gen(function*() {
      const w = world(running)
      const out = w.make(RUN.out, "first ")
      w.make(RUN.err)
      const fiber = yield* Effect.fork(w.follow(true))
      yield* Effect.yieldNow()
      w.append(out, "second ")
      out.lost = true
      yield* poll
      expect(w.out()).toBe("first ")
      // Copied into the archive on another filesystem: another file, the same bytes.
      w.make(`${ENTRY}.out`, "first second third\n")
      w.state.seen = ended()
      yield* poll
      yield* Fiber.join(fiber)
      expect(w.out()).toBe("first second third\n")
    }))

  it.effect("a new run (recovery ran the job again): the last run's output to its end, a note, then the new run's from its start", () =>
    Effect.gen(function*() {
      const w = world(running)
      const old = w.make(RUN.out, "run 1 ")
      w.make(RUN.err)
      const fiber = yield* Effect.fork(w.follow(true))
      yield* Effect.yieldNow()
      w.append(old, "cut")
      // Its node died; the job was queued again, and claimed again under the same name.
      w.state.seen = { at: "queued" }
      yield* poll
      w.state.seen = running
      w.make(RUN.out, "run 2\n")
      w.make(RUN.err)
      yield* poll
      expect(w.out()).toBe("run 1 cutrun 2\n")
      expect(w.notes).toEqual([
        "pmjq: job: queued, not started yet; its output follows once it starts",
        "pmjq: job: run again (its node died while it ran): this run's output follows"
      ])
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("a node that keeps no output (no -o, no -e): said, not waited for", () =>
    Effect.gen(function*() {
      const w = world(running)
      w.state.keeps = false
      const exit = yield* Effect.exit(w.follow(true))
      expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toMatch(/OutputNotKept/)
    }))
})

describe("how a waiting command ends (submit --wait, log -f)", () => {
  it("with the job's status, and a line when pmjq's verdict ended it", () => {
    expect(endOf("j", record(ENTRY))).toEqual({ status: 3, says: null })
    expect(endOf("j", record(ENTRY, { exitCode: null, signal: "SIGKILL" }))).toEqual({ status: 137, says: null })
    expect(endOf("j", record(ENTRY, { outcome: "cancelled", exitCode: null, reason: "cancelled by bob before it started" })))
      .toEqual({ status: 143, says: "pmjq: j was cancelled by bob before it started" })
    expect(endOf("j\x1b", record(ENTRY, { outcome: "rejected", exitCode: null, reason: "refused: a symlink" })))
      .toEqual({ status: 1, says: "pmjq: j\\x1b was rejected: refused: a symlink" })
  })
})

describe("pmjq log, opening an output file", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-log-open-"))
  const me = process.getuid?.() ?? 0
  const open = (name: string, owners: ReadonlyArray<number> = [me]) => Effect.runPromiseExit(openOutput(path.join(dir, name), owners))
  const failure = (exit: Exit.Exit<unknown, unknown>) => (Exit.isFailure(exit) ? JSON.stringify(exit.cause) : "")

  it("reads a regular file of its owners'; none at all is no file, not an error", async () => {
    fs.writeFileSync(path.join(dir, "out"), "hello", { mode: 0o600 })
    const opened = await open("out")
    expect(Exit.isSuccess(opened)).toBe(true)
    const file = Exit.isSuccess(opened) ? opened.value! : null
    expect(Buffer.from(await Effect.runPromise(file!.read(0, 100))).toString()).toBe("hello")
    await Effect.runPromise(file!.close)
    expect(await open("absent")).toEqual(Exit.succeed(null))
  })

  it("never follows a symlink, never waits on a FIFO, refuses another owner's file: 77, nothing read", async () => {
    fs.writeFileSync(path.join(dir, "target"), "secret")
    fs.symlinkSync(path.join(dir, "target"), path.join(dir, "link"))
    expect(failure(await open("link"))).toMatch(/"denied":true/)
    cp.execFileSync("mkfifo", [path.join(dir, "fifo")])
    expect(failure(await open("fifo"))).toMatch(/not a regular file: not the job's output, not read.*"denied":true/)
    expect(failure(await open("target", [me + 1]))).toMatch(/owned by uid \d+, not \d+: not the job's output, not read.*"denied":true/)
  })
})
