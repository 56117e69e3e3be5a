/**
 * `pmjq retry [--wait] JOB-SPOOL ENTRY...`
 *
 * Submits an archived job's script again, under a fresh name, as `pmjq submit`
 * does (the script already starts where and as it was first submitted), and
 * prints the new name. The new job is the script's owner's: a user retries
 * their own jobs; root may retry anyone's, and the job stays its owner's (never
 * root's, which would run it as root under --run-as-owner).
 */
import { Args, Command, Options } from "@effect/cli"
import { Effect, Either } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { decodeRecord } from "../record/decode.js"
import { describe, errnoCode, InputMissing, NotPermitted, UsageError } from "../errors/errors.js"
import { readRegular, Untrusted } from "../filesystem/files.js"
import { entryFiles, stateDir } from "../spool/layout.js"
import { requireSpool } from "../spool/Spool.js"
import { stateOwner } from "../spool/view.js"
import { enqueue } from "./submit.js"

/** A submitted name's base: what `pmjq submit` put before -STAMP-HOST-PID-RANDOM, so names do not grow with each retry. */
export const baseOf = (name: string) => name.replace(/-\d{8}T\d{6}Z-[A-Za-z0-9_-]+-\d+-[0-9a-f]{6}$/, "") || name

/**
 * pmjq's uid on SPOOL (the owner of its .pmjq): only its records are
 * believed. A user can write a file named like a record beside a script of
 * theirs; what it says (the job's name, its outcome) must not count.
 */
const pmjqUid = (spool: string) =>
  Effect.flatMap(Effect.promise(() => stateOwner(stateDir(spool))), Either.match({
    onRight: (uid): Effect.Effect<number, UsageError | NotPermitted> => Effect.succeed(uid),
    onLeft: (why) =>
      why === "no state yet"
        ? Effect.fail(new UsageError({ reason: `cannot retry: no pmjq has run on ${spool}, so no record can be its` }))
        : Effect.fail(new NotPermitted({ reason: `cannot retry: ${why}, so no record can be told as pmjq's` }))
  }))

const readPmjqRecord = (file: string, pmjq: number) => {
  try {
    return readRegular(file, pmjq)
  } catch (e) {
    if (e instanceof Untrusted) throw new Error(`its record is not one pmjq wrote (${e.why})`)
    throw e
  }
}

// An ENTRY that is not there is EX_NOINPUT (66), told apart from one that is
// there but cannot be retried (64).
const requireEntry = (entry: string) =>
  Effect.try({
    try: () => fs.lstatSync(entryFiles(entry).script),
    catch: (e) =>
      errnoCode(e) === "ENOENT" || errnoCode(e) === "ENOTDIR"
        ? new InputMissing({ what: "archive entry", path: entry })
        : new UsageError({ reason: `cannot retry ${entry}: ${describe(e)}` })
  })

const readEntry = (entry: string, pmjq: number) =>
  Effect.try({
    try: () => {
      const files = entryFiles(entry)
      const stat = fs.lstatSync(files.script)
      const text = readRegular(files.script, stat.uid)
      const recordText = readPmjqRecord(files.record, pmjq)
      if (text === null || recordText === null) throw new Error("no such archive entry (ENTRY is DIR/STAMP_NAME, as pmjq status shows it)")
      const record = decodeRecord(recordText)
      if (Either.isLeft(record)) throw new Error(`its record does not decode: ${record.left}`)
      // A refused file is not a job to run again (a hard link planted to
      // someone else's program, a set-uid file: its copy lost what refused it).
      if (record.right.outcome === "rejected") throw new Error(`it was rejected, never run (${record.right.reason ?? ""}); submit a job of your own instead`)
      // The record says whose job it was: a script that is someone else's, or
      // has other names, is not that job's.
      if (stat.nlink !== 1 || (record.right.uid !== null && record.right.uid !== stat.uid)) {
        throw new Error("its script is not the job's (another owner, or other names)")
      }
      return { text, name: record.right.name, owner: { uid: stat.uid, gid: stat.gid } }
    },
    catch: (e) => new UsageError({ reason: `cannot retry ${entry}: ${(e as Error).message}` })
  })

export const retryCommand = Command.make(
  "retry",
  {
    wait: Options.boolean("wait").pipe(Options.withDescription("wait for each job; print its output; exit as it did")),
    spool: Args.text({ name: "job-spool" }).pipe(Args.withDescription("the spool to submit to")),
    entries: Args.text({ name: "entry" }).pipe(Args.withDescription("an archive entry, DIR/STAMP_NAME"), Args.atLeast(1))
  },
  ({ entries, spool, wait }) =>
    Effect.gen(function*() {
      const dir = path.resolve(spool)
      yield* requireSpool(dir)
      const me = process.getuid?.() ?? 0
      yield* Effect.forEach(entries, (entry) => requireEntry(path.resolve(entry)), { discard: true })
      const pmjq = yield* pmjqUid(dir)
      for (const entry of entries) {
        const found = yield* readEntry(path.resolve(entry), pmjq)
        if (me !== 0 && found.owner.uid !== me) {
          return yield* new NotPermitted({ reason: `${entry} is not yours (its owner is uid ${found.owner.uid})` })
        }
        yield* enqueue(dir, baseOf(found.name), found.text, wait, me === 0 ? found.owner : null)
      }
    })
).pipe(Command.withDescription("Submit archived jobs again, each under a fresh name, as their owner."))

export const RETRY = "pmjq retry [--wait] JOB-SPOOL ENTRY..."
