/**
 * `pmjq pause`: a file in pmjq's own folder, `.pmjq/paused/spool` for every
 * node sharing the spool, `.pmjq/paused/node-NODE` for one. Only root (or
 * pmjq's own user) can write there, which is who may pause; every node reads
 * them each --poll, so a pause holds across nodes, restarts and upgrades.
 * Paused nodes claim nothing new; what runs goes on.
 */
import { Either } from "effect"
import { decodePauseNote, type PauseNote } from "../record/decode.js"
import { UntrustedDirectory } from "../filesystem/dirs.js"
import type { Calls } from "../filesystem/syscalls.js"
import { pausedDir, pausedFile, stateDir } from "./layout.js"

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

// A folder of pmjq's: a real directory, owned by root or OWNER (null: whoever
// owns .pmjq is pmjq's user; the kernel lets only it and root write there),
// that no one else may write.
const checkOwn = async (calls: Calls, dir: string, owner: number | null) => {
  const s = await calls.lstat(dir)
  if (!s.isDirectory() || s.isSymbolicLink() || (owner !== null && s.uid !== 0 && s.uid !== owner) || (s.mode & 0o022) !== 0) {
    throw new UntrustedDirectory({ dir, why: "is not pmjq's own folder (a real directory of root's or pmjq's, writable by no one else)" })
  }
  return s
}

/**
 * Pauses SPOOL (NODE null) or one node, as root or the user pmjq runs as (the
 * owner of .pmjq, which is never made here: one made by whoever paused first
 * would be theirs, and refused by pmjq). Written aside and renamed over, so a
 * reader sees all of it.
 */
export const writePause = async (calls: Calls, spool: string, node: string | null, note: PauseNote) => {
  const state = await checkOwn(calls, stateDir(spool), null)
  // Made 0755 whatever the umask: every node, run as whoever, reads the pauses.
  const made = await calls.mkdir(pausedDir(spool), 0o755).then(() => true, (e: NodeJS.ErrnoException) => (e.code === "EEXIST" ? false : Promise.reject(e)))
  if (made) await calls.chmodDir(pausedDir(spool), 0o755)
  await checkOwn(calls, pausedDir(spool), state.uid)
  const file = pausedFile(spool, node)
  const aside = `${file}.${process.pid}.tmp`
  await calls.unlink(aside).catch(() => undefined)
  await calls.writeNew(aside, JSON.stringify(note), 0o644)
  await calls.rename(aside, file)
}

/** Ends a pause; false when there was none. */
export const removePause = (calls: Calls, spool: string, node: string | null) =>
  calls.unlink(pausedFile(spool, node)).then(() => true, (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? false : Promise.reject(e)))
