/**
 * pmjq's spawner: a tiny helper process that forks jobs on pmjq's behalf.
 *
 * fork(2) costs time in proportion to the parent's memory (about 5 ms per
 * 100 MB here), and an Effect daemon is several times the size of a bare Node
 * process. This helper imports nothing but Node itself and small pure modules,
 * so it stays small and every job's fork stays cheap; it also takes the forks
 * off pmjq's event loop.
 *
 * Protocol (Node IPC, one JSON message each way per event; types in protocol.ts):
 *   in:  { id, path, cwd, env, keepEnv, nproc, stdout, stderr, record, user }
 *          user: run as this user (setpriv), in a clean world (see world.ts);
 *            null: as pmjq, with pmjq's environment, in `cwd`
 *          env: the job's own variables (PMJQ_*), added to either
 *          keepEnv: names kept from pmjq's environment for a job run as its owner
 *          nproc: RLIMIT_NPROC for a job run as its owner (prlimit), or null
 *          stdout/stderr: a file to create (never one that exists), or null:
 *            a pipe, copied to the spawner's own (pmjq's) stdout/stderr
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
import type { Readable, Transform, Writable } from "node:stream"
import { createNew, type Ownership, PRIVATE, readRegular, recordKeeping, replaceWhole, writeNew } from "../filesystem/files.js"
import { isZombie, startTicks, stillRuns } from "../process/proc.js"
import { logLines } from "../log/text.js"
import { recordText, startedRecord } from "../record/record.js"
import type { KeepRequest, Ready, SpawnerMessage, SpawnReport, SpawnRequest } from "./protocol.js"
import { fdinfoFlags, jobCommand, jobDirectory, jobEnvironment, type JobUser, strayDescriptors } from "./world.js"

/** Node's IPC channel has an fd at run time; its type does not say so. */
const channelFd = (): number | null => {
  const channel = process.channel as (NonNullable<typeof process.channel> & { readonly fd?: unknown }) | undefined
  return typeof channel?.fd === "number" ? channel.fd : null
}

/** What /proc says of this process's open descriptors; none when there is no /proc. */
const openDescriptors = (): Array<{ readonly fd: number; readonly flags: number }> => {
  let names: Array<string>
  try {
    names = fs.readdirSync("/proc/self/fd")
  } catch {
    return []
  }
  return names.flatMap((name) => {
    try {
      const flags = fdinfoFlags(fs.readFileSync(`/proc/self/fdinfo/${name}`, "utf8"))
      return flags === null ? [] : [{ fd: Number(name), flags }]
    } catch {
      return [] // the listing's own descriptor, closed already
    }
  })
}

// Like sudo's closefrom(): whoever started pmjq may have left descriptors open
// without close-on-exec (a shell's redirection, a supervisor's socket, a
// parent that forgot). Node marks close-on-exec the first 16 it inherits and
// the unbroken run after them, not one further up: pmjq and this helper pass
// those on to every child, and each job, run as whatever user, could read or
// write what they reach. They are closed once, here, before any job starts;
// what Node and this helper open is close-on-exec already. The IPC channel to
// pmjq is kept (Node reads and deletes NODE_CHANNEL_FD before this runs, but
// process.channel knows its fd).
const closeStrayDescriptors = () => {
  const channel = channelFd()
  const keep = new Set(channel === null ? [] : [channel])
  const fromEnv = Number(process.env.NODE_CHANNEL_FD)
  if (Number.isInteger(fromEnv)) keep.add(fromEnv)
  for (const fd of strayDescriptors(openDescriptors(), keep)) {
    try {
      fs.closeSync(fd)
    } catch {
      // Closed in between: what we wanted.
    }
  }
}
closeStrayDescriptors()

// Every job starts with umask 022, whatever pmjq's (a daemon started by hand
// from a shell with umask 000 would make every job's files world-writable).
// The files this helper makes have explicit modes (filesystem/files.ts), so this affects
// only the jobs.
process.umask(0o022)

// A send can fail before 'disconnect' arrives (pmjq just died): that means the
// same, and must not throw, or this helper dies with its jobs unstopped.
const send = (report: SpawnReport) => {
  if (!process.connected) return
  process.send?.(report, undefined, {}, (error: Error | null) => {
    if (error !== null) parentGone()
  })
}

