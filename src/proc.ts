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
