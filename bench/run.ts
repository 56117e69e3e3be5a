/**
 * pmjq's benchmarks (not tests): `npm run bench` [-- --quick] [-- --dir DIR] [-- --latency-only | --drain-only | --idle-only] [-- --bin PATH] [-- --no-cluster].
 * DIR (default: the system temp dir) is where spools are made: this VM's ext4
 * swings results by half between runs, so a tmpfs (/dev/shm) shows pmjq itself.
 * Each figure is measured next to a bare-Node loop in the same run, on the same
 * machine, so the ratio means something on a noisy 2-core box.
 * Writes bench/results/latest.json and prints a Markdown table.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { backlog, bareDaemon, pmjqDaemon } from "./backlog.js"
import { clusterDrains, clusterTable } from "./cluster.js"
import { scale } from "./scale.js"

const quick = process.argv.includes("--quick")
const dirArg = process.argv.indexOf("--dir")
const BASE = dirArg > 0 ? path.resolve(process.argv[dirArg + 1]!) : os.tmpdir()
const ROOT = path.resolve(import.meta.dirname, "..")
// --bin PATH measures another build (an A/B against a copy of an older dist/).
const binArg = process.argv.indexOf("--bin")
const BIN = binArg > 0 ? path.resolve(process.argv[binArg + 1]!) : path.join(ROOT, "dist/bin.js")
const BASELINE = path.join(ROOT, "bench/baseline.mjs")
const LATENCY_JOBS = quick ? 30 : 100
const DRAIN_JOBS = quick ? 500 : 2000
const IDLE_SECONDS = quick ? 10 : 60
const IDLE_WARM_SECONDS = quick ? 5 : 30

// pmjq is run as installed, by its #! line, which sets its V8 flags (src/bin.ts).
const run = (command: ReadonlyArray<string>) => command[0] === BIN ? [BIN, command.slice(1)] as const : [process.execPath, command] as const

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const fresh = (label: string) => {
  const dir = fs.mkdtempSync(path.join(BASE, `pmjq-bench-${label}-`))
  fs.mkdirSync(path.join(dir, "spool"))
  return dir
}
const percentile = (xs: Array<number>, p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}
const nowMicros = () => (performance.timeOrigin + performance.now()) * 1000

const waitFor = async (condition: () => boolean, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("benchmark timed out")
    await sleep(1)
  }
}

/** Submits one job at a time and times rename -> the job's first instruction ($EPOCHREALTIME, a bash builtin). */
const latency = async (command: Array<string>, label: string) => {
  const dir = fresh(label)
  const spool = path.join(dir, "spool")
  const ledger = path.join(dir, "ledger")
  const daemon = cp.spawn(...run([...command, spool]), { cwd: dir, stdio: "ignore" })
  await sleep(1500)
  const samples: Array<number> = []
  for (let i = 0; i < LATENCY_JOBS; i++) {
    const hidden = path.join(spool, `.j${i}`)
    fs.writeFileSync(hidden, `#!/bin/bash\necho "$EPOCHREALTIME" >> "${ledger}"\n`, { mode: 0o755 })
    const submitted = nowMicros()
    fs.renameSync(hidden, path.join(spool, `j${i}`))
    await waitFor(() => fs.existsSync(ledger) && fs.readFileSync(ledger, "utf8").split("\n").length > i + 1, 10_000)
    const started = Number(fs.readFileSync(ledger, "utf8").trim().split("\n")[i]) * 1e6
    samples.push((started - submitted) / 1000)
    await sleep(20)
  }
  daemon.kill("SIGTERM")
  await new Promise((r) => daemon.once("close", r))
  fs.rmSync(dir, { recursive: true, force: true })
  return { p50: percentile(samples, 50), p95: percentile(samples, 95) }
}

