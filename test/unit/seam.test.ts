/**
 * The live Spool, Nodes, Archive and recovery on the in-memory filesystem
 * (test/memoryfs.ts), with TestClock: claim races between nodes, each row of
 * the README's "Crashes and recovery" table, archive clashes and archival
 * retries. No disk, no sleeps; every test looks at the files left.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer, Logger, Option, Ref, TestClock } from "effect"
import { Archive } from "../../src/job/Archive.js"
import { runJob } from "../../src/job/Job.js"
import { ProcessRunner } from "../../src/job/Runner.js"
import { Users } from "../../src/owners/Users.js"
import type { JobRecord } from "../../src/record/record.js"
import { makeRecovery, type Orphans } from "../../src/recovery/recovery.js"
import { stamp } from "../../src/spool/layout.js"
import { Nodes } from "../../src/spool/Nodes.js"
import { Spool } from "../../src/spool/Spool.js"
import { Syscalls } from "../../src/filesystem/syscalls.js"
import { fakeRunner, fakeUsers, jobSettings } from "../fakes.js"
import { makeMemoryFs, type MemoryFs } from "../memoryfs.js"
import { makeQuiet } from "../quiet.js"

const NOW = Date.parse("2026-11-29T12:00:00.000Z")
const STAMP = stamp(new Date(NOW))
const LEASE = 60_000
const me = process.getuid?.() ?? 0
const SPOOL = "/spool"
const ARCHIVE = "/archive"
const ERRORS = "/errors"
const RUNNING = `${SPOOL}/.pmjq/running`
const quiet = Logger.replace(Logger.defaultLogger, Logger.none)

/** A memory filesystem holding an empty spool, its clock the test's. */
const world = Effect.gen(function*() {
  yield* TestClock.setTime(NOW)
  const clock = yield* Effect.clock
  const m = makeMemoryFs({ now: () => clock.unsafeCurrentTimeMillis(), uid: me, gid: me })
  m.mkdirs(SPOOL, 0o755)
  return m
})

const services = (m: MemoryFs, node: string) =>
  Layer.mergeAll(Nodes.layer({ spool: SPOOL, node }), Spool.layer({ spool: SPOOL, node }), Archive.withoutNotes).pipe(
    Layer.provide(Layer.succeed(Syscalls, m.calls))
  )

const build = <A, E, R extends Spool | Nodes | Archive>(m: MemoryFs, node: string, use: Effect.Effect<A, E, R>) =>
  Effect.provide(use, services(m, node))

// What a test forks is watched: `settle` lets it run until it all waits (the
// memory filesystem's promises resolved), no wall time waited.
const watching = makeQuiet()
const settle = watching.settle

const job = (m: MemoryFs, file: string, body = "#!/bin/sh\n") => m.write(file, body, 0o755)

const record = (name: string, over: Partial<JobRecord> = {}): JobRecord => ({
  name, node: "ghost", host: "elsewhere", pid: 4242, user: "root", uid: me, inode: null, attempt: 1,
  claimedAt: "2026-11-29T11:00:00.000Z", startedAt: "2026-11-29T11:00:00.100Z", endedAt: "2026-11-29T11:00:01.000Z",
  durationMs: 900, outcome: "succeeded", exitCode: 0, signal: null, reason: null, ...over
})

/** A node on another host, its heartbeat (by default older than the lease), and its running folder. */
const deadNode = (m: MemoryFs, node = "ghost", beatAt = NOW - LEASE - 1) => {
  m.mkdirs(`${SPOOL}/.pmjq/nodes`)
  m.write(`${SPOOL}/.pmjq/nodes/${node}`, JSON.stringify({ node, host: "elsewhere", pid: 1, helpers: [], beatAt: new Date(beatAt).toISOString(), leaseMs: LEASE }))
  m.mkdirs(`${RUNNING}/${node}`)
  return `${RUNNING}/${node}`
}

const recoveryOn = (m: MemoryFs, over: { orphans?: Orphans; maxAttempts?: number; errorDir?: string } = {}) =>
  build(m, "n1", makeRecovery({
    node: "n1",
    host: "here",
    lease: LEASE,
    orphans: over.orphans ?? "requeue",
    maxAttempts: over.maxAttempts ?? 3,
    archiveDir: Option.some(ARCHIVE),
    errorDir: Option.fromNullable(over.errorDir),
    rejectedDir: `${SPOOL}/.pmjq/rejected`
  }))

