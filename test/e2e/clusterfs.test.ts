/**
 * pmjq on the filesystems clusters share a spool on, the way a cluster uses
 * them: one volume (a shared spool), two FUSE mounts of it as two machines
 * (each pmjq in its own UTS namespace, with its own host name), an archive
 * dir local to each machine. GlusterFS with its client caches as they come
 * and with the settings the README recommends, and MooseFS: exactly once,
 * crashes, and a machine that loses the storage.
 *
 * Needs root and the Debian packages glusterfs-server, glusterfs-client,
 * moosefs-master, moosefs-chunkserver and moosefs-client, which .ci/run
 * installs; MooseFS also needs a non-loopback address.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { glusterMissing, makeMooseVolume, makeVolume, mooseMissing, startGlusterd, stopGlusterd, type Volume } from "./volumes.js"
import { BIN, lastWords, type Running, runsHere, sizeOf, tempDir, waitFor, waitWhileProgressing, watched } from "./harness.js"

/** pmjq on machine HOST: its own UTS namespace and host name. */
const startOn = (host: string, args: ReadonlyArray<string>, cwd: string): Running =>
  watched(cp.spawn("unshare", ["--uts", "sh", "-c", `hostname ${host} && exec "$0" "$@"`, process.execPath, BIN, ...args], {
    cwd,
    stdio: ["ignore", "pipe", "pipe"]
  }))

/**
 * A cluster test fails when it stops making progress (see
 * waitWhileProgressing), not on a clock: this budget only catches a wait that
 * forgot to say what progress is, far above what a slow machine takes.
 */
const CLUSTER_TEST = 20 * 60_000

interface Setup {
  /** Whether it can run here (why not is said once). */
  readonly runs: boolean
  readonly make: () => Volume | Promise<Volume>
  /** One mount sees another's changes at once (GlusterFS with the recommended settings, MooseFS). */
  readonly coherent: boolean
}

const gluster = runsHere("the GlusterFS tests", glusterMissing())
const moose = runsHere("the MooseFS tests", mooseMissing())
const setups: Record<string, Setup> = {
  "GlusterFS, default client caches": { runs: gluster, make: () => makeVolume("def", false), coherent: false },
  "GlusterFS, recommended settings": { runs: gluster, make: () => makeVolume("rec", true), coherent: true },
  "MooseFS": { runs: moose, make: () => makeMooseVolume("t"), coherent: true }
}

let startedGlusterd = false
beforeAll(async () => {
  if (gluster) startedGlusterd = await startGlusterd()
})
afterAll(() => {
  if (startedGlusterd) stopGlusterd()
})

/**
 * A job that says when it starts and ends (or is stopped: "cut") in a ledger
 * on the local disk, not the volume; padded so that a script read
 * half-written would lose its end. Stopped, it dies of the signal, as a job
 * that does not catch it would: so it counts as stopped, and runs again.
 *
 * While it runs it holds an exclusive flock(2) on a local file named after
 * the job: a second run that starts while the first is still alive finds it
 * taken and writes "overlap", with the holder's pid and node (each run writes
 * its own into the file). The kernel lets the lock go only when the last
 * process holding it dies, so this holds for a run killed outright too (a
 * node cut off from the spool SIGKILLs its jobs), which leaves no end in the
 * ledger to compare times with. flock(1)'s own output goes to /dev/null: it
 * checks that its stdout closes well, and the job's is on the volume, where a
 * mount dying under it made flock exit 1 with the lock taken.
 */
const script = (ledger: string, sleep = "0", gated = false) =>
  `#!/bin/sh\nexec 9>>${ledger}.lock.$PMJQ_JOB\nflock -n -E 75 9 >/dev/null 2>&1; held=$?\n` +
  `[ $held = 75 ] && echo "overlap $PMJQ_JOB $PMJQ_NODE $(date +%s.%N) holder=[$(tail -n 1 ${ledger}.lock.$PMJQ_JOB)]" >> ${ledger}\n` +
  `[ $held = 0 ] || [ $held = 75 ] || echo "lockfail $PMJQ_JOB $PMJQ_NODE $(date +%s.%N) flock=$held" >> ${ledger}\n` +
  `echo "$$ $PMJQ_NODE" >&9\n` +
  `echo "start $PMJQ_JOB $PMJQ_NODE $(date +%s.%N)" >> ${ledger}\n` +
  (gated ? `while [ ! -e ${ledger}.open ]; do sleep 0.05; done\n` : "") +
  `trap 'echo "cut $PMJQ_JOB $PMJQ_NODE $(date +%s.%N)" >> ${ledger}; trap - TERM; kill -TERM $$' TERM\n${"# padding\n".repeat(60)}` +
  `sleep ${sleep}\necho "end $PMJQ_JOB $PMJQ_NODE $(date +%s.%N)" >> ${ledger}\n`

