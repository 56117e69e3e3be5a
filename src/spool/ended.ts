/**
 * How jobs ended, where every node sharing the spool can read it: one note a
 * name and owner, `.pmjq/ended/UID/NAME`, for the jobs that run `--after` it
 * (their archive dirs may be on other hosts). Written by whoever archives the
 * job, before the job leaves its running folder, so that a job named NAME is
 * always either running, or noted; replaced by each later job of that name and
 * owner (the last one to end counts), never by an earlier one. Owned by pmjq,
 * readable by all, like `ps` (a name and an outcome). Kept ENDED_KEPT, then
 * pruned (a spool sees a new name each submit).
 */
import { Duration, Either } from "effect"
import { randomBytes } from "node:crypto"
import * as path from "node:path"
import { decodeEndedNote, type EndedNote } from "../record/decode.js"
import { listOrEmpty, ownDirsBelow } from "../filesystem/dirs.js"
import { errnoCode } from "../errors/errors.js"
import type { JobRecord } from "../record/record.js"
import { type Calls, readLinkedText, replaceLinkedText } from "../filesystem/syscalls.js"
import { asideOf, endedAside, endedFile, endedParts, isAside, isHidden, stateParts } from "./layout.js"

export type { EndedNote }

const NOTE_MODE = 0o644
const MAX_NOTE = 4096

/** How long a job's end is kept for jobs that run after it. */
export const ENDED_KEPT = Duration.days(7)

export const noteOf = (record: JobRecord & { readonly uid: number }): EndedNote => ({
  name: record.name,
  uid: record.uid,
  outcome: record.outcome,
  exitCode: record.exitCode,
  endedAt: record.endedAt,
  node: record.node
})

/**
 * How UID's last job named NAME ended, or null when no note says (none, one
 * that does not decode, or a file note that is not pmjq's: OWNER is the uid
 * pmjq's own files have). A note is a symlink in .pmjq/ended/UID, folders only
 * pmjq can write in (.pmjq is checked as pmjq's own every recovery round, and
 * each UID folder as it is made), so its target is believed as read.
 */
export const readEnded = async (calls: Calls, spool: string, uid: number, name: string, owner: number): Promise<EndedNote | null> => {
  const text = await readLinkedText(calls, endedFile(spool, uid, name), owner, MAX_NOTE).catch(() => null)
  if (text === null) return null
  const note = decodeEndedNote(text)
  return Either.isRight(note) && note.right.name === name && note.right.uid === uid ? note.right : null
}

/**
 * A writer of ended notes for SPOOL. Each owner's folder is made (and checked
 * to be pmjq's own) once, and again only when a write finds it gone. A job
 * whose owner is not known (an adopted job without a record) leaves no note.
 */
export const makeEndedNotes = (calls: Calls, spool: string) => {
  const made = new Set<number>()
  const own = process.getuid?.() ?? 0
  // Only pmjq writes in .pmjq/ended/UID (made and checked as its own), so a
  // note is believed as read, without an lstat.
  const write = (note: EndedNote) =>
    replaceLinkedText(
      calls,
      endedFile(spool, note.uid, note.name),
      endedAside(spool, note.uid, process.pid, randomBytes(6).toString("hex")),
      JSON.stringify(note),
      NOTE_MODE
    )
  return async (record: JobRecord): Promise<void> => {
    if (record.uid === null) return
    const note = noteOf({ ...record, uid: record.uid })
    if (!made.has(note.uid)) {
      await ownDirsBelow(calls, spool, endedParts(note.uid))
      made.add(note.uid)
    }
    // A job archived late (recovery, a retry) must not replace a later one's end.
    const before = await readEnded(calls, spool, note.uid, note.name, own)
    if (before !== null && Date.parse(before.endedAt) > Date.parse(note.endedAt)) return
    try {
      await write(note)
    } catch (e) {
      if (errnoCode(e) !== "ENOENT") throw e
      await ownDirsBelow(calls, spool, endedParts(note.uid))
      await write(note)
    }
  }
}

/**
 * Removes the notes older than KEPT (by mtime) at NOW; returns how many. Each
 * is first renamed aside, then looked at: one a job replaced meanwhile is put
 * back (link: never over a newer one), so a fresh end is never lost.
 */
export const pruneEnded = async (calls: Calls, spool: string, now: number, keptMs: number): Promise<number> => {
  const root = path.join(spool, ...stateParts.ended)
  let removed = 0
  for (const uid of await listOrEmpty(calls, root)) {
    if (!/^\d+$/.test(uid)) continue
    const dir = path.join(root, uid)
    for (const name of await listOrEmpty(calls, dir)) {
      const file = path.join(dir, name)
      const stat = await calls.lstat(file).catch(() => null)
      if (stat === null || now - stat.mtimeMs < keptMs) continue
      // An aside a crash left is removed as any old note.
      if (isHidden(name) && isAside(name)) {
        await calls.unlink(file).catch(() => undefined)
        continue
      }
      const aside = asideOf(path.join(dir, `.prune-${randomBytes(6).toString("hex")}`))
      if (!(await calls.rename(file, aside).then(() => true, () => false))) continue
      const moved = await calls.lstat(aside).catch(() => null)
      if (moved !== null && now - moved.mtimeMs < keptMs) await calls.link(aside, file).catch(() => undefined)
      else removed++
      await calls.unlink(aside).catch(() => undefined)
    }
  }
  return removed
}