const jsonOf = (m: MemoryFs, file: string) => JSON.parse(m.read(file)) as JobRecord
const queued = (m: MemoryFs) => m.list(SPOOL).filter((n) => !n.startsWith("."))

describe("claims between nodes on one filesystem", () => {
  it.effect("two nodes claim the same name: exactly one wins, the other gets none", () =>
    Effect.gen(function*() {
      const m = yield* world
      job(m, `${SPOOL}/job`)
      const [a, b] = yield* Effect.all([build(m, "n1", Spool), build(m, "n2", Spool)])
      const claims = yield* Effect.all([a.claim("job"), b.claim("job")], { concurrency: 2 })
      expect(claims.filter(Option.isSome)).toHaveLength(1)
      const winner = Option.isSome(claims[0]) ? "n1" : "n2"
      expect(m.list(`${RUNNING}/${winner}`)).toEqual(["job"])
      expect(m.list(`${RUNNING}/${winner === "n1" ? "n2" : "n1"}`)).toEqual([])
      expect(queued(m)).toEqual([])
      expect(Option.getOrThrow(claims[0]!.pipe(Option.orElse(() => claims[1]!)))).toMatchObject({ name: "job", attempt: 1, claimedAt: NOW })
    }))

  it.effect("a name that became a folder before the claim's rename is put back, not claimed", () =>
    Effect.gen(function*() {
      const m = yield* world
      const spool = yield* build(m, "n1", Spool)
      m.mkdirs(`${SPOOL}/job`)
      m.write(`${SPOOL}/job/inside`, "x")
      expect(yield* spool.claim("job")).toEqual(Option.none())
      expect(queued(m)).toEqual(["job"])
      expect(m.read(`${SPOOL}/job/inside`)).toBe("x")
      expect(m.list(`${RUNNING}/n1`)).toEqual([])
    }))

  it.effect("two nodes notice the same death: one takes the folder over, the other gets none", () =>
    Effect.gen(function*() {
      const m = yield* world
      const folder = deadNode(m)
      job(m, `${folder}/job`)
      const [a, b] = yield* Effect.all([build(m, "n1", Nodes), build(m, "n2", Nodes)])
      const taken = yield* Effect.all([a.takeOver("ghost"), b.takeOver("ghost")], { concurrency: 2 })
      expect(taken.filter(Option.isSome)).toHaveLength(1)
      expect(m.exists(folder)).toBe(false)
      expect(m.list(Option.getOrThrow(taken[0]!.pipe(Option.orElse(() => taken[1]!))))).toEqual(["job"])
    }))
})

