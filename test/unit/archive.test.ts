import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Archive, reserveEntry } from "../../src/job/Archive.js"
import { type Calls, Syscalls } from "../../src/filesystem/syscalls.js"
import { judge, type JobRecord } from "../../src/record/record.js"
import { parseDuration } from "../../src/cli/duration.js"
import { Duration, Either, Layer } from "effect"

const record = (name: string): JobRecord => ({
  name,
  node: "n",
  host: "h",
  pid: 1,
  user: "u",
  uid: 1000,
  inode: 1,
  attempt: 1,
  claimedAt: "2026-01-01T00:00:00.000Z",
  startedAt: "2026-01-01T00:00:00.000Z",
  endedAt: "2026-01-01T00:00:00.000Z",
  durationMs: 0,
  outcome: "succeeded",
  exitCode: 0,
  signal: null,
  reason: null
})

describe("archive entry reservation", () => {
  it.effect("reservation walks past taken entries", () =>
    Effect.gen(function*() {
      const taken = new Set(["S_job", "S-1_job"])
      const reserve = (e: string) => Effect.sync(() => (taken.has(e) ? false : (taken.add(e), true)))
      expect(yield* reserveEntry(reserve, "S", "job")).toBe("S-2_job")
      expect(yield* reserveEntry(reserve, "S", "job")).toBe("S-3_job")
    }))
})

describe.each([["direct", Syscalls.Direct], ["threaded", Syscalls.Threaded]] as const)("archive store, %s calls", (_, calls) => {
  it.effect("a job named x.out ending with a job named x: both whole, neither overwritten", () =>
    Effect.gen(function*() {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-archive-"))
      const archive = yield* Archive.pipe(Effect.provide(Archive.withoutNotes.pipe(Layer.provide(calls))))
      const stamp = "20260101T000000.000Z"
      const folder = (label: string, files: Record<string, string>) => {
        const run = path.join(root, `run-${label}`)
        fs.mkdirSync(run)
        for (const [name, body] of Object.entries(files)) fs.writeFileSync(path.join(run, name), body, { mode: 0o755 })
        return run
      }
      const other = folder("other", { "x.out": "#!/bin/sh\necho I am x.out\n" })
      const first = yield* archive.store(root, { script: path.join(other, "x.out"), stdout: null, stderr: null, recordFile: path.join(other, ".x.out.json"), record: record("x.out"), owner: null })
      const mine = folder("mine", { x: "#!/bin/sh\necho I am x\n", out: "x's output" })
      const second = yield* archive.store(root, { script: path.join(mine, "x"), stdout: path.join(mine, "out"), stderr: null, recordFile: path.join(mine, ".x.json"), record: record("x"), owner: null })
      expect(path.basename(first)).toBe(`${stamp}_x.out`)
      // STAMP_x.out was the other job's script, so x's entry moved on, whole.
      expect(path.basename(second)).toBe(`${stamp}-1_x`)
      expect(fs.readFileSync(first, "utf8")).toBe("#!/bin/sh\necho I am x.out\n")
      expect(fs.readFileSync(second + ".out", "utf8")).toBe("x's output")
      expect(fs.existsSync(path.join(root, `${stamp}_x`))).toBe(false)
      fs.rmSync(root, { recursive: true })
    }))

  it.effect("storing again after a crash half way completes the same entry, with no second one", () =>
    Effect.gen(function*() {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-archive-"))
      const archive = yield* Archive.pipe(Effect.provide(Archive.withoutNotes.pipe(Layer.provide(calls))))
      const run = path.join(root, "run")
      fs.mkdirSync(run)
      fs.writeFileSync(path.join(run, "job"), "#!/bin/sh\n", { mode: 0o755 })
      fs.writeFileSync(path.join(run, ".job.out"), "out")
      const job = { script: path.join(run, "job"), stdout: path.join(run, ".job.out"), stderr: null, recordFile: path.join(run, ".job.json"), record: record("job"), owner: null }
      yield* archive.settle(job)
      // The first try linked the script and its output, then pmjq died.
      const entry = path.join(root, "20260101T000000.000Z_job")
      fs.linkSync(job.script, entry)
      fs.linkSync(job.stdout, entry + ".out")
      expect(yield* archive.store(root, job)).toBe(entry)
      expect(fs.readdirSync(root).sort()).toEqual(["20260101T000000.000Z_job", "20260101T000000.000Z_job.json", "20260101T000000.000Z_job.out", "run"])
      expect(JSON.parse(fs.readFileSync(entry + ".json", "utf8"))).toEqual(record("job"))
      expect(fs.readdirSync(run)).toEqual([])
      fs.rmSync(root, { recursive: true })
    }))

  it.effect("an interrupted attempt's output is archived without a script", () =>
    Effect.gen(function*() {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-archive-"))
      const archive = yield* Archive.pipe(Effect.provide(Archive.withoutNotes.pipe(Layer.provide(calls))))
      fs.writeFileSync(path.join(root, ".job.err"), "half")
      const stored = yield* archive.store(root, { script: null, stdout: null, stderr: path.join(root, ".job.err"), recordFile: path.join(root, ".job.json"), record: record("job"), owner: null })
      expect(fs.existsSync(stored)).toBe(false)
      expect(fs.readFileSync(stored + ".err", "utf8")).toBe("half")
      expect(JSON.parse(fs.readFileSync(stored + ".json", "utf8")).name).toBe("job")
      fs.rmSync(root, { recursive: true })
    }))

  it.effect("two same-named jobs ending in the same millisecond keep both entries", () =>
    Effect.gen(function*() {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-archive-"))
      const archive = yield* Archive.pipe(Effect.provide(Archive.withoutNotes.pipe(Layer.provide(calls))))
      const stored: Array<string> = []
      for (const body of ["first", "second"]) {
        const run = path.join(root, `run-${body}`)
        fs.mkdirSync(run)
        fs.writeFileSync(path.join(run, "job"), `#!/bin/sh\necho ${body}\n`, { mode: 0o755 })
        fs.writeFileSync(path.join(run, "out"), body)
        stored.push(yield* archive.store(root, {
          script: path.join(run, "job"),
          stdout: path.join(run, "out"),
          stderr: null,
          recordFile: path.join(run, ".job.json"),
          record: record("job"),
          owner: null
        }))
      }
      expect(stored.map((p) => path.basename(p))).toEqual(["20260101T000000.000Z_job", "20260101T000000.000Z-1_job"])
      expect(fs.readFileSync(stored[0]! + ".out", "utf8")).toBe("first")
      expect(fs.readFileSync(stored[1]! + ".out", "utf8")).toBe("second")
      expect(JSON.parse(fs.readFileSync(stored[1]! + ".json", "utf8")).name).toBe("job")
      // Moved, not copied: nothing left behind in the running folders.
      expect(fs.readdirSync(path.join(root, "run-first"))).toEqual([])
      // No temporary record files remain visible or hidden.
      expect(fs.readdirSync(root).filter((n) => n.endsWith(".tmp"))).toEqual([])
      fs.rmSync(root, { recursive: true })
    }))
})

