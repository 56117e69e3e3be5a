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
import { decodeDoneMark, type DoneMark } from "../decode.js"
import { errnoCode } from "../errors.js"
import { PRIVATE, Untrusted } from "../files.js"
import { asideOf, doneMarkOf } from "../spool/layout.js"
import { type Calls, replaceFile } from "../syscalls.js"

export type ArchivalMark = DoneMark

const uid = process.getuid?.() ?? 0

/**
 * The mark beside RECORDFILE, if any. Only pmjq's own, decoded mark counts;
 * anything else there is no mark (and goes with the folder). An I/O error
 * fails: the mark may be there.
 */
export const readMark = async (calls: Calls, recordFile: string): Promise<ArchivalMark | null> => {
  const file = doneMarkOf(recordFile)
  const text = await calls.readlink(file).catch((e: unknown) => {
    const code = errnoCode(e)
    if (code === "ENOENT") return null
    // Not a symlink: a mark written as a file (a target too long for a
    // symlink, or an older pmjq's), or something that is no mark.
    if (code === "EINVAL") {
      return calls.readText(file, uid).catch((e: unknown) => (e instanceof Untrusted || errnoCode(e) === "ELOOP" ? null : Promise.reject(e)))
    }
    return Promise.reject(e)
  })
  if (text === null) return null
  const mark = decodeDoneMark(text)
  return Either.isRight(mark) ? mark.right : null
}

/**
 * The mark is a symlink whose target is its text: made whole by one call
 * (symlink(2) is atomic, and never follows or replaces anything), where a file
 * takes four (create, write, close, rename): each a round trip on a cluster
 * volume. Replacing one ("placing" by "placed") is a symlink aside renamed
 * over it. A text too long for a symlink is written as a file, as before.
 */
export const writeMark = async (calls: Calls, recordFile: string, mark: ArchivalMark): Promise<void> => {
  const file = doneMarkOf(recordFile)
  const text = JSON.stringify(mark)
  const made = await calls.symlink(text, file).then(() => "made" as const, (e: unknown) => {
    const code = errnoCode(e)
    return code === "EEXIST" || code === "ENAMETOOLONG" ? code : Promise.reject(e)
  })
  if (made === "made") return
  if (made === "ENAMETOOLONG") return replaceFile(calls, file, asideOf(file), text + "\n", { mode: PRIVATE })
  const aside = asideOf(file)
  await calls.symlink(text, aside).catch(async (e: unknown) => {
    if (errnoCode(e) !== "EEXIST") throw e
    await calls.unlink(aside)
    await calls.symlink(text, aside)
  })
  await calls.rename(aside, file)
}