describe("recovery of a dead node's folder (README: Crashes and recovery)", () => {
  it.effect("a job with its record is archived as recorded, never run again", () =>
    Effect.gen(function*() {
      const m = yield* world
      const folder = deadNode(m)
      job(m, `${folder}/job`)
      m.write(`${folder}/.job.out`, "its output")
      m.write(`${folder}/.job.json`, JSON.stringify(record("job", { outcome: "failed", exitCode: 3, reason: "exited with status 3" })))
      yield* (yield* recoveryOn(m)).round.pipe(Effect.provide(quiet))
      const entry = `${ARCHIVE}/20261129T110001.000Z_job`
      expect(m.list(ARCHIVE)).toEqual(["20261129T110001.000Z_job", "20261129T110001.000Z_job.json", "20261129T110001.000Z_job.out"])
      expect(jsonOf(m, `${entry}.json`)).toMatchObject({ outcome: "failed", exitCode: 3 })
      expect(m.read(`${entry}.out`)).toBe("its output")
      expect(queued(m)).toEqual([])
      // The folder and the heartbeat of the dead node are gone.
      expect(m.list(RUNNING)).toEqual(["n1"])
      expect(m.list(`${RUNNING}/n1`)).toEqual([])
      expect(m.list(`${SPOOL}/.pmjq/nodes`)).toEqual([])
    }))

  it.effect("a job without a record is queued again, its attempt counted for its next claim", () =>
    Effect.gen(function*() {
      const m = yield* world
      const folder = deadNode(m)
      job(m, `${folder}/job`)
      const ino = m.stat(`${folder}/job`).ino
      yield* (yield* recoveryOn(m)).round.pipe(Effect.provide(quiet))
      expect(queued(m)).toEqual(["job"])
      expect(m.stat(`${SPOOL}/job`).ino).toBe(ino)
      expect(m.list(ARCHIVE)).toEqual([])
      expect(JSON.parse(m.read(`${SPOOL}/.pmjq/attempts/job`))).toEqual({ [ino]: { attempts: 1, mtimeMs: NOW } })
      const claim = yield* (yield* build(m, "n2", Spool)).claim("job")
      expect(Option.getOrThrow(claim).attempt).toBe(2)
    }))

  it.effect("the cut run's output is archived apart, script-less, as interrupted; the job is queued again", () =>
    Effect.gen(function*() {
      const m = yield* world
      const folder = deadNode(m)
      job(m, `${folder}/job`)
      m.write(`${folder}/.job.out`, "half")
      yield* (yield* recoveryOn(m)).round.pipe(Effect.provide(quiet))
      expect(queued(m)).toEqual(["job"])
      expect(m.list(ARCHIVE)).toEqual([`${STAMP}_job.json`, `${STAMP}_job.out`])
      expect(m.read(`${ARCHIVE}/${STAMP}_job.out`)).toBe("half")
      expect(jsonOf(m, `${ARCHIVE}/${STAMP}_job.json`)).toMatchObject({
        name: "job", node: "ghost", attempt: 1, outcome: "interrupted", reason: "node ghost died while it ran; run again as attempt 2"
      })
    }))

  it.effect("jobs called x and x.cut in one folder: x's cut run never takes x.cut's record for its own", () =>
    Effect.gen(function*() {
      const m = yield* world
      const folder = deadNode(m)
      // x.cut ended and was recorded; x was cut short. Listed newest first: x, then x.cut.
      job(m, `${folder}/x.cut`)
      m.write(`${folder}/.x.cut.out`, "x.cut whole")
      m.write(`${folder}/.x.cut.json`, JSON.stringify(record("x.cut")))
      job(m, `${folder}/x`)
      m.write(`${folder}/.x.out`, "x half")
      yield* (yield* recoveryOn(m)).round.pipe(Effect.provide(quiet))
      expect(queued(m)).toEqual(["x"])
      expect(m.list(ARCHIVE)).toEqual([
        "20261129T110001.000Z_x.cut", "20261129T110001.000Z_x.cut.json", "20261129T110001.000Z_x.cut.out", `${STAMP}_x.json`, `${STAMP}_x.out`
      ])
      expect(m.read(`${ARCHIVE}/20261129T110001.000Z_x.cut.out`)).toBe("x.cut whole")
      expect(jsonOf(m, `${ARCHIVE}/20261129T110001.000Z_x.cut.json`)).toMatchObject({ name: "x.cut", outcome: "succeeded" })
      expect(m.read(`${ARCHIVE}/${STAMP}_x.out`)).toBe("x half")
      expect(jsonOf(m, `${ARCHIVE}/${STAMP}_x.json`)).toMatchObject({ name: "x", outcome: "interrupted" })
      expect(m.list(`${RUNNING}/n1`)).toEqual([])
    }))

  it.effect("with --orphans fail, a job without a record goes to the error dir as interrupted", () =>
    Effect.gen(function*() {
      const m = yield* world
      const folder = deadNode(m)
      job(m, `${folder}/job`)
      yield* (yield* recoveryOn(m, { orphans: "fail", errorDir: ERRORS })).round.pipe(Effect.provide(quiet))
      expect(queued(m)).toEqual([])
      expect(m.list(ARCHIVE)).toEqual([])
      expect(m.list(ERRORS)).toEqual([`${STAMP}_job`, `${STAMP}_job.json`])
      expect(jsonOf(m, `${ERRORS}/${STAMP}_job.json`)).toMatchObject({ outcome: "interrupted", reason: "node ghost died while it ran (--orphans fail)" })
    }))

  it.effect("at --max-attempts, a job without a record is failed as interrupted, not run again", () =>
    Effect.gen(function*() {
      const m = yield* world
      const folder = deadNode(m)
      job(m, `${folder}/job`)
      // Two earlier runs were cut short: this was the third of three.
      const { ino, mtimeMs } = m.stat(`${folder}/job`)
      m.mkdirs(`${SPOOL}/.pmjq/attempts`)
      m.write(`${SPOOL}/.pmjq/attempts/job`, JSON.stringify({ [ino]: { attempts: 2, mtimeMs } }), 0o600)
      yield* (yield* recoveryOn(m, { maxAttempts: 3 })).round.pipe(Effect.provide(quiet))
      expect(queued(m)).toEqual([])
      expect(m.list(ARCHIVE)).toEqual([`${STAMP}_job`, `${STAMP}_job.json`])
      expect(jsonOf(m, `${ARCHIVE}/${STAMP}_job.json`)).toMatchObject({
        outcome: "interrupted", attempt: 3, reason: "node ghost died while it ran, attempt 3 of --max-attempts 3"
      })
    }))

  it.effect("output or a record whose script had already left is archived (a crash in the middle of archival)", () =>
    Effect.gen(function*() {
      const m = yield* world
      const folder = deadNode(m)
      m.write(`${folder}/.done.json`, JSON.stringify(record("done")))
      m.write(`${folder}/.done.out`, "done's output")
      m.write(`${folder}/.cut.err`, "cut's errors")
      yield* (yield* recoveryOn(m)).round.pipe(Effect.provide(quiet))
      expect(m.list(ARCHIVE)).toEqual([
        "20261129T110001.000Z_done.json", "20261129T110001.000Z_done.out", `${STAMP}_cut.err`, `${STAMP}_cut.json`
      ])
      expect(jsonOf(m, `${ARCHIVE}/${STAMP}_cut.json`)).toMatchObject({ outcome: "interrupted", reason: "output of a run cut short when node ghost died" })
      expect(queued(m)).toEqual([])
      expect(m.list(`${RUNNING}/n1`)).toEqual([])
    }))

  it.effect("a folder taken over twice nests, and both nodes' jobs are settled", () =>
    Effect.gen(function*() {
      const m = yield* world
      const folder = deadNode(m)
      // ghost had itself taken over older's folder, then died before emptying it.
      m.mkdirs(`${folder}/.from-older`)
      m.write(`${folder}/.from-older/.old.json`, JSON.stringify(record("old", { node: "older" })))
      job(m, `${folder}/.from-older/old`)
      job(m, `${folder}/young`)
      yield* (yield* recoveryOn(m)).round.pipe(Effect.provide(quiet))
      expect(m.list(ARCHIVE)).toEqual(["20261129T110001.000Z_old", "20261129T110001.000Z_old.json"])
      expect(jsonOf(m, `${ARCHIVE}/20261129T110001.000Z_old.json`).node).toBe("older")
      expect(queued(m)).toEqual(["young"])
      expect(m.list(`${RUNNING}/n1`)).toEqual([])
    }))

  it.effect("a node on another host is left alone until its heartbeat is older than the lease", () =>
    Effect.gen(function*() {
      const m = yield* world
      // Its last heartbeat is fresh.
      const folder = deadNode(m, "ghost", NOW)
      job(m, `${folder}/job`)
      const recovery = yield* recoveryOn(m)
      expect(yield* recovery.round.pipe(Effect.provide(quiet))).toBe(1)
      expect(m.list(folder)).toEqual(["job"])
      yield* TestClock.adjust(LEASE + 1)
      expect(yield* recovery.round.pipe(Effect.provide(quiet))).toBe(0)
      expect(m.exists(folder)).toBe(false)
      expect(queued(m)).toEqual(["job"])
    }))
})

