/**
 * How jobs ended, where every node sharing the spool can read it: one note a
 * name, `.pmjq/ended/NAME`, for the jobs that run `--after` it (their archive
 * dirs may be on other hosts). Written by whoever archives the job, before the
 * job leaves its running folder, so that a job named NAME is always either
 * running, or noted; replaced by each later job of that name (the last one to
 * end counts). Owned by pmjq, readable by all, like `ps` (a name and an outcome).
 */
import { Either } from "effect"
import { randomBytes } from "node:crypto"
import { decodeEndedNote, type EndedNote } from "../decode.js"
import { ownDirsBelow } from "../dirs.js"
import { errnoCode } from "../errors.js"
import type { JobRecord } from "../record.js"
import type { Calls } from "../syscalls.js"
import { endedAside, endedFile, stateParts } from "./layout.js"

export type { EndedNote }

const NOTE_MODE = 0o644
const MAX_NOTE = 4096

export const noteOf = (record: JobRecord): EndedNote => ({
  name: record.name,
  outcome: record.outcome,
  exitCode: record.exitCode,
  endedAt: record.endedAt,
  node: record.node
})

/**
 * A writer of ended notes for SPOOL. The folder is made (and checked to be
 * pmjq's own) once, and again only when a write finds it gone.
 */
export const makeEndedNotes = (calls: Calls, spool: string) => {
  let made = false
  const write = async (record: JobRecord) => {
    const aside = endedAside(spool, process.pid, randomBytes(6).toString("hex"))
    await calls.writeNew(aside, JSON.stringify(noteOf(record)), NOTE_MODE)
    await calls.rename(aside, endedFile(spool, record.name))
  }
  return async (record: JobRecord): Promise<void> => {
    if (!made) {
      await ownDirsBelow(calls, spool, stateParts.ended)
      made = true
    }
    try {
      await write(record)
    } catch (e) {
      if (errnoCode(e) !== "ENOENT") throw e
      await ownDirsBelow(calls, spool, stateParts.ended)
      await write(record)
    }
  }
}

/**
 * How the last job named NAME ended, or null when no note says (none, or one
 * that is not pmjq's: OWNER is the uid pmjq's own files have).
 */
export const readEnded = async (calls: Calls, spool: string, name: string, owner: number): Promise<EndedNote | null> => {
  const text = await calls.readText(endedFile(spool, name), owner, MAX_NOTE).catch(() => null)
  if (text === null) return null
  const note = decodeEndedNote(text)
  return Either.isRight(note) && note.right.name === name ? note.right : null
}
