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
 * When PID started, in clock ticks since boot (field 22 of /proc/PID/stat):
 * with the pid, what tells a process from a later one that reused its pid.
 * Null when it is gone or there is no /proc.
 */
export const startTicks = (pid: number): number | null => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // Fields from the 3rd (state) on: the start time is the 22nd.
    const ticks = Number(fields[22 - 3])
    return Number.isInteger(ticks) ? ticks : null
  } catch {
    return null
  }
}

/** The process PID that started at TICKS is still there (not a later one with its pid, not a zombie). */
export const isSameProcess = (pid: number, ticks: number) => startTicks(pid) === ticks && !isZombie(pid)

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