/** Why a spawn failed, in the words pmjq reports (see Runner.ts: execErrors). */
class SpawnError extends Error {
  constructor(readonly code: string, message: string) {
    super(message)
  }
}

/**
 * A job's output file: created new (O_EXCL|O_NOFOLLOW), mode 0600, its owner's.
 * Never appended to: anything already there (a planted symlink, a file from a
 * run that must not be mixed with this one) makes the spawn fail. Files created
 * here are noted, to be removed if the spawn fails.
 */
const createOutput = (file: string, owner: Ownership | null, created: Array<string>): number => {
  try {
    const fd = createNew(file, PRIVATE, owner)
    created.push(file)
    return fd
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new SpawnError("EEXIST", "its output file already exists")
    throw e
  }
}

const fail = (id: number, e: unknown) => {
  const error = e as NodeJS.ErrnoException | SpawnError
  send({ id, error: { code: error.code ?? "EUNKNOWN", message: error.message } })
}

const base = { ...process.env }
/** Process groups of running jobs. */
const running = new Set<number>()
/** Jobs stopped because pmjq is gone: whatever their end, it is not their outcome. */
const stopped = new Set<number>()
/** Jobs' output still being copied to pmjq's (it may outlast the job: a background child holds it). */
const relaying = new Set<Readable>()

// Written aside, on disk, and renamed (whole or absent), never through a planted file or
// symlink; kept by pmjq, readable by the owner's group (files.ts: recordKeeping).
// False if it could not be written (pmjq then writes it itself).
const writeRecord = (file: string, text: string, user: JobUser | null) => {
  const { mode, owner } = recordKeeping(user === null ? null : { uid: user.uid, gid: user.gid })
  try {
    // On disk before pmjq hears of the end (see files.ts: writeNew).
    replaceWhole(file, text, mode, owner, true)
    return true
  } catch {
    return false
  }
}

const isDirectory = (dir: string) => {
  try {
    return fs.statSync(dir).isDirectory()
  } catch {
    return false
  }
}

