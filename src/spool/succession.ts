/**
 * A pmjq started without --node-id takes the id of the previous run on this
 * host, when that run stopped with --on-stop leave (its heartbeat says `left`,
 * and its process is gone): so it adopts the jobs that run still has, as the
 * next run with the same --node-id would. Only a default id (HOST-PID) of this
 * host is taken: a node given its id by hand is waited for.
 *
 * Two pmjq starting at once must not take the same id: each takes it by
 * linking a file of its own to `.ID.successor` (link(2) fails when it exists);
 * one left by a successor that died is first renamed away (rename(2) of one
 * file succeeds once).
 */
import { Either } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { decodeHeartbeat } from "../decode.js"
import { readRegular, writeNew } from "../files.js"
import { isAlive } from "../recovery.js"
import { isHidden, nodesDir } from "./layout.js"

const defaultId = (host: string) => new RegExp(`^${host.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}-\\d+$`)

const pidIn = (file: string) => {
  try {
    return Number(fs.readFileSync(file, "utf8").trim())
  } catch {
    return null
  }
}

/** Takes NODE's succession for this process; false when another live process has it. */
const takeSuccession = (dir: string, node: string) => {
  const lock = path.join(dir, `.${node}.successor`)
  const mine = path.join(dir, `.${node}.successor-${process.pid}`)
  try {
    writeNew(mine, `${process.pid}\n`, 0o644, null)
    for (let tries = 0; tries < 2; tries++) {
      try {
        fs.linkSync(mine, lock)
        return true
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") return false
        const holder = pidIn(lock)
        if (holder !== null && holder !== process.pid && isAlive(holder)) return false
        fs.renameSync(lock, `${lock}-stale-${process.pid}`)
        fs.rmSync(`${lock}-stale-${process.pid}`, { force: true })
      }
    }
    return false
  } catch {
    return false
  } finally {
    fs.rmSync(mine, { force: true })
  }
}

/** The id of the run before on HOST that left its jobs running, taken for this process; null when there is none. */
export const successorId = (spool: string, host: string): string | null => {
  const dir = nodesDir(spool)
  // Only pmjq's own: a folder and heartbeats of this uid (nodes and their
  // spawners write them as pmjq), never a user's planted ones.
  const owner = process.getuid?.() ?? 0
  let names: Array<string>
  try {
    const stat = fs.lstatSync(dir)
    if (!stat.isDirectory() || stat.uid !== owner || (stat.mode & 0o022) !== 0) return null
    names = fs.readdirSync(dir)
  } catch {
    return null
  }
  const left = names.filter((n) => !isHidden(n) && defaultId(host).test(n)).flatMap((node) => {
    try {
      const text = readRegular(path.join(dir, node), owner)
      const hb = text === null ? null : Either.getOrNull(decodeHeartbeat(text))
      return hb !== null && hb.left === true && hb.host === host && !isAlive(hb.pid) ? [{ node, beatAt: hb.beatAt }] : []
    } catch {
      return []
    }
  }).sort((a, b) => b.beatAt.localeCompare(a.beatAt))
  return left.find(({ node }) => takeSuccession(dir, node))?.node ?? null
}