/**
 * SPOOL/job claimed by node "node" and run to its archive with RUNNER, forked
 * and watched (see settle). Its output is there as the spawner captures it,
 * and its archival retries outlive its fiber, as the daemon's keep makes them.
 */
const runClaimed = (m: MemoryFs, runner: ProcessRunner["Type"]) =>
  Effect.gen(function*() {
    const spool = yield* Spool
    job(m, `${SPOOL}/job`)
    const claim = Option.getOrThrow(yield* spool.claim("job"))
    m.write(`${RUNNING}/node/.job.out`, "out", 0o600)
    m.write(`${RUNNING}/node/.job.err`, "", 0o600)
    yield* runJob(claim, { ...jobSettings, archiveDir: Option.some(ARCHIVE) }, {
      processEnded: Effect.void,
      keep: (retries) => Effect.asVoid(Effect.forkDaemon(retries)),
      started: () => Effect.void,
      archived: () => Effect.void,
      finished: () => Effect.void,
      phase: () => (effect) => effect,
      cancel: yield* Deferred.make<string>(),
      waiting: yield* Ref.make(Option.none<Fiber.RuntimeFiber<unknown, unknown>>())
    })
  }).pipe(
    Effect.provide(Layer.mergeAll(services(m, "node"), Layer.succeed(ProcessRunner, runner), Layer.succeed(Users, fakeUsers))),
    Effect.provide(quiet),
    watching.watch,
    Effect.fork
  )

