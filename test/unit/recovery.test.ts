import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Layer, Logger, Option } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Archive } from "../../src/job/Archive.js"
import { deathOf, makeRecovery, stillRunning } from "../../src/recovery/recovery.js"
import { type ProcessId, startTicks, stillRuns } from "../../src/process/proc.js"
import type { LeftoverNames } from "../../src/spool/layout.js"
import { type Heartbeat, Nodes, type NodeView } from "../../src/spool/Nodes.js"
import { Spool } from "../../src/spool/Spool.js"
import { type Calls, Syscalls } from "../../src/filesystem/syscalls.js"

const NOW = Date.parse("2026-11-29T12:00:00.000Z")
const LEASE = 60_000
const beat = (over: Partial<Heartbeat>): Heartbeat => ({
  node: "n", host: "here", pid: 10, helpers: [11, 12], beatAt: new Date(NOW - 1_000).toISOString(), leaseMs: LEASE,
  archiveDir: null, errorDir: null, running: 0, load: 0, protocol: 1, ...over
})
const view = (heartbeat: Heartbeat | null, over: Partial<NodeView> = {}): NodeView => ({
  node: "n", folder: "/spool/.pmjq/running/n", folderChangedAt: NOW - 1_000, heartbeat, ...over
})
const alive = (pids: Array<number>) => (process: ProcessId) => pids.includes(process.pid)
// A process that surely runs (this one) and a pid that surely is no process's.
const ticks = startTicks(process.pid)!
const gone = 2 ** 22 + 1

describe("when a node is dead", () => {
  it("on this host: as soon as its process and its spawners are all gone", () => {
    expect(deathOf(view(beat({})), NOW, "here", LEASE, alive([10, 11, 12]))).toBeNull()
    // pmjq gone, a spawner still stopping its jobs: not yet.
    expect(deathOf(view(beat({})), NOW, "here", LEASE, alive([12]))).toBeNull()
    expect(deathOf(view(beat({})), NOW, "here", LEASE, alive([]))).toMatch(/process 10 on this host is gone/)
  })

  it("on another host: only once its heartbeat is older than the lease, whatever its pid means here", () => {
    const far = beat({ host: "there" })
    expect(deathOf(view(far), NOW, "here", LEASE, alive([]))).toBeNull()
    const stale = beat({ host: "there", beatAt: new Date(NOW - LEASE - 1).toISOString() })
    expect(deathOf(view(stale), NOW, "here", LEASE, alive([10, 11, 12]))).toMatch(/heartbeat is 60 s old \(lease 60 s\)/)
  })

  it("on this host, by pid and start time: a pid another process holds now does not keep it alive", () => {
    // pmjq and a spawner of the node: their pids held by this process (a
    // user's fork that took them), with other start times.
    const taken = beat({ pid: process.pid, startTicks: ticks + 1, helpers: [process.pid], spawners: [{ pid: process.pid, startTicks: ticks + 2 }] })
    expect(deathOf(view(taken), NOW, "here", LEASE, stillRuns)).toMatch(/process \d+ on this host is gone/)
    const itself = beat({ pid: process.pid, startTicks: ticks, helpers: [], spawners: [] })
    expect(deathOf(view(itself), NOW, "here", LEASE, stillRuns)).toBeNull()
    // Written before pmjq kept start times: a pid that exists may be it; only "gone" is sure.
    expect(deathOf(view(beat({ pid: process.pid, helpers: [] })), NOW, "here", LEASE, stillRuns)).toBeNull()
    expect(deathOf(view(beat({ pid: gone, helpers: [gone] })), NOW, "here", LEASE, stillRuns)).toMatch(/on this host is gone/)
  })

  it("with no heartbeat: once its folder has not changed for a lease", () => {
    expect(deathOf(view(null), NOW, "here", LEASE, alive([]))).toBeNull()
    expect(deathOf(view(null, { folderChangedAt: NOW - LEASE - 1 }), NOW, "here", LEASE, alive([]))).toMatch(/unchanged/)
  })
})