/**
 * A gated job waits at its start until the ledger's gate is open. A test
 * that wants both machines in the race keeps it shut until each has a job
 * running: however slow one machine is to start, the other cannot drain the
 * spool alone.
 */
const openGate = (ledger: string) => fs.writeFileSync(`${ledger}.open`, "")

/** Submits through a mount the documented way: a hidden name, then a rename. */
const submit = (spool: string, name: string, body: string) => {
  const hidden = path.join(spool, `.${name}.tmp`)
  fs.writeFileSync(hidden, body, { mode: 0o755 })
  fs.renameSync(hidden, path.join(spool, name))
}

/** Writes a job in place, then makes it executable (`cat > job; chmod +x job`), as users do. */
const writeInPlace = (spool: string, name: string, body: string) => {
  const file = path.join(spool, name)
  fs.writeFileSync(file, body.slice(0, 40), { mode: 0o644 })
  fs.appendFileSync(file, body.slice(40))
  fs.chmodSync(file, 0o755)
}

interface Run {
  readonly job: string
  readonly node: string
  readonly start: number
  /** When it ended or was stopped; null while it runs (or if it was killed outright). */
  readonly end: number | null
  readonly cut: boolean
}

/** Each run the ledger tells of, start to end (null: cut short). */
const runs = (ledger: string): Array<Run> => {
  const open = new Map<string, Run>()
  const all: Array<Run> = []
  for (const line of fs.existsSync(ledger) ? fs.readFileSync(ledger, "utf8").split("\n").filter(Boolean) : []) {
    const [what, job, node, at] = line.split(" ") as [string, string, string, string]
    const key = `${job} ${node}`
    if (what === "overlap" || what === "lockfail") continue
    if (what === "start") {
      const run: Run = { job, node, start: Number(at), end: null, cut: false }
      open.set(key, run)
      all.push(run)
    } else {
      const run = open.get(key)!
      all[all.indexOf(run)] = { ...run, end: Number(at), cut: what === "cut" }
      open.delete(key)
    }
  }
  return all
}

/**
 * Jobs that had two runs alive at once, the one thing a lease must never
 * allow: each run that found the job's lock held (see `script`), with where
 * it ran and what the ledger says of the job, for whoever reads a failure.
 */
const overlapping = (ledger: string) => {
  const all = fs.existsSync(ledger) ? fs.readFileSync(ledger, "utf8").split("\n").filter(Boolean) : []
  // A run whose lock could not be tried says so: it might have overlapped unseen.
  return all.filter((line) => line.startsWith("overlap ") || line.startsWith("lockfail ")).map((line) => {
    const job = line.split(" ")[1]!
    return [line, ...all.filter((l) => l.split(" ")[1] === job && l !== line)].join("; ")
  })
}

/**
 * Whole archive entries (a record with its script: a job's own entry, not a
 * cut run's output) by job name, over every archive dir; and the names of
 * the jobs that also left a script without a record (a crash during
 * archival: not an entry).
 */
const archived = (dirs: ReadonlyArray<string>) => {
  const whole = new Map<string, number>()
  const partial = new Set<string>()
  for (const dir of dirs) {
    const names = new Set(fs.existsSync(dir) ? fs.readdirSync(dir) : [])
    for (const name of names) {
      if (/\.(out|err|json)$/.test(name) || name.startsWith(".")) continue
      const job = name.replace(/^[^_]*_/, "")
      if (names.has(`${name}.json`)) whole.set(job, (whole.get(job) ?? 0) + 1)
      else partial.add(job)
    }
  }
  return { whole, partial }
}

