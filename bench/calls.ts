/**
 * The system calls a job costs on the spool's filesystem: a drain of trivial
 * jobs under strace (-f: pmjq, its thread pool and its spawners; not the jobs
 * themselves), each call that names a path or a descriptor under DIR counted
 * by kind and by what it acts on. On a cluster volume each is a round trip
 * (README: "Running a cluster").
 *
 *   node --import tsx bench/calls.ts [--bin PATH] [--dir DIR] [--jobs N] [--local-archive]
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? process.argv[i + 1]! : fallback
}
const ROOT = path.resolve(import.meta.dirname, "..")
const BIN = path.resolve(arg("--bin", path.join(ROOT, "dist/bin.js")))
const JOBS = Number(arg("--jobs", "40"))
const dir = fs.mkdtempSync(path.join(path.resolve(arg("--dir", os.tmpdir())), "pmjq-calls-"))
const spool = path.join(dir, "spool")
fs.mkdirSync(spool)
for (let i = 0; i < JOBS; i++) fs.writeFileSync(path.join(spool, `j${i}`), "#!/bin/sh\n:\n", { mode: 0o755 })
const local = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-calls-archive-"))
const archive = process.argv.includes("--local-archive") ? path.join(local, "archive") : path.join(dir, "archive")
const log = path.join(local, "strace.log")
const run = cp.spawnSync("strace", ["-f", "-y", "-s", "256", "-o", log, process.execPath, BIN, "-j", "8", "-o", archive, "--drain", spool], { stdio: "ignore" })
if (run.status !== 0) throw new Error(`drain under strace: exit ${run.status}`)

// Each call once (an interrupted one is counted where it started), by pid.
const jobs = new Set<string>()
const calls: Array<{ pid: string; name: string; text: string }> = []
for (const line of fs.readFileSync(log, "utf8").split("\n")) {
  const m = /^(\d+)\s+(\w+)\((.*)$/.exec(line)
  if (m === null) continue
  const [, pid, name, text] = m
  // A job's own process: what it does is the job's, not pmjq's.
  if (name === "execve" && text!.startsWith(JSON.stringify(path.join(spool, ".pmjq")).slice(0, -1))) jobs.add(pid!)
  calls.push({ pid: pid!, name: name!, text: text! })
}
const onSpool = (text: string) => text.includes(dir)
const kind = (text: string) =>
  text
    .replaceAll(dir, "")
    .replace(/\/j\d+/g, "/NAME")
    .replace(/\.j\d+\./g, ".NAME.")
    .replace(/\d{8}T\d{6}\.\d{3}Z(-\d+)?_j\d+/g, "STAMP_NAME")
    .replace(/running\/[^/"]+/g, "running/NODE")
    .replace(/\.\d+\.[0-9a-f]+\.tmp/g, ".ASIDE.tmp")
    .replace(/^\d+</, "<")
    .replace(/"\{[^"]*\}"/, "TEXT")
    .replace(/(\) =|, \{|, 0x|<unfinished).*$/, "")
    .slice(0, 110)
const counted = new Map<string, number>()
const byName = new Map<string, number>()
for (const c of calls) {
  if (jobs.has(c.pid) || !onSpool(c.text) || c.name === "execve") continue
  const key = `${c.name}(${kind(c.text)}`
  counted.set(key, (counted.get(key) ?? 0) + 1)
  byName.set(c.name, (byName.get(c.name) ?? 0) + 1)
}
const perJob = (n: number) => (n / JOBS).toFixed(1)
const total = [...byName.values()].reduce((a, b) => a + b, 0)
console.log(`${BIN}: ${perJob(total)} calls a job on the spool's filesystem (${JOBS} jobs, archive ${process.argv.includes("--local-archive") ? "on a local disk" : "beside the spool"})`)
console.log([...byName].sort((a, b) => b[1] - a[1]).map(([n, c]) => `${n} ${perJob(c)}`).join(", "))
for (const [key, n] of [...counted].sort((a, b) => b[1] - a[1])) if (n >= JOBS / 2) console.log(`${perJob(n).padStart(5)}  ${key}`)
fs.rmSync(dir, { recursive: true, force: true })
fs.rmSync(local, { recursive: true, force: true })
