/**
 * `pmjq pause`: a file in pmjq's own folder, `.pmjq/paused/spool` for every
 * node sharing the spool, `.pmjq/paused/node-NODE` for one. Only root (or
 * pmjq's own user) can write there, which is who may pause; every node reads
 * them each --poll, so a pause holds across nodes, restarts and upgrades.
 * Paused nodes claim nothing new; what runs goes on.
 */
import { Either } from "effect"
import { decodePauseNote, type PauseNote } from "../decode.js"
import { ownDirsBelow, verifyOwnDir } from "../dirs.js"
import type { Calls } from "../syscalls.js"
import { pausedFile, stateDir, stateParts } from "./layout.js"

export interface Pause extends PauseNote {
  /** The node paused, or null for the whole spool. */
  readonly node: string | null
}

const MAX_NOTE = 4096

/** The pause note of NODE (null: the whole spool), read as pmjq (OWNER) or root wrote it; null when there is none. */
export const readNote = async (calls: Calls, spool: string, node: string | null, owner: number): Promise<Pause | null> => {
  // Root's pause holds a node running as pmjq's own user too.
  const file = pausedFile(spool, node)
  const text = await calls.readText(file, owner, MAX_NOTE).catch(() => (owner === 0 ? null : calls.readText(file, 0, MAX_NOTE).catch(() => null)))
  if (text === null) return null
  // A note pmjq cannot read is still a pause: whoever could write it there may pause.
  const note = decodePauseNote(text)
  return Either.isRight(note) ? { ...note.right, node } : { by: "unknown", at: new Date(0).toISOString(), reason: "unreadable pause note", node }
}

/** The pause that holds NODE: the whole spool's first, then its own; null when neither. */
export const readPause = async (calls: Calls, spool: string, node: string, owner: number): Promise<Pause | null> =>
  (await readNote(calls, spool, null, owner)) ?? (await readNote(calls, spool, node, owner))

/** Pauses SPOOL (NODE null) or one node: written aside and renamed over, so a reader sees all of it. */
export const writePause = async (calls: Calls, spool: string, node: string | null, note: PauseNote) => {
  // Never made here: a .pmjq made by whoever pauses first would be theirs (and refused by pmjq).
  await verifyOwnDir(calls, stateDir(spool))
  await ownDirsBelow(calls, spool, stateParts.paused)
  const file = pausedFile(spool, node)
  const aside = `${file}.${process.pid}.tmp`
  await calls.unlink(aside).catch(() => undefined)
  await calls.writeNew(aside, JSON.stringify(note), 0o644)
  await calls.rename(aside, file)
}

/** Ends a pause; false when there was none. */
export const removePause = (calls: Calls, spool: string, node: string | null) =>
  calls.unlink(pausedFile(spool, node)).then(() => true, (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? false : Promise.reject(e)))
