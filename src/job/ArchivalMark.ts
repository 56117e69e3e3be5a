/**
 * The archival mark beside a finished job's record (spool/layout.ts:
 * doneMarkOf): where its archive entry is, "placed" once the entry is whole,
 * and removed last, with the rest of the job's files in the running folder.
 * An entry without its record is not one (no reader takes it for one).
 *
 * Whoever finishes an archival cut short (this node after a crash, or a node
 * that took the folder over, with an archive dir of its own, on another host)
 * reads it first. "placed": the entry is whole where it says; only the running
 * folder is cleared, and the job is never archived twice. "placing" is written
 * only when the record is copied into an archive on another filesystem, just
 * before the link that makes the entry whole: the entry may or may not have
 * become whole, in a dir this node may not see; the job is archived again, so
 * that nothing is lost, and the log says where the other one may be. A record
 * linked on one filesystem needs no "placing": a second try finds its entry by
 * the record's inode.
 *
 * A mark is a symlink whose target is its text, in a folder only pmjq writes
 * in (the running folder, checked as pmjq's own): read with readlink, never
 * followed. One written as a file (a text too long for a symlink, or an older
 * pmjq's) is still read, if it is pmjq's.
 */
import { Either } from "effect"
import { decodeDoneMark, type DoneMark } from "../record/decode.js"
import { errnoCode } from "../errors/errors.js"
import { PRIVATE, Untrusted } from "../filesystem/files.js"
import { asideOf, doneMarkOf } from "../spool/layout.js"
import { type Calls, readLinkedText, replaceLinkedText } from "../filesystem/syscalls.js"

export type ArchivalMark = DoneMark

const uid = process.getuid?.() ?? 0

/**
 * The mark beside RECORDFILE, if any. Only pmjq's own, decoded mark counts;
 * anything else there is no mark (and goes with the folder). An I/O error
 * fails: the mark may be there.
 */
export const readMark = async (calls: Calls, recordFile: string): Promise<ArchivalMark | null> => {
  const text = await readLinkedText(calls, doneMarkOf(recordFile), uid).catch((e: unknown) =>
    e instanceof Untrusted || errnoCode(e) === "ELOOP" ? null : Promise.reject(e)
  )
  if (text === null) return null
  const mark = decodeDoneMark(text)
  return Either.isRight(mark) ? mark.right : null
}

/**
 * Made where none is (the usual case: "placed" after a link) by one call;
 * "placing" replaced by "placed" through an aside (syscalls.ts:
 * replaceLinkedText).
 */
export const writeMark = async (calls: Calls, recordFile: string, mark: ArchivalMark): Promise<void> => {
  const file = doneMarkOf(recordFile)
  const text = JSON.stringify(mark)
  const made = await calls.symlink(text, file).then(() => true, (e: unknown) => {
    const code = errnoCode(e)
    return code === "EEXIST" || code === "ENAMETOOLONG" ? false : Promise.reject(e)
  })
  if (!made) await replaceLinkedText(calls, file, asideOf(file), text, PRIVATE)
}