/** A pid that surely belongs to no process any more. */
const deadPid = () => Number(cp.spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" }).stdout.trim())

/** The direct calls, except that the files named in FAULTS fail as a bad disk (or a stale NFS handle) would. */
const faulty = (faults: { readonly readText?: ReadonlyArray<string>; readonly lstat?: ReadonlyArray<string> }) => {
  const direct = Effect.runSync(Effect.provide(Syscalls, Syscalls.Direct))
  const eio = (file: string) => Promise.reject(Object.assign(new Error(`EIO: i/o error, read '${file}'`), { code: "EIO" }))
  const calls: Calls = {
    ...direct,
    readText: (file, uid) => (faults.readText?.includes(path.basename(file)) ? eio(file) : direct.readText(file, uid)),
    lstat: (file) => (faults.lstat?.includes(path.basename(file)) ? eio(file) : direct.lstat(file))
  }
  return Layer.succeed(Syscalls, calls)
}

/** Log lines as text, `message key=value...`, to look at. */
const capture = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ annotations, message }) => {
    const text = Array.isArray(message) ? message.join(" ") : String(message)
    lines.push([text, ...HashMap.toEntries(annotations).map(([k, v]) => `${k}=${String(v)}`)].join(" "))
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

/** A spool where node n1 runs recovery, with the live Nodes, Spool and Archive over CALLS. */
const recoveryIn = (spool: string, archive: string, calls: Layer.Layer<Syscalls>) =>
  makeRecovery({
    node: "n1",
    host: os.hostname(),
    lease: "60 seconds",
    orphans: "requeue",
    maxAttempts: 3,
    archiveDir: Option.some(archive),
    errorDir: Option.none(),
    rejectedDir: path.join(spool, ".pmjq", "rejected")
  }).pipe(
    Effect.provide(Layer.mergeAll(Nodes.layer({ spool, node: "n1" }), Spool.layer({ spool, node: "n1" }), Archive.withoutNotes).pipe(Layer.provide(calls)))
  )

const workspace = () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-recovery-"))
  const spool = path.join(root, "spool")
  fs.mkdirSync(path.join(spool, ".pmjq", "nodes"), { recursive: true, mode: 0o755 })
  return { root, spool, archive: path.join(root, "archive"), nodes: path.join(spool, ".pmjq", "nodes") }
}

const heartbeatOf = (node: string, pid: number, beatAt = new Date()) =>
  JSON.stringify({ node, host: os.hostname(), pid, helpers: [], beatAt: beatAt.toISOString(), leaseMs: 60_000 })

describe("recovery of a dead node's folder", () => {
  it.live("a leftover that cannot be read is logged and left; the folder's other jobs are settled all the same", () =>
    Effect.gen(function*() {
      const t = workspace()
      const folder = path.join(t.spool, ".pmjq", "running", "ghost")
      fs.mkdirSync(folder, { recursive: true, mode: 0o755 })
      fs.writeFileSync(path.join(t.nodes, "ghost"), heartbeatOf("ghost", deadPid()))
      const script = (name: string) => fs.writeFileSync(path.join(folder, name), "#!/bin/sh\n", { mode: 0o755 })
      const record = (name: string) =>
        JSON.stringify({
          name, node: "ghost", host: os.hostname(), pid: 4242, user: "root", attempt: 1, claimedAt: "2026-01-02T03:04:05.000Z",
          startedAt: "2026-01-02T03:04:05.100Z", endedAt: "2026-01-02T03:04:06.000Z", durationMs: 900,
          outcome: "succeeded", exitCode: 0, signal: null, reason: null
        })
      // Ended before its node died: archived as recorded.
      script("done")
      fs.writeFileSync(path.join(folder, ".done.json"), record("done"))
      // Claimed, never ended: queued again.
      script("again")
      // Its record cannot be read; another's script cannot be looked at.
      script("bad-record")
      fs.writeFileSync(path.join(folder, ".bad-record.json"), record("bad-record"))
      script("bad-script")

      const log = capture()
      const recovery = yield* recoveryIn(t.spool, t.archive, faulty({ readText: [".bad-record.json"], lstat: ["bad-script"] }))
      yield* recovery.round.pipe(Effect.provide(log.layer))

      expect(fs.readdirSync(t.archive)).toEqual(["20260102T030406.000Z_done", "20260102T030406.000Z_done.json"])
      expect(fs.readdirSync(t.spool).filter((n) => !n.startsWith("."))).toEqual(["again"])
      // The two that failed stay whole where recovery put them, for the next round.
      const taken = path.join(t.spool, ".pmjq", "running", "n1", ".from-ghost")
      expect(fs.readdirSync(taken).sort()).toEqual([".bad-record.json", "bad-record", "bad-script"])
      const failures = log.lines.filter((l) => l.startsWith("recovery failed; kept, will retry"))
      expect(failures).toEqual([
        expect.stringMatching(/^(?=.* job=bad-record( |$))(?=.* reason=.*EIO)/),
        expect.stringMatching(/^(?=.* job=bad-script( |$))(?=.* reason=.*EIO)/)
      ])
      fs.rmSync(t.root, { recursive: true })
    }))
})

