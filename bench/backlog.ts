/**
 * 100,000 jobs queued before pmjq starts: how long until the first one runs,
 * and how much memory pmjq holds (peak and after settling) while the queue is long;
 * the same for the plain Node daemon of bench/baseline-backlog.mjs, its floor.
 * pmjq is run as installed, by its #! line (which sets its V8 flags).
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const statusField = (pid: number, field: string) => {
  const line = fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(`${field}:`))!
  return Number(line.split(/\s+/)[1]) / 1024
}

/** The command that serves SPOOL (archiving into ARCHIVE when it archives). */
export type Daemon = (spool: string, archive: string) => ReadonlyArray<string>

export const pmjqDaemon = (bin: string): Daemon => (spool, archive) => [bin, "-j", "2", "-o", archive, spool]
export const bareDaemon: Daemon = (spool) => [process.execPath, path.join(import.meta.dirname, "baseline-backlog.mjs"), spool, "2"]

export const backlog = async (daemonOf: Daemon, base: string, jobs: number, watchSeconds: number) => {
  const dir = fs.mkdtempSync(path.join(base, "pmjq-bench-backlog-"))
  const spool = path.join(dir, "spool")
  fs.mkdirSync(spool)
  const marker = path.join(dir, "first")
  // Every job is the same; only the first to run leaves its start time.
  const script = `#!/bin/sh\n[ -e "${marker}" ] || date +%s.%N > "${marker}"\n`
  for (let i = 0; i < jobs; i++) fs.writeFileSync(path.join(spool, `j${String(i).padStart(6, "0")}`), script, { mode: 0o755 })
  const started = Date.now()
  const [command, ...args] = daemonOf(spool, path.join(dir, "archive"))
  const daemon = cp.spawn(command!, args, { cwd: dir, stdio: "ignore" })
  while (!fs.existsSync(marker) || fs.readFileSync(marker, "utf8") === "") {
    if (Date.now() - started > 60_000) throw new Error("backlog: no job started within 60 s")
    await sleep(5)
  }
  const firstJobSeconds = Number(fs.readFileSync(marker, "utf8")) - started / 1000
  // Several --poll rescans of the whole spool happen in this time; resident
  // memory swings with each garbage collection, so it is sampled throughout.
  const samples: Array<number> = []
  for (const until = Date.now() + watchSeconds * 1000; Date.now() < until; await sleep(200)) samples.push(statusField(daemon.pid!, "VmRSS"))
  samples.sort((a, b) => a - b)
  const rssMiB = samples[Math.floor(samples.length / 2)]!
  const peakRssMiB = statusField(daemon.pid!, "VmHWM")
  daemon.kill("SIGTERM")
  await new Promise((r) => daemon.once("close", r))
  fs.rmSync(dir, { recursive: true, force: true })
  return { jobs, firstJobSeconds, rssMiB, peakRssMiB, watchSeconds }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = path.resolve(import.meta.dirname, "..")
  const dirArg = process.argv.indexOf("--dir")
  const base = dirArg > 0 ? path.resolve(process.argv[dirArg + 1]!) : "/tmp"
  const binArg = process.argv.indexOf("--bin")
  const bin = binArg > 0 ? path.resolve(process.argv[binArg + 1]!) : path.join(root, "dist/bin.js")
  console.log(JSON.stringify({ pmjq: await backlog(pmjqDaemon(bin), base, 100_000, 10), bare: await backlog(bareDaemon, base, 100_000, 10) }))
}
