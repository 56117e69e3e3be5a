/**
 * The archival mark beside a finished job's record (spool/layout.ts:
 * doneMarkOf): where its archive entry goes, "placing" just before the one
 * link(2) that makes the entry whole (its record, staged beside it first:
 * job/Archive.ts), "placed" once it is, and removed last, with the rest of
 * the job's files in the running folder. An entry without its record is not
 * one (no reader takes it for one): what a crash before "placing" left.
 *
 * Whoever finishes an archival cut short (this node after a crash, or a node
 * that took the folder over, with an archive dir of its own, on another host)
 * reads it first. "placed": the entry is whole where it says; only the running
 * folder is cleared, and the job is never archived twice. "placing": the other
 * entry may or may not have become whole, in a dir this node may not see (a
 * window of one link and one write); the job is archived again, so that
 * nothing is lost, and the log says where the other one may be.
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
  const text = await calls.readText(doneMarkOf(recordFile), uid).catch((e: unknown) =>
    e instanceof Untrusted || errnoCode(e) === "ELOOP" ? null : Promise.reject(e)
  )
  if (text === null) return null
  const mark = decodeDoneMark(text)
  return Either.isRight(mark) ? mark.right : null
}

/** Written aside and renamed in, like the record: whole or absent. */
export const writeMark = (calls: Calls, recordFile: string, mark: ArchivalMark): Promise<void> => {
  const file = doneMarkOf(recordFile)
  return replaceFile(calls, file, asideOf(file), JSON.stringify(mark) + "\n", { mode: PRIVATE })
}