describe("a dead node's archival cut short (its archival mark there)", () => {
  it.live("once its entry was whole: finished by clearing the folder, not by a second entry; before: archived again, and said", () =>
    Effect.gen(function*() {
      const t = workspace()
      const folder = path.join(t.spool, ".pmjq", "running", "ghost")
      fs.mkdirSync(folder, { recursive: true, mode: 0o755 })
      fs.writeFileSync(path.join(t.nodes, "ghost"), heartbeatOf("ghost", deadPid()))
      const elsewhere = "/srv/ghost-archive/20260102T030406.000Z_placed"
      const mark = (file: string, state = "placed") =>
        fs.writeFileSync(path.join(folder, file), JSON.stringify({ entry: elsewhere, host: "far", state, at: "2026-01-02T03:04:07.000Z" }), { mode: 0o600 })
      // Archived by ghost into its own archive dir, killed before it cleared its running folder.
      fs.writeFileSync(path.join(folder, "placed"), "#!/bin/sh\n", { mode: 0o755 })
      fs.writeFileSync(path.join(folder, ".placed.out"), "ran once\n")
      fs.writeFileSync(path.join(folder, ".placed.json"), JSON.stringify({
        name: "placed", node: "ghost", host: "far", pid: 4242, user: "root", attempt: 1, claimedAt: "2026-01-02T03:04:05.000Z",
        startedAt: "2026-01-02T03:04:05.100Z", endedAt: "2026-01-02T03:04:06.000Z", durationMs: 900,
        outcome: "succeeded", exitCode: 0, signal: null, reason: null
      }))
      mark(".placed.done")
      // A cut run's output, archived by an earlier recovery killed while it cleared it: the job is queued again, the output not archived twice.
      fs.writeFileSync(path.join(folder, "rerun"), "#!/bin/sh\n", { mode: 0o755 })
      fs.writeFileSync(path.join(folder, ".rerun.err"), "cut short\n")
      mark("..rerun.done")
      // Killed after the job's last file went, before its mark did.
      mark(".gone.done")
      // Killed while it placed the entry: that one may be whole or not; archived again, and said.
      fs.writeFileSync(path.join(folder, "unsure"), "#!/bin/sh\n", { mode: 0o755 })
      fs.writeFileSync(path.join(folder, ".unsure.json"), JSON.stringify({
        name: "unsure", node: "ghost", host: "far", pid: 4243, user: "root", attempt: 1, claimedAt: "2026-01-02T03:04:05.000Z",
        startedAt: "2026-01-02T03:04:05.100Z", endedAt: "2026-01-02T03:04:06.000Z", durationMs: 900,
        outcome: "succeeded", exitCode: 0, signal: null, reason: null
      }))
      mark(".unsure.done", "placing")

      const log = capture()
      const recovery = yield* recoveryIn(t.spool, t.archive, Syscalls.Direct)
      yield* recovery.round.pipe(Effect.provide(log.layer))

      expect(fs.readdirSync(t.archive)).toEqual(["20260102T030406.000Z_unsure", "20260102T030406.000Z_unsure.json"])
      expect(log.lines).toContainEqual(expect.stringMatching(new RegExp(`^archived again: .*(?=.*job=unsure)(?=.*earlier=far:${elsewhere})`)))
      expect(fs.readdirSync(t.spool).filter((n) => !n.startsWith("."))).toEqual(["rerun"])
      expect(fs.readdirSync(path.join(t.spool, ".pmjq", "running", "n1"))).toEqual([])
      expect(log.lines).toContainEqual(expect.stringMatching(new RegExp(`^recovered: archived as recorded (?=.*entry=${elsewhere})`)))
      fs.rmSync(t.root, { recursive: true })
    }))
})

describe("removing a settled folder", () => {
  it.live("removes asides and lone archival marks, never a job: a claim named like an aside (x.tmp) stays, and so does the folder", () =>
    Effect.gen(function*() {
      const t = workspace()
      const folder = path.join(t.spool, ".pmjq", "running", "n1", ".from-ghost")
      fs.mkdirSync(folder, { recursive: true, mode: 0o755 })
      fs.writeFileSync(path.join(folder, "backup.tmp"), "#!/bin/sh\n", { mode: 0o755 })
      fs.writeFileSync(path.join(folder, ".backup.tmp.json.tmp"), "{")
      const nodes = yield* Nodes.pipe(Effect.provide(Nodes.layer({ spool: t.spool, node: "n1" }).pipe(Layer.provide(Syscalls.Direct))))
      expect(yield* nodes.removeFolder(folder)).toBe(false)
      expect(fs.readdirSync(folder)).toEqual(["backup.tmp"])
      fs.unlinkSync(path.join(folder, "backup.tmp"))
      fs.writeFileSync(path.join(folder, ".gone.done"), "{}")
      expect(yield* nodes.removeFolder(folder)).toBe(true)
      expect(fs.existsSync(folder)).toBe(false)
      fs.rmSync(t.root, { recursive: true })
    }))
})