/** Wall time from process start to exit, draining DRAIN_JOBS trivial jobs. */
const drain = async (command: (spool: string, dir: string) => Array<string>, label: string) => {
  const dir = fresh(label)
  const spool = path.join(dir, "spool")
  for (let i = 0; i < DRAIN_JOBS; i++) fs.writeFileSync(path.join(spool, `j${i}`), "#!/bin/sh\n:\n", { mode: 0o755 })
  const started = performance.now()
  const result = cp.spawnSync(...run(command(spool, dir)), { cwd: dir, stdio: "ignore" })
  const seconds = (performance.now() - started) / 1000
  const left = fs.readdirSync(spool).filter((n) => !n.startsWith(".")).length
  fs.rmSync(dir, { recursive: true, force: true })
  if (result.status !== 0 || left !== 0) throw new Error(`${label}: exit ${result.status}, ${left} jobs left`)
  return { seconds, jobsPerSecond: DRAIN_JOBS / seconds }
}

const installed = (command: string) => cp.spawnSync("sh", ["-c", `command -v ${command}`]).status === 0

/**
 * The same drain by a peer tool, when it is installed (`apt-get install
 * task-spooler parallel`): SCRIPT runs in the drain's folder with the jobs in
 * ./spool and returns once every job has run. Null when the tool is missing.
 */
const peerDrain = (tool: string, script: string) => {
  if (!installed(tool)) return null
  const dir = fresh(`drain-${tool}`)
  for (let i = 0; i < DRAIN_JOBS; i++) fs.writeFileSync(path.join(dir, "spool", `j${i}`), "#!/bin/sh\n:\n", { mode: 0o755 })
  const started = performance.now()
  const result = cp.spawnSync("sh", ["-c", script], { cwd: dir, stdio: "ignore", env: { ...process.env, TS_SOCKET: path.join(dir, "ts.sock") } })
  const seconds = (performance.now() - started) / 1000
  fs.rmSync(dir, { recursive: true, force: true })
  if (result.status !== 0) throw new Error(`${tool}: exit ${result.status}`)
  return { seconds, jobsPerSecond: DRAIN_JOBS / seconds }
}

// task-spooler's -w waits for the last job only: then until none runs or waits.
const TSP = `tsp -S 8 && for f in spool/j*; do tsp -n "$f" >/dev/null; done && tsp -w >/dev/null 2>&1;
  while tsp -l | grep -Eq ' (running|queued) '; do sleep 0.01; done; tsp -K`
const PARALLEL = "find spool -type f -name 'j*' | parallel -j 8 '{}'"

const CLOCK_TICKS = 100
const rssMiB = (pid: number) => {
  const line = fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))!
  return Number(line.split(/\s+/)[1]) / 1024
}

/** PID's children (pmjq's spawners). */
const childrenOf = (pid: number) => fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p)).map(Number).filter((p) => {
  try {
    return Number(fs.readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1]!.split(" ")[1]) === pid
  } catch {
    return false
  }
})
const statSeconds = (pid: number, fields: ReadonlyArray<number>) => {
  const all = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return fields.reduce((total, i) => total + Number(all[i]), 0) / CLOCK_TICKS
}
const orZero = (f: () => number) => {
  try {
    return f()
  } catch {
    return 0 // Gone meanwhile: its time is in its parent's reaped children's.
  }
}
/** CPU of pmjq and its helpers, as the issue counts an idle pmjq: its own, its reaped children's, its live children's. */
const familyCpu = (pid: number) =>
  statSeconds(pid, [11, 12, 13, 14]) + childrenOf(pid).reduce((total, child) => total + orZero(() => statSeconds(child, [11, 12])), 0)
const familyRss = (pid: number) => rssMiB(pid) + childrenOf(pid).reduce((total, child) => total + orZero(() => rssMiB(child)), 0)

