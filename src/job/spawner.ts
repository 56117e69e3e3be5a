/**
 * pmjq's spawner: a tiny helper process that forks jobs on pmjq's behalf.
 *
 * fork(2) costs time in proportion to the parent's memory (about 5 ms per
 * 100 MB here), and an Effect daemon is several times the size of a bare Node
 * process. This helper imports nothing but Node itself, so it stays small and
 * every job's fork stays cheap; it also takes the forks off pmjq's event loop.
 *
 * Protocol (Node IPC, one JSON message each way per event):
 *   in:  { id, path, cwd, env, stdout, stderr }   env: added to the helper's own
 *                                                  stdout/stderr: a file, or null to inherit
 *   out: { id, pid } | { id, error: { code, message } } | { id, exitCode, signal }
 *
 * It keeps no state but the children it waits for. When pmjq goes away without
 * a word (killed, crashed), it stops them and exits: their claims will be
 * recovered and run again, and must not run twice at once.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"

export interface SpawnRequest {
  readonly id: number
  readonly path: string
  readonly cwd: string
  readonly env: Readonly<Record<string, string>>
  readonly stdout: string | null
  readonly stderr: string | null
}

export type SpawnReport =
  | { readonly id: number; readonly pid: number }
  | { readonly id: number; readonly error: { readonly code: string; readonly message: string } }
  | { readonly id: number; readonly exitCode: number | null; readonly signal: NodeJS.Signals | null }

const send = (report: SpawnReport) => process.send?.(report)

// Exclusive create; an existing file (left by a crash) is appended to, never
// truncated. Files created here are noted, to be removed if the exec fails.
const openOutput = (file: string | null, created: Array<string>): number | "inherit" => {
  if (file === null) return "inherit"
  try {
    const fd = fs.openSync(file, "wx", 0o644)
    created.push(file)
    return fd
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return fs.openSync(file, "a")
    throw e
  }
}

const fail = (id: number, e: unknown) => {
  const error = e as NodeJS.ErrnoException
  send({ id, error: { code: error.code ?? "EUNKNOWN", message: error.message } })
}

const base = { ...process.env }
/** Process groups of running jobs. */
const running = new Set<number>()

const spawn = (request: SpawnRequest) => {
  const fds: Array<number> = []
  const created: Array<string> = []
  const closeFds = () => fds.splice(0).forEach((fd) => fs.closeSync(fd))
  // The job never ran, so the empty files made for its output go too (a job
  // still being written is retried, and would otherwise leave a pair each time).
  const failed = (e: unknown) => {
    closeFds()
    for (const file of created) fs.rmSync(file, { force: true })
    fail(request.id, e)
  }
  let child: cp.ChildProcess
  try {
    const stdout = openOutput(request.stdout, created)
    if (typeof stdout === "number") fds.push(stdout)
    const stderr = openOutput(request.stderr, created)
    if (typeof stderr === "number") fds.push(stderr)
    child = cp.spawn(request.path, [], {
      cwd: request.cwd,
      env: { ...base, ...request.env },
      stdio: ["ignore", stdout, stderr],
      // Its own process group, so pmjq can signal the job and all it forked.
      detached: true
    })
  } catch (e) {
    return failed(e)
  }
  child.once("error", failed)
  child.once("spawn", () => {
    closeFds()
    running.add(child.pid!)
    send({ id: request.id, pid: child.pid! })
  })
  child.once("exit", (exitCode, signal) => {
    running.delete(child.pid!)
    send({ id: request.id, exitCode, signal })
  })
}

process.on("message", (request: SpawnRequest) => spawn(request))
// Ctrl-C reaches the whole terminal group and systemd signals the whole unit;
// pmjq decides when jobs stop, so the spawner outlives those signals and ends
// only when pmjq disconnects. Jobs start with default signal handling again.
process.on("SIGINT", () => {})
process.on("SIGTERM", () => {})
const signalGroups = (signal: NodeJS.Signals) => {
  for (const pid of running) {
    try {
      process.kill(-pid, signal)
    } catch {
      // The group is gone already.
    }
  }
}

// pmjq is gone. After a graceful stop nothing runs here any more; after a
// crash, the jobs still running are stopped (SIGTERM, SIGKILL 5 s later) so
// that recovery can run them again without a second copy alive.
process.on("disconnect", () => {
  if (running.size === 0) process.exit(0)
  signalGroups("SIGTERM")
  setTimeout(() => {
    signalGroups("SIGKILL")
    process.exit(0)
  }, 5000)
  const poll = setInterval(() => running.size === 0 && process.exit(0), 50)
  poll.unref()
})
