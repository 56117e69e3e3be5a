/** What /proc says of a process (Linux). */
import * as fs from "node:fs"

/**
 * True when PID has ended but its parent has not reaped it yet; false when it
 * runs, is gone, or there is no /proc to ask.
 */
export const isZombie = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // The state follows the command name, which may itself hold ") ".
    return stat[stat.lastIndexOf(")") + 2] === "Z"
  } catch {
    return false
  }
}

/**
 * Field N (1-based, N >= 3) of /proc/PID/stat, as a number; null when PID is
 * gone, there is no /proc, or the field is not a number. Counted after the
 * command name, which may itself hold ") ".
 */
const statField = (pid: number, n: number): number | null => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const value = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[n - 3])
    return Number.isInteger(value) ? value : null
  } catch {
    return null
  }
}

/**
 * When PID started, in clock ticks since boot (field 22 of /proc/PID/stat):
 * with the pid, what tells a process from a later one that reused its pid.
 * Null when it is gone or there is no /proc.
 */
export const startTicks = (pid: number): number | null => statField(pid, 22)

/** PID's parent (field 4 of /proc/PID/stat); null when it is gone. */
export const parentOf = (pid: number): number | null => statField(pid, 4)

/** The process PID that started at TICKS is still there (not a later one with its pid, not a zombie). */
export const isSameProcess = (pid: number, ticks: number) => startTicks(pid) === ticks && !isZombie(pid)

/**
 * A process as pmjq writes it down (heartbeats, the spawners' handover): its
 * pid and when it started. Any local user can fork until she holds a pid that
 * was pmjq's; with the start time she holds a different process. Null start
 * time: written by a pmjq before it kept one.
 */
export interface ProcessId {
  readonly pid: number
  readonly startTicks: number | null
}

/** PID as a ProcessId, read now (null start time without /proc). */
export const identify = (pid: number): ProcessId => ({ pid, startTicks: startTicks(pid) })

/** This process. */
export const thisProcess: ProcessId = identify(process.pid)

/**
 * Whether PROCESS still runs. Without its start time only "gone" is certain:
 * a pid that exists is taken as alive, which can only make pmjq wait longer
 * (legacy records; pmjq writes every pid with its start time).
 */
export const stillRuns = (target: ProcessId): boolean =>
  target.startTicks === null ? isAlive(target.pid) : isSameProcess(target.pid, target.startTicks)

/** A process that exists and is not a zombie (a killed process nobody reaped yet is dead). */
export const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
  } catch (e) {
    // EPERM: alive, owned by someone else.
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
  return !isZombie(pid)
}

/** SIGNAL to the process group PID leads (a job and all it forked). */
export const signalGroup = (pid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(-pid, signal)
  } catch {
    // ESRCH: the group is already gone, which is what we wanted.
  }
}

/**
 * SIGNAL to the process group LEADER led, unless its pid is another process's
 * now. Linux frees a pid only once no process has it as its pid or its group:
 * while the leader (even a zombie) or any of its group lives, the number is
 * not reused. So the group is signalled when the leader is the very one, or
 * when no process has its pid (what is left of the group holds the number);
 * a different start time means the group is gone and the pid taken again.
 * Checked just before the signal, not a grace period before. A leader whose
 * start time could not be read is signalled as before pmjq kept them: a job
 * that cannot be stopped would be worse.
 */
export const signalGroupOf = (leader: ProcessId, signal: NodeJS.Signals): boolean => {
  const now = startTicks(leader.pid)
  if (now !== null && leader.startTicks !== null && now !== leader.startTicks) return false
  signalGroup(leader.pid, signal)
  return true
}

// A process's argv and environment can be megabytes: only the start is read.
const PROC_READ_MAX = 64 * 1024

/** The start of a NUL-separated /proc file of PID's (cmdline, environ); null when it cannot be read (gone, or another user's environ). */
export const procList = (pid: number, file: "cmdline" | "environ"): ReadonlyArray<string> | null => {
  let fd: number | null = null
  try {
    fd = fs.openSync(`/proc/${pid}/${file}`, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    const buffer = Buffer.alloc(PROC_READ_MAX)
    const read = fs.readSync(fd, buffer, 0, PROC_READ_MAX, 0)
    return buffer.subarray(0, read).toString("utf8").split("\0")
  } catch {
    return null
  } finally {
    if (fd !== null) fs.closeSync(fd)
  }
}

/** The uid a process runs as (the owner of its /proc folder); null when gone. */
export const uidOf = (pid: number): number | null => {
  try {
    return fs.statSync(`/proc/${pid}`).uid
  } catch {
    return null
  }
}

/** The pids of the processes on this host; none when there is no /proc to ask. */
export const processes = (): Array<number> => {
  try {
    return fs.readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number)
  } catch {
    return []
  }
}
