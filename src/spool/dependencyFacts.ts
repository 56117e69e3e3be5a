/**
 * The facts a job's dependencies are judged on (job/dependencies.ts), looked
 * up in the spool for each name: queued (the spool's listing, or an lstat),
 * held (`.pmjq-held-NAME`), running (any node's running folder, a taken-over
 * one included), or how the last job of that name ended (`.pmjq/ended/NAME`).
 * Only the names asked about are looked at: thousands of waiting jobs on one
 * build cost one lookup.
 */
import * as path from "node:path"
import type { DependencyFacts, Presence } from "../job/dependencies.js"
import type { EndedNote } from "../decode.js"
import type { Calls } from "../syscalls.js"
import { readEnded } from "./ended.js"
import { claimedName, heldName, isAdopted, isHidden, runningRoot } from "./layout.js"

const exists = (calls: Calls, file: string) => calls.lstat(file).then(() => true, () => false)

const listOr = (calls: Calls, dir: string) => calls.entries(dir).catch(() => [])

// Folders taken over from dead nodes nest (a taker that died was taken over
// in turn); a few levels are all a spool ever sees (as spool/places.ts).
const ADOPTED_DEPTH = 4

/** The names of the jobs in every node's running folder now, taken-over folders included. */
export const runningNames = async (calls: Calls, spool: string): Promise<Set<string>> => {
  const names = new Set<string>()
  const root = runningRoot(spool)
  const collect = async (dir: string, depth: number) => {
    for (const e of await listOr(calls, dir)) {
      if (!e.isDirectory && !isHidden(e.name)) names.add(claimedName(e.name))
      else if (e.isDirectory && depth < ADOPTED_DEPTH && isAdopted(e.name)) await collect(path.join(dir, e.name), depth + 1)
    }
  }
  for (const folder of await listOr(calls, root)) if (folder.isDirectory) await collect(path.join(root, folder.name), 0)
  return names
}

/**
 * The facts about NAMES in SPOOL. LISTED: the spool's names at the last
 * listing (null: each is looked up). OWNER: the uid of pmjq's own files (an
 * ended note owned by anyone else is not believed).
 */
export const dependencyFacts = async (
  calls: Calls, spool: string, names: ReadonlyArray<string>, listed: ReadonlySet<string> | null, owner: number
): Promise<DependencyFacts> => {
  const presence = new Map<string, Presence>()
  const ended = new Map<string, EndedNote>()
  let running: Set<string> | null = null
  for (const name of names) {
    if (listed !== null ? listed.has(name) : await exists(calls, path.join(spool, name))) {
      presence.set(name, "queued")
      continue
    }
    if (await exists(calls, path.join(spool, heldName(name)))) {
      presence.set(name, "held")
      continue
    }
    running ??= await runningNames(calls, spool)
    if (running.has(name)) {
      presence.set(name, "running")
      continue
    }
    const note = await readEnded(calls, spool, name, owner)
    if (note !== null) ended.set(name, note)
  }
  return { presence, ended }
}
