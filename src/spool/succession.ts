/**
 * A pmjq started without --node-id takes the id of the previous run on this
 * host, when that run stopped with --on-stop leave (its heartbeat says `left`,
 * and its process is gone): so it adopts the jobs that run still has, as the
 * next run with the same --node-id would. Only a default id (HOST-PID) of this
 * host is taken: a node given its id by hand is waited for.
 *
 * Two pmjq starting at once must not take the same id, nor one started by hand
 * (or by a restart in place) with it: each takes the succession of that very
 * predecessor by linking a file of its own to `.ID.successor-of-PID` (link(2)
 * fails when it exists), a name no later succession reuses.
 */
import { Either } from "effect"
import * as path from "node:path"
import { decodeHeartbeat, writerOf } from "../record/decode.js"
import { stillRuns } from "../process/proc.js"
import type { Calls } from "../filesystem/syscalls.js"
import { isHidden, nodesDir } from "./layout.js"

const defaultId = (host: string) => new RegExp(`^${host.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}-\\d+$`)

const removed = (calls: Calls, file: string) => calls.unlink(file).catch(() => undefined)

/**
 * Takes the succession of the process PREDECESSOR as node NODE: true for one
 * process only, ever (link(2) of a file of ours to a name unique to that
 * predecessor fails when another took it). The marks of earlier successions
 * of NODE go.
 */
const takeSuccession = async (calls: Calls, dir: string, node: string, predecessor: number) => {
  const lock = path.join(dir, `.${node}.successor-of-${predecessor}`)
  // Not named like an aside (.tmp): those in this folder are heartbeats'.
  const mine = path.join(dir, `.${node}.successor-${process.pid}.new`)
  try {
    await calls.writeNew(mine, `${process.pid}\n`, 0o644, null)
    await calls.link(mine, lock)
  } catch {
    return false
  } finally {
    await removed(calls, mine)
  }
  for (const old of await calls.readdir(dir)) {
    if (old.startsWith(`.${node}.successor-of-`) && path.join(dir, old) !== lock) await removed(calls, path.join(dir, old))
  }
  return true
}

/** NODE's heartbeat, when pmjq's own and it says it left; null otherwise. */
const leftHeartbeat = async (calls: Calls, dir: string, node: string, owner: number) => {
  try {
    const text = await calls.readText(path.join(dir, node), owner)
    const hb = text === null ? null : Either.getOrNull(decodeHeartbeat(text))
    return hb !== null && hb.left === true ? hb : null
  } catch {
    return null
  }
}

/** The nodes folder when it is pmjq's own (this uid's, not writable by others); null otherwise. */
const ownNodesDir = async (calls: Calls, spool: string) => {
  const dir = nodesDir(spool)
  const stat = await calls.lstat(dir).catch(() => null)
  return stat !== null && stat.isDirectory() && stat.uid === (process.getuid?.() ?? 0) && (stat.mode & 0o022) === 0 ? dir : null
}

/**
 * Starting as NODE (an id given by hand, or by a restart in place): when its
 * heartbeat says it left and its process on HOST is gone, this process must
 * be its only successor. False when another process has just taken it.
 */
export const mayTakeOver = async (calls: Calls, spool: string, host: string, node: string): Promise<boolean> => {
  const dir = await ownNodesDir(calls, spool)
  if (dir === null) return true
  const hb = await leftHeartbeat(calls, dir, node, process.getuid?.() ?? 0)
  if (hb === null || hb.host !== host || stillRuns(writerOf(hb))) return true
  return takeSuccession(calls, dir, node, hb.pid)
}

/** The id of the run before on HOST that left its jobs running, taken for this process; null when there is none. */
export const successorId = async (calls: Calls, spool: string, host: string): Promise<string | null> => {
  // Only pmjq's own: a folder and heartbeats of this uid (nodes and their
  // spawners write them as pmjq), never a user's planted ones.
  const dir = await ownNodesDir(calls, spool)
  if (dir === null) return null
  const owner = process.getuid?.() ?? 0
  const left: Array<{ readonly node: string; readonly pid: number; readonly beatAt: string }> = []
  for (const node of (await calls.readdir(dir)).filter((n) => !isHidden(n) && defaultId(host).test(n))) {
    const hb = await leftHeartbeat(calls, dir, node, owner)
    if (hb !== null && hb.host === host && !stillRuns(writerOf(hb))) left.push({ node, pid: hb.pid, beatAt: hb.beatAt })
  }
  for (const { node, pid } of left.sort((a, b) => b.beatAt.localeCompare(a.beatAt))) {
    if (await takeSuccession(calls, dir, node, pid)) return node
  }
  return null
}