/** Jobs a node said it archived again after an archival cut short elsewhere. */
const archivedAgain = (log: string) => new Set([...log.matchAll(/archived again: .* job=(\S+)/g)].map((m) => m[1]!))

const stopAll = async (daemons: ReadonlyArray<Running>) => {
  for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill("SIGTERM")
  await Promise.all(daemons.map((d) => d.exited))
}

describe.each(Object.entries(setups))("%s", (_, setup) => {
  let volume: Volume
  beforeAll(async () => {
    if (setup.runs) volume = await setup.make()
  })
  afterAll(async () => {
    await volume?.remove()
  })
  const recommended = setup.coherent

  // 200 jobs prove what 1,000 did: every pick is a race, both machines are in
  // it from the first (the gate), and a tenth are written in place.
  it.runIf(setup.runs)(`exactly once: two machines drain 200 jobs written through one mount, racing for each; each runs once, is archived once, both take work`, async () => {
    const root = tempDir("gluster-once")
    const spool = path.join(volume.mounts[0], "once")
    fs.mkdirSync(spool)
    const ledger = path.join(root, "ledger")
    const JOBS = 200
    const names = Array.from({ length: JOBS }, (_, i) => `j${String(i).padStart(3, "0")}`)
    for (const [i, name] of names.entries()) {
      // One in ten the way users write them by hand: in place, then chmod +x.
      ;(i % 10 === 0 ? writeInPlace : submit)(spool, name, script(ledger, "0", true))
    }
    const archives = ["a", "b"].map((m) => path.join(root, `archive-${m}`))
    const daemons = ["a", "b"].map((m, i) =>
      startOn(`host-${m}`, ["--drain", "--node-id", m, "-j", "4", "-o", archives[i]!, "--poll", "1s", path.join(volume.mounts[i as 0 | 1], "once")], root)
    )
    const over = () => daemons.every((d) => d.child.exitCode !== null || d.child.signalCode !== null)
    const why = () => lastWords(daemons)
    await waitWhileProgressing("both machines running a job", () => over() || ["a", "b"].every((m) => runs(ledger).some((r) => r.node === m)), () => sizeOf(ledger), why)
    openGate(ledger)
    await waitWhileProgressing("both drains to end", over, () => sizeOf(ledger), why)
    const exits = await Promise.all(daemons.map((d) => d.exited))
    expect(exits.map((e) => e.code), why()).toEqual([0, 0])

    const all = runs(ledger)
    // Never run twice, never run half-written (a cut script would not reach its end).
    expect(all.length).toBe(JOBS)
    expect(new Set(all.map((r) => r.job)).size).toBe(JOBS)
    expect(all.filter((r) => r.end === null || r.cut).map((r) => r.job)).toEqual([])
    expect(overlapping(ledger)).toEqual([])
    const entries = archived(archives)
    expect(names.filter((n) => entries.whole.get(n) !== 1)).toEqual([])
    expect([...entries.partial]).toEqual([])
    for (const node of ["a", "b"]) expect(all.filter((r) => r.node === node).length).toBeGreaterThan(0)
  }, CLUSTER_TEST)

  it.runIf(setup.runs)(`crashes: machines killed with SIGKILL while jobs run and are archived; the survivor recovers them after the lease, one archive entry each, never two runs at once`, async () => {
    const root = tempDir("gluster-crash")
    const spool = path.join(volume.mounts[0], "crash")
    fs.mkdirSync(spool)
    const ledger = path.join(root, "ledger")
    const JOBS = 80
    const names = Array.from({ length: JOBS }, (_, i) => `c${String(i).padStart(3, "0")}`)
    // The last quarter waits at the gate until both kills are done: however
    // fast the others drain, the second machine still finds jobs to hold when
    // it is killed.
    const body = (name: string) => script(ledger, "0.2", name >= "c060")
    for (const name of names) submit(spool, name, body(name))
    const archive = (m: string) => path.join(root, `archive-${m}`)
    const on = (m: string, mount: 0 | 1, more: ReadonlyArray<string> = []) =>
      // A lease of 10 s: a node that cannot write its heartbeat for half of it
      // stops (cut off). With 6 s, one MooseFS write stalled 1.5 s on a loaded
      // CI machine cut the survivor itself off (a CI failure, not the crash
      // this test makes).
      startOn(`host-${m}`, ["--node-id", m, "-j", "4", "-o", archive(m), "--poll", "1s", "--lease", "10s", ...more, path.join(volume.mounts[mount], "crash")], root)
    const survivor = on("b", 1)
    const victims: Array<Running> = []
    const ended = () => runs(ledger).filter((r) => r.end !== null && !r.cut).length
    // Jobs of 0.2 s on -j 4: a kill lands among runs, records and archival alike.
    const progress = () => sizeOf(ledger)
    const logs = () => lastWords([survivor, ...victims])
    for (const [m, after] of [["a", 15], ["c", 45]] as const) {
      const victim = on(m, 0)
      victims.push(victim)
      await waitWhileProgressing(`${after} jobs ended`, () => ended() >= after, progress, logs)
      await waitWhileProgressing(`node ${m} holding jobs`, () => runs(ledger).some((r) => r.node === m && r.end === null), progress, logs)
      victim.child.kill("SIGKILL")
      await victim.exited
    }
    openGate(ledger)
    // The logs are kept beside the archives, for whoever looks into a failure.
    const keepLogs = () => {
      for (const [m, d] of [["b", survivor], ["a", victims[0]!], ["c", victims[1]!]] as const) fs.writeFileSync(path.join(root, `log-${m}`), d.output().stderr)
    }
    // With the client caches as they come, GlusterFS can refuse a requeue's
    // link(2) with EEXIST for a name no listing shows (write-behind): such a
    // job is kept where it is, retried, and said; it is counted as settled
    // here only in that setup, and checked below to be still there, whole.
    const held = () => (recommended ? new Set<string>() : new Set([...survivor.output().stderr.matchAll(/recovered: kept, a queued job has its name; will retry job=(\S+)/g)].map((m) => m[1]!)))
    // Both dead machines taken over (a's maybe by c, before c was killed too).
    const takenOver = () => ["a", "c"].every((m) => [survivor, ...victims].some((d) => d.output().stderr.includes(`node dead; recovering its jobs dead=${m} `)))
    const done = () => {
      const { whole } = archived(["a", "b", "c"].map(archive))
      const stuck = held()
      return takenOver() && names.every((n) => (whole.get(n) ?? 0) >= 1 || stuck.has(n))
    }
    try {
      const entries = () => [...archived(["a", "b", "c"].map(archive)).whole.values()].reduce((a, b) => a + b, 0)
      await waitWhileProgressing("both dead machines taken over, and every job archived (or, with the default caches, held back and said)", done, () => `${progress()} ${entries()} ${takenOver()}`, logs)
    } finally {
      keepLogs()
    }
    await stopAll([survivor])
    keepLogs()

    const all = runs(ledger)
    expect(overlapping(ledger)).toEqual([])
    // One whole entry per job, whichever machine completed its archival; a
    // second only where a kill fell in the one link between "placing" and
    // the entry's record, and then the machine that took it over says so
    // (the survivor, or c taking a's jobs over before it was killed too).
    const { whole } = archived(["a", "b", "c"].map(archive))
    const said = archivedAgain([survivor, ...victims].map((d) => d.output().stderr).join("\n"))
    expect(names.filter((n) => (whole.get(n) ?? 0) > 1 && !said.has(n)).map((n) => `${n}: ${whole.get(n)}`)).toEqual([])
    // Nothing lost: a job not archived is one held back, still in the survivor's folder, whole.
    const notArchived = names.filter((n) => (whole.get(n) ?? 0) < 1)
    expect(notArchived.filter((n) => !held().has(n))).toEqual([])
    const mine = path.join(volume.mounts[1], "crash", ".pmjq", "running", "b")
    // In a folder taken over from a dead machine (.from-X), nested when that
    // machine had taken one over itself (c holding a's).
    const takenFolders = (dir: string): Array<string> =>
      fs.readdirSync(dir).filter((f) => f.startsWith(".from-")).map((f) => path.join(dir, f)).flatMap((f) => [f, ...takenFolders(f)])
    const kept = (n: string) =>
      takenFolders(mine).map((f) => path.join(f, n)).filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f, "utf8"))
    expect(notArchived.map(kept)).toEqual(notArchived.map((n) => [body(n)]))
    // A live machine took the dead machines' jobs over after the lease: a's
    // may be taken by c, started after a was killed, before c is killed too.
    expect(survivor.output().stderr + victims[1]!.output().stderr).toMatch(/node dead; recovering its jobs dead=a /)
    expect(survivor.output().stderr).toMatch(/node dead; recovering its jobs dead=c /)
    // Jobs the kills cut short ran again (at least once), the rest once; held-back ones maybe not yet.
    const ran = new Set(all.filter((r) => r.end !== null && !r.cut).map((r) => r.job))
    expect(names.filter((n) => !ran.has(n) && !notArchived.includes(n))).toEqual([])
  }, CLUSTER_TEST)

  // Last, as it kills one mount and mounts it again; with the settings a
  // cluster should use (the default caches add nothing to what it tests).
  if (setup.coherent) it.runIf(setup.runs)(`a machine whose mount dies under it stops its jobs and exits 75 saying why; the other takes them over after the lease, never two runs at once; back, it rejoins`, async () => {
    const root = tempDir("gluster-cut")
    const spool = path.join(volume.mounts[0], "cut")
    fs.mkdirSync(spool)
    const ledger = path.join(root, "ledger")
    const names = Array.from({ length: 8 }, (_, i) => `p${String(i).padStart(2, "0")}`)
    // Gated: running on both machines when the mount dies, and still running
    // when the cut-off machine stops its jobs.
    for (const name of names) submit(spool, name, script(ledger, "0", true))
    const LEASE = 12
    const args = (m: string, mount: 0 | 1) => ["--node-id", m, "-j", "2", "-o", path.join(root, `archive-${m}`), "--poll", "1s", "--lease", `${LEASE}s`, path.join(volume.mounts[mount], "cut")]
    const a = startOn("host-a", args("a", 0), root)
    const b = startOn("host-b", args("b", 1), root)
    const keepLogs = () => {
      for (const [m, d] of [["a", a], ["b", b]] as const) fs.writeFileSync(path.join(root, `log-${m}`), d.output().stderr)
    }
    const progress = () => sizeOf(ledger)
    const logs = () => lastWords([a, b])
    await waitWhileProgressing("both machines running jobs", () => ["a", "b"].every((m) => runs(ledger).some((r) => r.node === m && r.end === null)), progress, logs)
      .finally(keepLogs)

    volume.killClient(0)
    const cutAt = Date.now()
    await waitFor("the cut-off machine to exit", () => a.child.exitCode !== null || a.child.signalCode !== null, LEASE * 5000)
    const exited = await a.exited
    expect(exited.code).toBe(75)
    expect(a.output().stderr).toMatch(/cut off from the spool .*: no heartbeat could be written for half the lease/)
    // Within the lease, the promise that makes the other's takeover safe (it
    // aims at half the lease and one beat, plus the time its jobs take to stop).
    expect(Date.now() - cutAt).toBeLessThan(LEASE * 1000)

    // Its jobs were stopped (killed outright: no end in the ledger).
    const cutShort = runs(ledger).filter((r) => r.node === "a")
    expect(cutShort.length).toBeGreaterThan(0)
    expect(cutShort.filter((r) => r.end !== null)).toEqual([])

    openGate(ledger)
    const recovered = () => /node dead; recovering its jobs dead=a /.test(b.output().stderr)
    await waitWhileProgressing("b to recover a's jobs, and every job to end", () => recovered() && new Set(runs(ledger).filter((r) => r.end !== null && !r.cut).map((r) => r.job)).size === names.length, () => `${progress()} ${recovered()}`, logs)
    expect(overlapping(ledger)).toEqual([])

    // The storage is back: started again (as its service manager would), alone, it takes work.
    await stopAll([b])
    volume.remount(0)
    const again = startOn("host-a", args("a", 0), root)
    for (const name of ["q0", "q1", "q2", "q3", "q4", "q5"]) submit(spool, name, script(ledger))
    await waitWhileProgressing("the rejoined machine running a job", () => runs(ledger).some((r) => r.node === "a" && r.job.startsWith("q") && r.end !== null && !r.cut), progress, () => again.output().stderr)
    await stopAll([again])
    expect(overlapping(ledger)).toEqual([])
  }, CLUSTER_TEST)
})