// An empty spool, the default --poll: pmjq's and its helpers' CPU and
// resident memory, as issue #23 counts them (helpers start with the first job).
// Counted once start-up is over: V8 compiles lazily and collects what loading
// left behind for the first half minute or so (counted from 2 s, the same
// pmjq used 0.41 CPU-s in its first minute against 0.23 in its second).
const idle = async () => {
  const dir = fresh("idle")
  const spool = path.join(dir, "spool")
  const daemon = cp.spawn(BIN, [spool], { cwd: dir, stdio: "ignore" })
  await sleep(IDLE_WARM_SECONDS * 1000)
  const before = familyCpu(daemon.pid!)
  await sleep(IDLE_SECONDS * 1000)
  const used = familyCpu(daemon.pid!) - before
  const rss = familyRss(daemon.pid!)
  const processes = 1 + childrenOf(daemon.pid!).length
  daemon.kill("SIGTERM")
  await new Promise((r) => daemon.once("close", r))
  fs.rmSync(dir, { recursive: true, force: true })
  return { seconds: IDLE_SECONDS, cpuSeconds: used, rssMiB: rss, processes }
}

const f0 = (n: number) => n.toFixed(0)

const main = async () => {
  if (!fs.existsSync(BIN)) throw new Error("run `npm run build` first")
  const pmjqLatency = await latency([BIN, "-o", "archive"], "lat-pmjq")
  const bareLatency = await latency([BASELINE, "watch"], "lat-bare")
  if (process.argv.includes("--latency-only")) {
    console.log(`latency p50 ${pmjqLatency.p50.toFixed(1)} ms vs loop ${bareLatency.p50.toFixed(1)} ms: ${(pmjqLatency.p50 / bareLatency.p50).toFixed(2)}x`)
    return
  }
  if (process.argv.includes("--idle-only")) {
    const cost = await idle()
    console.log(`idle ${IDLE_SECONDS} s: ${cost.cpuSeconds.toFixed(2)} CPU-s (${(100 * cost.cpuSeconds / IDLE_SECONDS).toFixed(2)}% of a core), ${cost.rssMiB.toFixed(0)} MiB in ${cost.processes} processes`)
    return
  }
  if (process.argv.includes("--drain-only")) {
    const pmjq = await drain((spool) => [BIN, "-j", "8", "-o", "archive", "--drain", spool], "drain-pmjq")
    const bare = await drain((spool) => [BASELINE, "drain", spool, "8"], "drain-bare")
    console.log(`drain ${f0(pmjq.jobsPerSecond)} jobs/s vs loop ${f0(bare.jobsPerSecond)}: ${(pmjq.jobsPerSecond / bare.jobsPerSecond).toFixed(2)}x`)
    return
  }
  const many = await scale(16, quick ? 2000 : 10_000, BASE)
  const pmjqDrain = await drain((spool) => [BIN, "-j", "8", "-o", "archive", "--drain", spool], "drain-pmjq")
  const bareDrain = await drain((spool) => [BASELINE, "drain", spool, "8"], "drain-bare")
  const peers = { taskSpooler: peerDrain("tsp", TSP), gnuParallel: peerDrain("parallel", PARALLEL) }
  const idleCost = await idle()
  const queued = await backlog(pmjqDaemon(BIN), BASE, 100_000, quick ? 5 : 10)
  const queuedBare = await backlog(bareDaemon, BASE, 100_000, quick ? 5 : 10)
  // On the cluster filesystems the tests use, when they are installed (and as root).
  const cluster = process.argv.includes("--no-cluster") ? [] : await clusterDrains(BIN, quick ? 150 : 300)

  const result = {
    date: new Date().toISOString(),
    machine: { cpus: os.availableParallelism(), node: process.version, kernel: os.release() },
    spoolsIn: BASE,
    quick,
    latencyMs: { jobs: LATENCY_JOBS, pmjq: pmjqLatency, bareLoop: bareLatency, p50Ratio: pmjqLatency.p50 / bareLatency.p50 },
    drain: { jobs: DRAIN_JOBS, pmjq: pmjqDrain, bareLoop: bareDrain, ratio: pmjqDrain.jobsPerSecond / bareDrain.jobsPerSecond, peers },
    idle: idleCost,
    backlog: { ...queued, bare: queuedBare, firstJobRatio: queued.firstJobSeconds / queuedBare.firstJobSeconds, peakRssRatio: queued.peakRssMiB / queuedBare.peakRssMiB },
    manyNodes: many,
    cluster
  }
  fs.mkdirSync(path.join(ROOT, "bench/results"), { recursive: true })
  const fsType = cp.spawnSync("df", ["--output=fstype", BASE], { encoding: "utf8" }).stdout.trim().split("\n").pop()
  fs.writeFileSync(path.join(ROOT, `bench/results/latest-${fsType}.json`), JSON.stringify({ ...result, fsType }, null, 2) + "\n")
  console.log(`spools in ${BASE} (${fsType})`)

  const f = (n: number, d = 1) => n.toFixed(d)
  console.log(`| measure | pmjq | bare-Node loop | goal |
|---|---|---|---|
| dispatch latency p50 (${LATENCY_JOBS} jobs) | ${f(pmjqLatency.p50)} ms | ${f(bareLatency.p50)} ms | <= 1.25x loop (${f(result.latencyMs.p50Ratio, 2)}x) |
| dispatch latency p95 | ${f(pmjqLatency.p95)} ms | ${f(bareLatency.p95)} ms | |
| drain ${DRAIN_JOBS} trivial jobs, -j 8 -o | ${f(pmjqDrain.jobsPerSecond, 0)} jobs/s (${f(pmjqDrain.seconds)} s) | ${f(bareDrain.jobsPerSecond, 0)} jobs/s (${f(bareDrain.seconds)} s) | >= 0.85x loop (${f(result.drain.ratio, 2)}x) |
| ... the same drain by task-spooler (\`tsp -S 8\`) | ${peers.taskSpooler === null ? "not installed" : `${f(peers.taskSpooler.jobsPerSecond, 0)} jobs/s (${f(peers.taskSpooler.seconds)} s)`} | | pmjq >= 1.5x (${peers.taskSpooler === null ? "-" : f(pmjqDrain.jobsPerSecond / peers.taskSpooler.jobsPerSecond, 2)}x) |
| ... the same drain by GNU parallel (\`-j 8\`) | ${peers.gnuParallel === null ? "not installed" : `${f(peers.gnuParallel.jobsPerSecond, 0)} jobs/s (${f(peers.gnuParallel.seconds)} s)`} | | pmjq >= 3x (${peers.gnuParallel === null ? "-" : f(pmjqDrain.jobsPerSecond / peers.gnuParallel.jobsPerSecond, 2)}x) |
| idle: CPU in ${IDLE_SECONDS} s, empty spool, after ${IDLE_WARM_SECONDS} s of start-up | ${f(idleCost.cpuSeconds, 2)} s (${f((100 * idleCost.cpuSeconds) / IDLE_SECONDS, 2)}% of a core) | | <= 0.5% of a core |
| idle: resident memory, helpers included (${idleCost.processes} processes) | ${f(idleCost.rssMiB)} MiB | | <= 120 MB |
| ${queued.jobs} jobs queued at start: first job started (plain daemon: bench/baseline-backlog.mjs) | ${f(queued.firstJobSeconds, 2)} s | ${f(queuedBare.firstJobSeconds, 2)} s | < 1 s, <= 2.5x (${f(queued.firstJobSeconds / queuedBare.firstJobSeconds, 2)}x) |
| ... resident memory while they drain, median (peak) | ${f(queued.rssMiB, 0)} MiB (${f(queued.peakRssMiB, 0)}) | ${f(queuedBare.rssMiB, 0)} MiB (${f(queuedBare.peakRssMiB, 0)}) | < 150 MB, peak <= 1.6x (${f(queued.peakRssMiB / queuedBare.peakRssMiB, 2)}x) |
| ${many.nodes} nodes drain ${many.jobs} jobs together: lost claim races per claim won | ${f(many.lostPerWon, 2)} (${f(many.seconds)} s) | | < 0.5 |
| ... start order vs queue order (places) | p50 ${many.fifoDisplacement.p50}, p99 ${many.fifoDisplacement.p99} | | roughly FIFO |`)
  if (cluster.length > 0) console.log(`\nOn a cluster volume (bench/cluster.ts), one node, against the loop on the same mount:\n${clusterTable(cluster)}`)
}

await main()