describe("archival on the memory filesystem", () => {
  const finished = (m: MemoryFs, run: string, body: string) => {
    m.mkdirs(run)
    job(m, `${run}/job`, `#!/bin/sh\necho ${body}\n`)
    m.write(`${run}/.job.out`, body)
    return { script: `${run}/job`, stdout: `${run}/.job.out`, stderr: null, recordFile: `${run}/.job.json`, record: record("job"), owner: null }
  }

  it.effect("two same-named jobs ending in the same millisecond keep both entries", () =>
    Effect.gen(function*() {
      const m = yield* world
      const archive = yield* build(m, "n1", Archive)
      const first = yield* archive.store(ARCHIVE, finished(m, "/run1", "first"))
      const second = yield* archive.store(ARCHIVE, finished(m, "/run2", "second"))
      expect([first, second]).toEqual([`${ARCHIVE}/20261129T110001.000Z_job`, `${ARCHIVE}/20261129T110001.000Z-1_job`])
      expect([m.read(`${first}.out`), m.read(`${second}.out`)]).toEqual(["first", "second"])
      expect(jsonOf(m, `${second}.json`)).toEqual(record("job"))
      expect([m.list("/run1"), m.list("/run2")]).toEqual([[], []])
    }))

  it.effect("a sweep removes the asides a crash left an hour ago, and nothing else", () =>
    Effect.gen(function*() {
      const m = yield* world
      const archive = yield* build(m, "n1", Archive)
      m.mkdirs(ARCHIVE)
      const aside = (token: string) => `${ARCHIVE}/.pmjq-copy-${token}.tmp`
      // Left by a crash between the copy and its link into place.
      m.write(aside("0123456789abcdef"), "half a copy")
      m.write(`${ARCHIVE}/${STAMP}_job`, "#!/bin/sh\n", 0o755)
      m.write(`${ARCHIVE}/.pmjq-copy-not-hex.tmp`, "not pmjq's name")
      m.write(aside("1111111111111111"), "left too, but cannot be looked at")
      m.mkdirs(aside("dddddddddddddddd"))
      m.symlink("/etc/passwd", aside("5555555555555555"))
      m.mkdirs("/run")
      m.write("/run/.job.json", "an old record")
      yield* TestClock.adjust("30 minutes")
      // A copy under way, and a record staged by a link (which sets its ctime,
      // not its mtime): younger than an hour when the sweep runs.
      m.write(aside("fedcba9876543210"), "being copied")
      yield* Effect.promise(() => m.calls.link("/run/.job.json", aside("eeeeeeeeeeeeeeee")))
      yield* TestClock.adjust("30 minutes")
      m.faults.push({ op: "lstat", on: (f) => f === aside("1111111111111111"), code: "EIO" })
      expect(yield* archive.sweep(ARCHIVE)).toBe(1)
      expect(m.list(ARCHIVE)).toEqual([
        ".pmjq-copy-1111111111111111.tmp", ".pmjq-copy-5555555555555555.tmp", ".pmjq-copy-dddddddddddddddd.tmp",
        ".pmjq-copy-eeeeeeeeeeeeeeee.tmp", ".pmjq-copy-fedcba9876543210.tmp", ".pmjq-copy-not-hex.tmp", `${STAMP}_job`
      ])
      expect(yield* archive.sweep("/nowhere")).toBe(0)
      // Not pmjq's own: refused, nothing removed.
      m.mkdirs("/theirs", 0o777)
      m.write("/theirs/.pmjq-copy-0123456789abcdef.tmp", "a user's")
      yield* TestClock.adjust("2 hours")
      expect(Either.isLeft(yield* Effect.either(archive.sweep("/theirs")))).toBe(true)
      expect(m.list("/theirs")).toEqual([".pmjq-copy-0123456789abcdef.tmp"])
    }).pipe(Effect.provide(quiet)))

  it.effect("an archive on another filesystem gets copies, and the running folder is emptied", () =>
    Effect.gen(function*() {
      const m = yield* world
      m.mkdirs(ARCHIVE)
      m.mount(ARCHIVE)
      const archive = yield* build(m, "n1", Archive)
      const entry = yield* archive.store(ARCHIVE, finished(m, "/run", "copied"))
      expect(m.read(`${entry}.out`)).toBe("copied")
      expect(m.stat(entry).mode & 0o777).toBe(0o755)
      expect(m.list("/run")).toEqual([])
    }))

  it.effect("a store that fails with ENOSPC is retried on the clock; the job is kept whole in its running folder until it works", () =>
    Effect.gen(function*() {
      const m = yield* world
      // The first three stores fail at their first link into the archive.
      m.faults.push({ op: "link", on: (f) => f.startsWith(`${ARCHIVE}/`), code: "ENOSPC", times: 3 })
      const runner = yield* fakeRunner
      const running = yield* runClaimed(m, runner.service)
      // The job's process exits at once (on the test clock).
      yield* settle
      yield* TestClock.adjust(0)
      yield* settle
      yield* Fiber.join(running)
      const kept = () => m.list(`${RUNNING}/node`)
      expect(kept()).toEqual([".job.err", ".job.json", ".job.out", "job"])
      expect(jsonOf(m, `${RUNNING}/node/.job.json`)).toMatchObject({ name: "job", outcome: "succeeded" })
      expect(m.list(ARCHIVE)).toEqual([])
      // Retried 1 s later, then 1 s after that: both still fail.
      yield* TestClock.adjust("1 second")
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(kept()).toEqual([".job.err", ".job.json", ".job.out", "job"])
      expect(m.list(ARCHIVE)).toEqual([])
      // The next retry, 2 s later, works.
      yield* TestClock.adjust("2 seconds")
      yield* settle
      expect(m.list(ARCHIVE)).toEqual([`${STAMP}_job`, `${STAMP}_job.err`, `${STAMP}_job.json`, `${STAMP}_job.out`])
      expect(jsonOf(m, `${ARCHIVE}/${STAMP}_job.json`)).toMatchObject({ name: "job", outcome: "succeeded" })
      expect(m.read(`${ARCHIVE}/${STAMP}_job.out`)).toBe("out")
      expect(kept()).toEqual([])
    }))
})

