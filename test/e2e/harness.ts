/** Runs the built CLI on real directories; every wait is for an outcome, with a deadline. */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach } from "vitest"
import { has, waitFor, waitWhileProgressing } from "./waiting.js"
import { type ProcessId, stillRuns } from "../../src/process/proc.js"

export { has, waitFor, waitWhileProgressing }

export const BIN = path.resolve(import.meta.dirname, "../../dist/bin.js")

/**
 * Whether a group of tests can run here: MISSING says why not, or is null.
 * Why is said once, on the run's output, so that no group is skipped quietly.
 */
export const runsHere = (group: string, missing: string | null) => {
  if (missing !== null) console.warn(`skipped: ${group}: ${missing}`)
  return missing === null
}


export const tempDir = (label: string) => fs.mkdtempSync(path.join(os.tmpdir(), `pmjq-${label}-`))

/** A fresh root with an empty spool, and where archive, error dir and a ledger would go. */
export const workspace = (label: string) => {
  const root = tempDir(label)
  const spool = path.join(root, "spool")
  fs.mkdirSync(spool)
  return { root, spool, archive: path.join(root, "archive"), errors: path.join(root, "errors"), ledger: path.join(root, "ledger") }
}

/** The non-empty lines of a file jobs append to; none if it does not exist yet. */
export const lines = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean) : [])

/** Submits a job the atomic way: write under a hidden name, make executable, rename. */
export const submit = (spool: string, name: string, body: string) => {
  const hidden = path.join(spool, `.submit-${process.pid}-${Math.random().toString(36).slice(2)}`)
  fs.writeFileSync(hidden, body.startsWith("#!") ? body : `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  fs.renameSync(hidden, path.join(spool, name))
}

export interface Running {
  readonly child: cp.ChildProcess
  readonly output: () => { stdout: string; stderr: string }
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export const start = (args: ReadonlyArray<string>, cwd: string): Running =>
  watched(cp.spawn(process.execPath, [BIN, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] }))

// Every pmjq a test started and that has not ended. One a failed test leaves
// behind (its assertion thrown before its stop) is killed once the test is
// over, so that it runs on neither into the next tests nor past the suite.
const alive = new Set<cp.ChildProcess>()
afterEach(() => {
  for (const child of alive) child.kill("SIGKILL")
  alive.clear()
})

/** A pmjq started with piped output: what it said so far, and its end. */
export const watched = (child: cp.ChildProcess): Running => {
  alive.add(child)
  child.once("exit", () => alive.delete(child))
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()))
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("close", (code, signal) => resolve({ code, signal }))
  )
  return { child, output: () => ({ stdout, stderr }), exited }
}

/**
 * A pmjq's own end: with --on-stop leave its spawners keep its stdout and
 * stderr open while they run its jobs, so "close" would wait for them.
 */
export const exitOf = (running: Running) =>
  new Promise<number | null>((resolve) => {
    if (running.child.exitCode !== null) resolve(running.child.exitCode)
    else running.child.once("exit", (code) => resolve(code))
  })

export const run = async (args: ReadonlyArray<string>, cwd: string) => {
  const running = start(args, cwd)
  const { code } = await running.exited
  return { code, ...running.output() }
}


/** The last of what each of DAEMONS said: what a failed wait shows of them. */
export const lastWords = (daemons: ReadonlyArray<Running>) => daemons.map((d) => d.output().stderr.slice(-2000)).join("\n")

/** The size of FILE, 0 while it does not exist: how far a ledger jobs append to has come. */
export const sizeOf = (file: string) => {
  try {
    return fs.statSync(file).size
  } catch {
    return 0
  }
}

export const entries = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [])

export const records = (dir: string) =>
  entries(dir)
    .filter((n) => n.endsWith(".json"))
    .map((n) => ({ entry: n.slice(0, -".json".length), ...JSON.parse(fs.readFileSync(path.join(dir, n), "utf8")) }))

/**
 * Signals the process (or, with GROUP, the process group) of PROC only while
 * its pid is still that process's: pids wrap around within a run of the suite
 * (pid_max 32768 here), and a stale one may by then be another test's job.
 */
export const signalIfSame = (proc: ProcessId, signal: NodeJS.Signals, group = false) => {
  if (!stillRuns(proc)) return false
  try {
    process.kill(group ? -proc.pid : proc.pid, signal)
    return true
  } catch {
    return false
  }
}

export const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * A copy of the built CLI that every user can run: the checkout itself may lie
 * where other users cannot enter. Returns the copy's bin.js.
 */
export const publicBin = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-bin-"))
  fs.chmodSync(dir, 0o755)
  fs.mkdirSync(path.join(dir, "dist"), { mode: 0o755 })
  fs.cpSync(path.dirname(BIN), path.join(dir, "dist"), { recursive: true, filter: (from) => !from.endsWith(".map") })
  fs.copyFileSync(path.resolve(path.dirname(BIN), "../package.json"), path.join(dir, "package.json"))
  for (const file of ["package.json", "dist/bin.js", "dist/spawner.js"]) fs.chmodSync(path.join(dir, file), 0o644)
  fs.chmodSync(path.join(dir, "dist", "chunks"), 0o755)
  for (const chunk of fs.readdirSync(path.join(dir, "dist", "chunks"))) fs.chmodSync(path.join(dir, "dist", "chunks", chunk), 0o644)
  return path.join(dir, "dist", "bin.js")
}