// A job whose output pmjq does not capture writes into a pipe that is copied
// to pmjq's own stdout or stderr, never into pmjq's descriptors themselves:
// with those a job could truncate pmjq's log (ftruncate needs the descriptor
// only, not the right to write the file), or keep it open after it ends.
// pipe() waits while pmjq's output is slow, so the job waits too; { end: false }
// keeps pmjq's output open for the next job. (Node makes the pipe a socket
// pair: a job that opens /dev/stdout gets ENXIO, as under journald; >&2 works.)
// Error output goes to pmjq's stderr, its log: line by line, each line marked
// with the job's name and its control characters escaped (text.ts: logLines),
// so that no job writes a line that reads as pmjq's own.
const relay = (from: Readable | null, to: Writable, through: Transform | null = null) => {
  if (from === null) return
  relaying.add(from)
  from.on("data", () => {
    lastOutputAt = Date.now()
  })
  from.once("close", () => {
    relaying.delete(from)
    if (retired()) process.exit(0)
  })
  if (!to.writable) return void from.resume()
  if (through === null) from.pipe(to, { end: false })
  else from.pipe(through).pipe(to, { end: false })
}
// Should pmjq's output fail (a closed pipe), jobs' output is dropped: neither
// a job blocked on a full pipe nor this helper dying of an unheard 'error'.
// pipe() stops at a failed write and leaves the job's side paused; resuming it
// with nothing attached reads on and drops. Every running job's pipe listens
// on these two (as many as -j allows: no leak to warn about).
for (const sink of [process.stdout, process.stderr]) {
  sink.setMaxListeners(0)
  sink.on("error", () => {})
  sink.on("unpipe", (source: Readable) => source.resume())
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
  const user = request.user
  // Its output is its owner's, like the script.
  const owner = user === null ? null : { uid: user.uid, gid: user.gid }
  const [command, args] = jobCommand(request.path, user, request.nproc)
  let child: cp.ChildProcess
  try {
    const stdout = request.stdout === null ? "pipe" : createOutput(request.stdout, owner, created)
    if (typeof stdout === "number") fds.push(stdout)
    const stderr = request.stderr === null ? "pipe" : createOutput(request.stderr, owner, created)
    if (typeof stderr === "number") fds.push(stderr)
    child = cp.spawn(command, args, {
      cwd: jobDirectory(user, request.cwd, isDirectory),
      env: jobEnvironment(base, user, request.env, request.keepEnv),
      stdio: ["ignore", stdout, stderr],
      // Its own process group, so pmjq can signal the job and all it forked.
      detached: true
    })
  } catch (e) {
    return failed(e)
  }
  relay(child.stdout, process.stdout)
  relay(child.stderr, process.stderr, logLines(request.env.PMJQ_JOB ?? request.path))
  // A failed exec of setpriv or prlimit themselves is not the job's doing: say
  // which (the job's own exec errors are reported by setpriv, exit 127 or 126).
  child.once("error", (e: NodeJS.ErrnoException) =>
    failed(command === request.path ? e : new SpawnError("EHELPER", `${command} (util-linux) could not be run: ${e.code ?? e.message}`))
  )
  // Counted from here, not from its 'spawn' event: spawn(2) returns once the
  // exec worked, so the job runs from now on. The event comes later, as much
  // later as this loop is busy forking other jobs (tens of ms on a loaded
  // machine), and timed from it the durations came out short. Should pmjq die
  // in between, the job is one to stop (and wait for) before this helper exits.
  const startedAt = Date.now()
  if (child.pid !== undefined) running.add(child.pid)
  // The output files' descriptors stay open until the job ends: its output is
  // synced through them before its record is written.
  child.once("spawn", () => {
    // Read while it is our child and not reaped: its pid is surely its own.
    send({ id: request.id, pid: child.pid!, startTicks: startTicks(child.pid!) })
  })
  child.once("exit", (exitCode, signal) => {
    const endedAt = Date.now()
    running.delete(child.pid!)
    // A job that died of the signal sent because pmjq died did not end on its
    // own: no outcome is recorded, and recovery runs it again. Any other end is
    // its own (one that catches SIGTERM and exits 143 has chosen its outcome;
    // one in the middle of exiting when the signal came ignores it).
    const killedByUs = stopped.has(child.pid!) && (signal === "SIGTERM" || signal === "SIGKILL")
    // Its output on disk before its record (a power cut never leaves a record
    // beside output that was lost), as far as the job wrote it: a child of the
    // job may write on. On this helper's thread, like the record's own sync:
    // each takes a millisecond or two on a local disk, a round trip on a
    // cluster volume, and every other job's spawn waits meanwhile.
    for (const fd of fds) {
      try {
        fs.fdatasyncSync(fd)
      } catch {
        // A full or failing disk: the record, written next, says so if it cannot be written either.
      }
    }
    closeFds()
    const recorded = request.record !== null && !killedByUs &&
      writeRecord(
        request.record.file,
        recordText(startedRecord(request.record.base, child.pid!, startedAt, endedAt, {
          _tag: "Exited",
          exit: { exitCode, signal },
          interrupted: false,
          timedOut: null
        })),
        user
      )
    send({ id: request.id, exitCode, signal, startedAt, endedAt, recorded })
  })
}

/** Set when pmjq runs with --on-stop leave: its jobs outlive it here. */
let keeping: KeepRequest["keep"] | null = null
/** Let go by pmjq (RetireRequest): nothing of ours runs, and nothing more will. */
let retiring = false
/** When a job's output last came through (retire: how long it has been quiet). */
let lastOutputAt = 0