describe("a heartbeat's aside left alone in .pmjq/nodes (a node killed in its first beat)", () => {
  it.live("goes once its node is dead by what it holds, or at once when torn; a live node's stays", () =>
    Effect.gen(function*() {
      const t = workspace()
      const aside = (node: string, text: string, age = 0) => {
        const file = path.join(t.nodes, `.${node}.tmp`)
        fs.writeFileSync(file, text)
        const at = new Date(Date.now() - age)
        fs.utimesSync(file, at, at)
      }
      aside("killed", heartbeatOf("killed", deadPid()))
      aside("torn-old", "", 120_000)
      aside("torn-new", "{\"node\":")
      aside("alive", heartbeatOf("alive", process.pid))
      // A node that has a heartbeat: its aside goes with it when it is forgotten.
      fs.writeFileSync(path.join(t.nodes, "gone"), heartbeatOf("gone", deadPid()))
      aside("gone", heartbeatOf("gone", deadPid()))

      const recovery = yield* recoveryIn(t.spool, t.archive, Syscalls.Direct)
      const alive = yield* recovery.round
      // A torn one, however young: the chaos test left one behind when its last kill came in a first beat.
      expect(fs.readdirSync(t.nodes).sort()).toEqual([".alive.tmp"])
      // The live node's aside is a live node.
      expect(alive).toBe(1)
      fs.rmSync(t.root, { recursive: true })
    }))
})

describe("what a pmjq that left (--on-stop leave) is adopted by the next", () => {
  const names = (claim: string, hasRecord = false): LeftoverNames => ({
    claim, name: claim, record: `.${claim}.json`, hasRecord, cutRecord: `..${claim}.json`, hasCutRecord: false, stdout: null, stderr: null
  })
  const left = (jobs: Heartbeat["jobs"], spawners: ReadonlyArray<{ pid: number; startTicks: number }>): Heartbeat => ({
    node: "n1", host: "h", pid: gone, startTicks: 1, helpers: spawners.map((s) => s.pid), spawners, beatAt: "2026-11-29T12:00:00.000Z",
    leaseMs: 60_000, archiveDir: null, errorDir: null, running: 1, load: 0, jobs, left: true, protocol: 1
  })
  const spawnerGone = { pid: gone, startTicks: 1 }
  const spawnerHere = { pid: process.pid, startTicks: ticks }

  it("its very process, by pid and start time: adopted with its pid", () => {
    expect(stillRunning(left([{ name: "j", pid: process.pid, startTicks: ticks }], [spawnerGone]), names("j"))).toEqual(
      Option.some({ names: names("j"), process: { pid: process.pid, startTicks: ticks }, helpers: [spawnerGone] })
    )
  })

  it("a pid reused by another process (another start time) is not the job's; with its spawners gone, it is a dead node's job", () => {
    expect(stillRunning(left([{ name: "j", pid: process.pid, startTicks: ticks + 1 }], [spawnerGone]), names("j"))).toEqual(Option.none())
  })

  it("a spawner's pid held by another process is not the spawner: nothing is waited for", () => {
    const taken = { pid: process.pid, startTicks: ticks + 1 }
    expect(stillRunning(left([{ name: "j", pid: gone, startTicks: 1 }], [taken]), names("j"))).toEqual(Option.none())
  })

  it("while a spawner it was left to runs, a job is waited for (its record may be on its way), its process unknown", () => {
    expect(stillRunning(left([{ name: "j", pid: process.pid, startTicks: ticks + 1 }], [spawnerHere]), names("j"))).toEqual(
      Option.some({ names: names("j"), process: null, helpers: [spawnerHere] })
    )
  })

  it("a job with a record ended: archived as recorded, never adopted", () => {
    expect(stillRunning(left([{ name: "j", pid: process.pid, startTicks: ticks }], [spawnerHere]), names("j", true))).toEqual(Option.none())
  })
})