describe("what survives a power cut (README: Durability): each promised transition is synced before what publishes it", () => {
  /** Where in the changes made (MemoryFs.done) the first one OP on a path PATHS matches is; -1 when none. */
  const indexOf = (m: MemoryFs, op: string, paths: (p: ReadonlyArray<string>) => boolean, from = 0) =>
    m.done.findIndex((d, i) => i >= from && d.op === op && paths(d.paths))
  const lastIndexOf = (m: MemoryFs, op: string, paths: (p: ReadonlyArray<string>) => boolean) =>
    m.done.reduce((last, d, i) => (d.op === op && paths(d.paths) ? i : last), -1)

  /** A job claimed and run to its archive, the fake process exiting at once; what was done when it was spawned. */
  const runOne = (m: MemoryFs) =>
    Effect.gen(function*() {
      const runner = yield* fakeRunner
      const doneAtSpawn: Array<number> = []
      const spawning = ProcessRunner.of({
        ...runner.service,
        spawn: (spec) => Effect.zipRight(Effect.sync(() => void doneAtSpawn.push(m.done.length)), runner.service.spawn(spec))
      })
      const running = yield* runClaimed(m, spawning)
      yield* settle
      yield* TestClock.adjust(0)
      yield* settle
      yield* Fiber.join(running)
      return doneAtSpawn
    })

  it.effect("the claim: its running folder is synced after the claim's rename and before the job is spawned", () =>
    Effect.gen(function*() {
      const m = yield* world
      const [spawnedAt] = yield* runOne(m)
      const claimed = indexOf(m, "rename", ([from, to]) => from === `${SPOOL}/job` && to === `${RUNNING}/node/job`)
      const synced = indexOf(m, "syncDir", ([dir]) => dir === `${RUNNING}/node`, claimed)
      expect(claimed).toBeGreaterThanOrEqual(0)
      expect(synced).toBeGreaterThan(claimed)
      expect(synced).toBeLessThan(spawnedAt!)
    }))

  it.effect("the record: its bytes on disk before the rename that names it, its name before its archival; the archive synced before the running folder is emptied", () =>
    Effect.gen(function*() {
      const m = yield* world
      yield* runOne(m)
      const record = `${RUNNING}/node/.job.json`
      const written = indexOf(m, "writeNew", ([file]) => file === `${record}.tmp`)
      expect(m.done[written]?.durable).toBe(true)
      const named = indexOf(m, "rename", ([from, to]) => from === `${record}.tmp` && to === record)
      expect(named).toBeGreaterThan(written)
      // Its name on disk before the archival: an ended job is never run again.
      expect(indexOf(m, "syncDir", ([dir]) => dir === `${RUNNING}/node`, named)).toBeLessThan(indexOf(m, "link", ([, to]) => to.startsWith(`${ARCHIVE}/`)))
      expect(indexOf(m, "syncDir", ([dir]) => dir === `${RUNNING}/node`, named)).toBeGreaterThan(named)
      const lastLinkIn = lastIndexOf(m, "link", ([, to]) => to.startsWith(`${ARCHIVE}/`))
      const archiveSynced = indexOf(m, "syncDir", ([dir]) => dir === ARCHIVE, lastLinkIn)
      const firstGone = indexOf(m, "unlink", ([file]) => file.startsWith(`${RUNNING}/node/`) && !file.endsWith(".tmp"))
      expect(lastLinkIn).toBeGreaterThanOrEqual(0)
      expect(archiveSynced).toBeGreaterThan(lastLinkIn)
      expect(firstGone).toBeGreaterThan(archiveSynced)
      expect(m.list(`${RUNNING}/node`)).toEqual([])
      expect(jsonOf(m, `${ARCHIVE}/${STAMP}_job.json`)).toMatchObject({ name: "job", outcome: "succeeded" })
    }))

  it.effect("an archive on another filesystem: every copy is on disk before it is linked in, and the archive synced before the originals go", () =>
    Effect.gen(function*() {
      const m = yield* world
      m.mkdirs(ARCHIVE)
      m.mount(ARCHIVE)
      yield* runOne(m)
      const copies = m.done.flatMap((d, i) => (d.op === "copyNew" ? [i] : []))
      expect(copies.length).toBe(4) // script, .out, .err, record
      for (const i of copies) {
        expect(m.done[i]!.durable).toBe(true)
        expect(indexOf(m, "link", ([from]) => from === m.done[i]!.paths[1], i)).toBeGreaterThan(i)
      }
      const lastLinkIn = lastIndexOf(m, "link", ([, to]) => to.startsWith(`${ARCHIVE}/`) && !to.includes(".pmjq-copy-"))
      const archiveSynced = indexOf(m, "syncDir", ([dir]) => dir === ARCHIVE, lastLinkIn)
      expect(archiveSynced).toBeGreaterThan(lastLinkIn)
      expect(indexOf(m, "unlink", ([file]) => file.startsWith(`${RUNNING}/node/`) && !file.endsWith(".tmp"))).toBeGreaterThan(archiveSynced)
      expect(m.list(ARCHIVE)).toEqual([`${STAMP}_job`, `${STAMP}_job.err`, `${STAMP}_job.json`, `${STAMP}_job.out`])
    }))
})
