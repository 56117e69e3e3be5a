/**
 * pmjq's spawner: a tiny helper process that forks jobs on pmjq's behalf.
 *
 * fork(2) costs time in proportion to the parent's memory (about 5 ms per
 * 100 MB here), and an Effect daemon is several times the size of a bare Node
 * process. This helper imports nothing but Node itself, so it stays small and
 * every job's fork stays cheap; it also takes the forks off pmjq's event loop.
 *
 * Protocol (Node IPC, one JSON message each way per event):
 *   in:  { id, path, cwd, env, stdout, stderr, record }
 *          env: added to the helper's own; stdout/stderr: a file, or null to inherit
 *          record: where to write the job's record when it ends, and what pmjq knows of it
 *   out: { id, pid } | { id, error: { code, message } }
 *        | { id, exitCode, signal, startedAt, endedAt, recorded }
 *
 * The record is written here, before pmjq hears of the exit: from the moment a
 * job's process ends its outcome is on disk, so no crash of pmjq can make it
 * run again.
 *
 * It keeps no state but the children it waits for. When pmjq goes away without
 * a word (killed, crashed), it stops them and exits: their claims will be
 * recovered and run again, and must not run twice at once.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import { isZombie } from "../proc.js"
import { type RecordBase, recordText, startedRecord } from "./Record.js"

export interface SpawnRequest {
  readonly id: number
  readonly path: string
  readonly cwd: string
  readonly env: Readonly<Record<string, string>>
  readonly stdout: string | null
  readonly stderr: string | null
  readonly record: { readonly file: string; readonly base: RecordBase } | null
  /** Run as this user: setpriv(1) sets uid, gid and the user's supplementary groups. */
  readonly user: { readonly uid: number; readonly gid: number; readonly name: string; readonly home: string; readonly shell: string } | null
}

export type SpawnReport =
  | { readonly id: number; readonly pid: number }
  | { readonly id: number; readonly error: { readonly code: string; readonly message: string } }
  | {
    readonly id: number
    readonly exitCode: number | null
    readonly signal: NodeJS.Signals | null
    readonly startedAt: number
    readonly endedAt: number
    readonly recorded: boolean
  }

// A send can fail before 'disconnect' arrives (pmjq just died): that means the
// same, and must not throw, or this helper dies with its jobs unstopped.
const send = (report: SpawnReport) => {
  if (!process.connected) return
  process.send?.(report, undefined, {}, (error: Error | null) => {
    if (error !== null) parentGone()
  })
}

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
/** Jobs stopped because pmjq is gone: whatever their end, it is not their outcome. */
const stopped = new Set<number>()

// Aside, then renamed: whole or absent. False if it could not be written
// (pmjq then writes it itself).
const writeRecord = (file: string, text: string) => {
  const aside = `${file}.tmp`
  try {
    fs.writeFileSync(aside, text)
    fs.renameSync(aside, file)
    return true
  } catch {
    return false
  }
}

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
    const user = request.user
    // Its output is its owner's, like the script.
    if (user !== null) for (const fd of fds) fs.fchownSync(fd, user.uid, user.gid)
    const [command, args] = user === null
      ? [request.path, []]
      : ["setpriv", [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--init-groups", "--", request.path]]
    const account = user === null ? {} : { HOME: user.home, USER: user.name, LOGNAME: user.name, SHELL: user.shell }
    child = cp.spawn(command, args, {
      cwd: request.cwd,
      env: { ...base, ...request.env, ...account },
      stdio: ["ignore", stdout, stderr],
      // Its own process group, so pmjq can signal the job and all it forked.
      detached: true
    })
  } catch (e) {
    return failed(e)
  }
  child.once("error", failed)
  // Counted from here, not from its 'spawn' event: should pmjq die in between,
  // the job is still one to stop (and to wait for) before this helper exits.
  let startedAt = Date.now()
  if (child.pid !== undefined) running.add(child.pid)
  child.once("spawn", () => {
    startedAt = Date.now()
    closeFds()
    send({ id: request.id, pid: child.pid! })
  })
  child.once("exit", (exitCode, signal) => {
    const endedAt = Date.now()
    running.delete(child.pid!)
    // A job that died of the signal sent because pmjq died did not end on its
    // own: no outcome is recorded, and recovery runs it again. Any other end is
    // its own (one that catches SIGTERM and exits 143 has chosen its outcome;
    // one in the middle of exiting when the signal came ignores it).
    const killedByUs = stopped.has(child.pid!) && (signal === "SIGTERM" || signal === "SIGKILL")
    const recorded = request.record !== null && !killedByUs &&
      writeRecord(
        request.record.file,
        recordText(startedRecord(request.record.base, child.pid!, startedAt, endedAt, {
          _tag: "Exited",
          exit: { exitCode, signal },
          interrupted: false,
          timedOut: null
        }))
      )
    send({ id: request.id, exitCode, signal, startedAt, endedAt, recorded })
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
    // Ended on its own, not yet reaped by us: its exit is its outcome.
    if (!stopped.has(pid) && isZombie(pid)) continue
    stopped.add(pid)
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
let gone = false
function parentGone() {
  if (gone) return
  gone = true
  if (running.size === 0) process.exit(0)
  // Exits already waiting in the event loop are handled (and recorded) first.
  setImmediate(() => signalGroups("SIGTERM"))
  setTimeout(() => {
    signalGroups("SIGKILL")
    process.exit(0)
  }, 5000)
  const poll = setInterval(() => running.size === 0 && process.exit(0), 50)
  poll.unref()
}
process.on("disconnect", parentGone)