describe("records", () => {
  it("say why a job did not succeed", () => {
    expect(judge({ _tag: "Exited", exit: { exitCode: 0, signal: null }, interrupted: false, timedOut: null })).toEqual({
      outcome: "succeeded", exitCode: 0, signal: null, reason: null
    })
    expect(judge({ _tag: "Exited", exit: { exitCode: null, signal: "SIGKILL" }, interrupted: false, timedOut: null })).toMatchObject({
      outcome: "failed", signal: "SIGKILL", reason: "killed by SIGKILL"
    })
    expect(judge({ _tag: "Exited", exit: { exitCode: null, signal: "SIGTERM" }, interrupted: true, timedOut: null }).outcome).toBe("interrupted")
    expect(judge({ _tag: "Exited", exit: { exitCode: null, signal: "SIGTERM" }, interrupted: false, timedOut: "5s" })).toEqual({
      outcome: "timed-out", exitCode: null, signal: "SIGTERM", reason: "ran longer than --timeout 5s; its process group was stopped (SIGTERM)"
    })
    expect(judge({ _tag: "NotStarted", reason: "ENOENT" })).toMatchObject({ outcome: "failed", exitCode: null })
  })
})

describe("durations", () => {
  it.each([["500ms", 500], ["30s", 30_000], ["5m", 300_000], ["1h", 3_600_000], ["2", 2_000], ["0.5", 500]])(
    "%s is %d ms",
    (text, millis) => {
      expect(Either.map(parseDuration(text), Duration.toMillis)).toEqual(Either.right(millis))
    }
  )
  it.each(["", "5 minutes", "-1s", "1d", "s"])("%j is refused", (text) => {
    expect(Either.isLeft(parseDuration(text))).toBe(true)
  })
})

describe("an archival cut short once the entry was whole", () => {
  it.effect("finished with another archive dir (another node's, after a takeover): no second entry, the folder cleared", () =>
    Effect.gen(function*() {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-archive-"))
      const run = path.join(root, "run")
      const [first, second] = [path.join(root, "a"), path.join(root, "b")]
      for (const dir of [run, first, second]) fs.mkdirSync(dir)
      fs.writeFileSync(path.join(run, "job"), "#!/bin/sh\n", { mode: 0o755 })
      fs.writeFileSync(path.join(run, ".job.out"), "ran once")
      const job = { script: path.join(run, "job"), stdout: path.join(run, ".job.out"), stderr: null, recordFile: path.join(run, ".job.json"), record: record("job"), owner: null }
      // The node dies as it starts to clear its running folder: its first unlink fails.
      const direct = yield* Syscalls.pipe(Effect.provide(Syscalls.Direct))
      let dying = true
      const calls: Calls = {
        ...direct,
        unlink: (file) => {
          if (!dying || file !== job.script) return direct.unlink(file)
          dying = false
          return Promise.reject(Object.assign(new Error(`EIO: i/o error, unlink '${file}'`), { code: "EIO" }))
        }
      }
      const archive = yield* Archive.pipe(Effect.provide(Archive.withoutNotes.pipe(Layer.provide(Layer.succeed(Syscalls, calls)))))
      yield* archive.settle(job)
      const cut = yield* Effect.flip(archive.store(first, job))
      expect(cut._tag).toBe("ArchiveFailed")
      const entry = path.join(first, "20260101T000000.000Z_job")
      expect(fs.readdirSync(first).sort()).toEqual(["20260101T000000.000Z_job", "20260101T000000.000Z_job.json", "20260101T000000.000Z_job.out"])

      expect(yield* archive.store(second, job)).toBe(entry)
      expect(fs.readdirSync(second)).toEqual([])
      expect(fs.readdirSync(run)).toEqual([])
      expect(fs.readFileSync(entry + ".out", "utf8")).toBe("ran once")
      fs.rmSync(root, { recursive: true })
    }))
})