// The heartbeat as pmjq last wrote it, kept fresh: other nodes (another host
// goes by its age) must not take running jobs for orphans. Only one spawner
// beats: the first in pmjq's list that still runs (one with no job left has
// exited). A heartbeat a live process owns (the next pmjq's) is left alone.
// Every "still runs" is by pid and start time: a user who forks until she
// holds the pid of the pmjq that left must not stop the beats (the node would
// be taken for dead, and its running jobs run again elsewhere).
const beat = (keep: KeepRequest["keep"]) => {
  if (running.size === 0) return
  const mine = keep.spawners.findIndex((spawner) => spawner.pid === process.pid)
  if (keep.spawners.slice(0, Math.max(0, mine)).some(stillRuns)) return
  // Read as pmjq reads its own files (files.ts): no symlink followed, no FIFO
  // waited on, and only when it is pmjq's.
  let current: Record<string, unknown>
  try {
    const text = readRegular(keep.heartbeatFile, process.getuid?.() ?? 0)
    if (text === null) return
    current = JSON.parse(text) as Record<string, unknown>
  } catch {
    return
  }
  if (typeof current.pid !== "number") return
  const writer = { pid: current.pid, startTicks: typeof current.startTicks === "number" ? current.startTicks : null }
  if (stillRuns(writer)) return
  try {
    // As pmjq writes it (spool/Nodes.ts): a hidden aside, renamed over.
    fs.rmSync(keep.heartbeatAside, { force: true })
    writeNew(keep.heartbeatAside, JSON.stringify({ ...current, beatAt: new Date().toISOString(), left: true }) + "\n", 0o644, null)
    fs.renameSync(keep.heartbeatAside, keep.heartbeatFile)
  } catch {
    // The next beat tries again.
  }
}

process.on("message", (message: SpawnerMessage) => {
  if ("retire" in message) retiring = true
  else if ("keep" in message) keeping = message.keep
  else spawn(message)
})
const ready: Ready = { ready: true }
if (process.connected) process.send?.(ready)
// Ctrl-C reaches the whole terminal group and systemd signals the whole unit;
// pmjq decides when jobs stop, so the spawner outlives those signals and ends
// only when pmjq disconnects. Jobs start with default signal handling again.
process.on("SIGINT", () => {})
process.on("SIGTERM", () => {})
// A terminal's hangup, or `kill -HUP` to the group (pmjq's restart in place).
process.on("SIGHUP", () => {})
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
// that recovery can run them again without a second copy alive. Output jobs
// already wrote is copied out first, for at most a second once no job runs:
// a job's background child may hold its pipe open for ever.
const FLUSH_FOR = 1000
let gone = false
/** Let go, and the last output copied: done. */
const retired = () => gone && retiring && running.size === 0 && relaying.size === 0
function parentGone() {
  if (gone) return
  gone = true
  const idle = () => running.size === 0 && relaying.size === 0
  if (idle()) process.exit(0)
  if (retiring && running.size === 0) return retire()
  if (keeping !== null) return leftBehind(keeping, idle)
  if (running.size > 0) {
    // Exits already waiting in the event loop are handled (and recorded) first.
    setImmediate(() => signalGroups("SIGTERM"))
    setTimeout(() => {
      signalGroups("SIGKILL")
      process.exit(0)
    }, 5000)
  }
  let lastJobAt = Date.now()
  const poll = setInterval(() => {
    if (running.size > 0) lastJobAt = Date.now()
    if (idle() || Date.now() - lastJobAt > FLUSH_FOR) process.exit(0)
  }, 50)
  poll.unref()
}
// Let go by pmjq while idle: what jobs' background children still write is
// copied as long as it keeps coming (a quiet spell of RETIRED_QUIET_FOR ends
// it) and pmjq runs (once pmjq is gone, FLUSH_FOR as above); the last relay to
// close ends this helper at once (relay). Never for ever: a child that holds
// its output open and says nothing must not keep a ~43 MiB helper, or pmjq's
// own output, open with it.
const RETIRED_QUIET_FOR = 10_000
function retire() {
  const pmjq = process.ppid
  lastOutputAt = Date.now()
  setInterval(() => {
    if (Date.now() - lastOutputAt > (process.ppid === pmjq ? RETIRED_QUIET_FOR : FLUSH_FOR)) process.exit(0)
  }, 200)
}
// pmjq left its jobs to us (--on-stop leave): they run to their end, each
// record written as it ends; then this helper exits (output still being
// copied gets at most FLUSH_FOR once no job runs, as above).
function leftBehind(keep: KeepRequest["keep"], idle: () => boolean) {
  setInterval(() => beat(keep), keep.everyMs)
  beat(keep)
  let lastJobAt = Date.now()
  setInterval(() => {
    if (running.size > 0) lastJobAt = Date.now()
    if (idle() || Date.now() - lastJobAt > FLUSH_FOR) process.exit(0)
  }, 50)
}
process.on("disconnect", parentGone)
