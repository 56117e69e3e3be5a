/**
 * Archival: a finished job's script, output and record, moved under one entry name
 *
 *   DIR/STAMP_NAME  DIR/STAMP_NAME.out  DIR/STAMP_NAME.err  DIR/STAMP_NAME.json
 *
 * (named by spool/layout.ts, which also cuts a name too long for NAME_MAX).
 * The entry is reserved by creating STAMP_NAME exclusively (link(2) or an
 * O_EXCL copy), so two same-named jobs ending in the same millisecond get
 * STAMP_NAME and STAMP-1_NAME: nothing is ever overwritten. The record is
 * first written whole beside the claim (settle), and linked in last, so a
 * reader that sees the .json sees a complete entry.
 *
 * An archival mark beside the record (job/ArchivalMark.ts) says where the
 * entry goes and when it is whole, until the running folder is cleared:
 * whoever finishes an archival cut short does not archive the job twice.
 */
import { Clock, Context, Data, Duration, Effect, Layer, Option } from "effect"
import { randomBytes } from "node:crypto"
import { makeEndedNotes } from "../spool/ended.js"
import * as os from "node:os"
import * as path from "node:path"
import type { Transform } from "node:stream"
import { pipeline } from "node:stream/promises"
import { logLines } from "../log/text.js"
import { isJobName } from "../record/decode.js"
import { ArchiveFailed, ClaimLost, describe, errnoCode } from "../errors/errors.js"
import { ensureArchiveDir, listOrEmpty, trustedArchiveDir } from "../filesystem/dirs.js"
import { type ArchivalMark, readMark, writeMark } from "./ArchivalMark.js"
import { type Ownership, recordKeeping } from "../filesystem/files.js"
import { iso, type JobRecord, recordText } from "../record/record.js"
import { archiveAside, asideOf, doneMarkOf, entryFiles, entryName, isArchiveAside, isCutRecord, stamp } from "../spool/layout.js"
import { type Calls, replaceFile, Syscalls } from "../filesystem/syscalls.js"

export interface FinishedJob {
  /** The claimed script; null when only an interrupted attempt's output is archived. */
  readonly script: string | null
  /** Captured output files, when output was captured. */
  readonly stdout: string | null
  readonly stderr: string | null
  /** Where the record is kept beside the claim until the entry is whole. */
  readonly recordFile: string
  readonly record: JobRecord
  /** The job's owner (uid, primary gid): who may read its record. Null: pmjq itself. */
  readonly owner: Ownership | null
  /**
   * The first try to store it, by the process that ran it, its record written:
   * no earlier archival can have left a mark, and its files are where its run
   * left them (store then looks at nothing before it places them).
   */
  readonly fresh?: boolean
}

/** One of a fresh job's own files is not where its run left it (store looks again). */
class SourceGone extends Data.TaggedError("SourceGone")<{ readonly path: string }> {}

export class Archive extends Context.Tag("pmjq/Archive")<
  Archive,
  {
    /**
     * Writes the record beside the claim: from here on the outcome is known, and
     * recovery finishes the archival instead of running the job again.
     */
    readonly settle: (job: FinishedJob) => Effect.Effect<void, ArchiveFailed>
    /**
     * Moves a finished job into DIR as STAMP_NAME (STAMP from its end time);
     * returns the entry's path. Idempotent: after a crash half way, running it
     * again completes the same entry; once the entry was whole (its done mark
     * written), running it again, with any DIR, only clears the running folder
     * and returns where the entry is.
     */
    readonly store: (dir: string, job: FinishedJob) => Effect.Effect<string, ArchiveFailed | ClaimLost>
    /** No archive for this job: delete the script, its record and any captured output. */
    readonly discard: (job: FinishedJob) => Effect.Effect<void, ArchiveFailed>
    /**
     * Removes from DIR what a crash left half placed: asides unchanged for an
     * hour (layout.ts archiveAside); returns how many. A missing DIR has none;
     * one not pmjq's own (as ensureArchiveDir checks) fails.
     */
    readonly sweep: (dir: string) => Effect.Effect<number, ArchiveFailed>
  }
>() {
  /** Without ended notes: an archive of jobs no other job depends on (tests of archival alone). */
  static readonly withoutNotes = Layer.effect(Archive, Effect.map(Syscalls, (calls) => makeLive(calls, null)))
  /** The daemon's: every job's end is also noted in SPOOL for its dependents (spool/ended.ts). */
  static readonly layer = ({ spool }: { readonly spool: string }) =>
    Layer.effect(Archive, Effect.map(Syscalls, (calls) => makeLive(calls, makeEndedNotes(calls, spool))))
}

/**
 * Where a finished job goes: successes to the archive dir; refused jobs to the
 * error dir, else .pmjq/rejected (never among what ran); other failures to the
 * error dir, else the archive dir. None: deleted after its run.
 */
export const destinationOf = (
  outcome: JobRecord["outcome"],
  dirs: { readonly archiveDir: Option.Option<string>; readonly errorDir: Option.Option<string>; readonly rejectedDir: string }
): Option.Option<string> =>
  outcome === "succeeded"
    ? dirs.archiveDir
    : outcome === "rejected"
    ? Option.some(Option.getOrElse(dirs.errorDir, () => dirs.rejectedDir))
    : Option.orElse(dirs.errorDir, () => dirs.archiveDir)

/**
 * Tries entry names in order until `reserve` creates one (true) rather than
 * finding it taken (false).
 */
export const reserveEntry = <E>(
  reserve: (entry: string) => Effect.Effect<boolean, E>,
  entryStamp: string,
  name: string
): Effect.Effect<string, E> => {
  const attempt = (clash: number): Effect.Effect<string, E> => {
    const entry = entryName(entryStamp, name, clash)
    return Effect.flatMap(reserve(entry), (created) => (created ? Effect.succeed(entry) : attempt(clash + 1)))
  }
  return attempt(0)
}

const sameFile = async (calls: Calls, a: string, b: string) => {
  const [x, y] = await Promise.all([calls.lstat(a), calls.lstat(b)])
  return x.ino === y.ino && x.dev === y.dev
}

type Placed = "placed" | "taken" | "skipped"

/**
 * FROM hard-linked as TO (link(2) never follows a symlink, never replaces):
 * "placed" when TO is FROM now (linked now, or by an earlier try a crash cut
 * short: the same inode); "across" when only a copy can place it (another
 * filesystem, or one that refuses hard links).
 */
const linkIn = async (calls: Calls, from: string, to: string): Promise<Placed | "across"> => {
  try {
    await calls.link(from, to)
    return "placed"
  } catch (e) {
    const code = errnoCode(e)
    if (code === "EEXIST") return (await sameFile(calls, from, to)) ? "placed" : "taken"
    if (code === "EXDEV" || code === "EPERM") return "across"
    throw e
  }
}

/**
 * Hard link where we can (link(2) never follows a symlink: a rejected symlink
 * is placed as itself). Across filesystems, a copy that creates no privilege:
 * a regular file is copied without set-id bits, for its owner (filesystem/files.ts); a
 * symlink is made again; a FIFO, socket or device is never opened (pmjq must
 * not block on it) and is left out: its record says what it was. Never
 * replaces `to`. "placed" when `to` is now `from`: placed now, or by an earlier
 * try that a crash cut short (same inode).
 */
const placeExclusive = async (calls: Calls, from: string, to: string): Promise<Placed> => {
  const linked = await linkIn(calls, from, to)
  if (linked !== "across") return linked
  try {
    const source = await calls.lstat(from)
    if (source.isSymbolicLink()) {
      await calls.symlink(await calls.readlink(from), to)
      // Its owner's, as the link was (lchown never follows it).
      if (process.getuid?.() === 0) await calls.lchown(to, source.uid, source.gid)
    }
    else if (source.isFile()) return await copyWhole(calls, from, to)
    else return "skipped"
    return "placed"
  } catch (e) {
    if (errnoCode(e) === "EEXIST") return "taken"
    throw e
  }
}

/**
 * How long an aside must have been left unchanged before a sweep removes it.
 * One in use is younger: a copy's writes (and, over long holes, its size kept
 * in step: files.ts) and the link(2) that stages a record set its ctime to
 * now. Another node's sweep removing one in use loses nothing: its link in
 * fails, and the job, still in its running folder, is archived again.
 */
const STALE_ASIDE = Duration.hours(1)

/** A fresh hidden name beside TO (layout.ts), for what is linked in as TO. */
const asideFor = (to: string) => archiveAside(path.dirname(to), randomBytes(8).toString("hex"))

/**
 * A copy appears whole or not at all: made under a hidden name beside TO (a
 * short one: TO may already be NAME_MAX long), then linked in, so no reader
 * (pmjq status, submit --wait) ever sees a record half written or, on a full
 * disk, an empty one.
 */
const copyWhole = async (calls: Calls, from: string, to: string): Promise<Placed> => {
  const aside = asideFor(to)
  try {
    await calls.copyNew(from, aside)
    await calls.link(aside, to)
    return "placed"
  } catch (e) {
    if (errnoCode(e) === "EEXIST") return "taken"
    throw e
  } finally {
    await removeIfPresent(calls, aside)
  }
}

/**
 * The record, last: the one link(2) that makes the entry whole. Across
 * filesystems it is staged beside TO first (a copy, the slow part), and BEFORE
 * (the archival mark "placing") comes between that and the link: the only time
 * a crash leaves another host unsure whether the entry is whole. A link has no
 * such time, and needs no mark: whoever finishes it finds the entry by its
 * inode (EEXIST, the same file).
 */
const placeRecord = async (calls: Calls, from: string, to: string, before: () => Promise<void>): Promise<Placed> => {
  const linked = await linkIn(calls, from, to)
  if (linked !== "across") return linked
  const aside = asideFor(to)
  try {
    await calls.copyNew(from, aside)
    await before()
    await calls.link(aside, to)
    return "placed"
  } catch (e) {
    if (errnoCode(e) !== "EEXIST") throw e
    // Someone's file, or an earlier try's copy: never known to be this
    // record's (another inode), so the next name is tried, as the mark
    // "placing" the earlier try left has said (storeAgain).
    return "taken"
  } finally {
    // Only tidying: its failure must not undo an entry placed whole.
    await removeIfPresent(calls, aside).catch(() => undefined)
  }
}

const removeIfPresent = (calls: Calls, file: string) =>
  calls.unlink(file).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? undefined : Promise.reject(e)))

/** Removes FILE when it is a regular file unchanged (ctime) for STALE_ASIDE at NOW; whether it did. */
const removeIfStale = async (calls: Calls, file: string, now: number) => {
  const stat = await calls.lstat(file).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? null : Promise.reject(e)))
  if (stat === null || !stat.isFile() || now - stat.ctimeMs < Duration.toMillis(STALE_ASIDE)) return false
  await removeIfPresent(calls, file)
  return true
}

// Error output joins pmjq's log: marked and escaped line by line (log/text.ts).
const replay = (calls: Calls, file: string, sink: NodeJS.WritableStream, through: Transform | null) =>
  (through === null ? pipeline(calls.readStream(file), sink, { end: false }) : pipeline(calls.readStream(file), through, sink, { end: false }))
    .catch((e: unknown) => (errnoCode(e) === "ENOENT" ? undefined : Promise.reject(e)))

const makeLive = (calls: Calls, noteEnded: ((record: JobRecord) => Promise<void>) | null) => {
  const fail = (where: string) => (e: unknown) => new ArchiveFailed({ path: where, reason: describe(e) })
  // The job's ended note (spool/ended.ts) is written before it leaves the
  // running folder: a job named NAME is always running or noted.
  // A cut run's record (recovery's) is no end: its job goes back to the queue.
  const leave = (job: FinishedJob) => async () => {
    if (noteEnded !== null && !isCutRecord(job.recordFile)) await noteEnded(job.record)
    await leaveRunningFolder(job)()
  }

  // Written aside, on disk, and renamed in: the record file is whole or
  // absent, after a crash or a power cut alike.
  const writeRecord = (job: FinishedJob) =>
    replaceFile(calls, job.recordFile, asideOf(job.recordFile), recordText(job.record), { ...recordKeeping(job.owner), durable: true })

  const settle = (job: FinishedJob) => Effect.tryPromise({ try: () => writeRecord(job), catch: fail(job.recordFile) })

  // An entry is up to four names, and a job called "x.out" ending in the same
  // millisecond as a job called "x" owns STAMP_x.out. So every name is placed
  // exclusively, and on a clash with someone else's file the names placed so
  // far are undone and the next counter is tried. The record comes last, so a
  // reader that sees STAMP_NAME.json sees a whole entry.
  const place = async (dir: string, entry: string, job: FinishedJob, beforeRecord: () => Promise<void>): Promise<boolean> => {
    const files = entryFiles(path.join(dir, entry))
    const placed: Array<string> = []
    const parts: Array<readonly [string, string]> = []
    if (job.script !== null) parts.push([job.script, files.script])
    if (job.stdout !== null) parts.push([job.stdout, files.stdout])
    if (job.stderr !== null) parts.push([job.stderr, files.stderr])
    try {
      for (const [from, to] of parts) {
        const result = await placeExclusive(calls, from, to)
        if (result === "taken") return false
        if (result === "placed") placed.push(to)
      }
      if ((await placeRecord(calls, job.recordFile, files.record, beforeRecord)) === "taken") return false
      placed.length = 0
      return true
    } finally {
      for (const mine of placed) await removeIfPresent(calls, mine)
    }
  }

  // The mark goes last: while any of the job's files is left, it is there.
  const leaveRunningFolder = (job: FinishedJob) => async () => {
    for (const file of [job.script, job.stdout, job.stderr, job.recordFile, doneMarkOf(job.recordFile)]) {
      if (file !== null) await removeIfPresent(calls, file)
    }
  }

  const exists = (file: string) => calls.lstat(file).then(() => true, (e: unknown) => (errnoCode(e) === "ENOENT" ? false : Promise.reject(e)))

  // The script can be gone: the job deleted itself (its entry has no script),
  // or its whole folder was taken over by another node (which answers for it).
  const whatIsLeft = (job: FinishedJob) =>
    Effect.tryPromise({
      try: async (): Promise<FinishedJob | null> => {
        if (job.script === null || (await exists(job.script))) return job
        return (await exists(path.dirname(job.script))) ? { ...job, script: null } : null
      },
      catch: fail(job.recordFile)
    })

  // The entry, placed under the first free name from its end time; the mark
  // "placing" only before a copied record's link (see placeRecord).
  const placeEntry = (dir: string, job: FinishedJob, fresh: boolean) => {
    const host = os.hostname()
    return Effect.gen(function*() {
      const clock = yield* Effect.clock
      const mark = (entry: string, state: ArchivalMark["state"]) =>
        writeMark(calls, job.recordFile, { entry, host, state, at: iso(clock.unsafeCurrentTimeMillis()) })
      const placeFiles = (candidate: string) => {
        const placing = () => mark(path.join(dir, candidate), "placing")
        return place(dir, candidate, job, placing).catch(async (e: unknown) => {
          if (errnoCode(e) !== "ENOENT") throw e
          // The archive dir may have been removed (by a job, by hand) since
          // startup. Made again only as safely as at startup: in a sticky
          // folder such as /tmp, a user may have taken the name meanwhile.
          if (await calls.stat(dir).then(() => false, () => true)) {
            await ensureArchiveDir(calls, dir)
            return place(dir, candidate, job, placing)
          }
          // Or one of the job's own files is gone: looked at below.
          throw fresh ? new SourceGone({ path: job.script ?? job.recordFile }) : e
        })
      }
      const placeIn = (candidate: string) =>
        Effect.tryPromise({ try: () => placeFiles(candidate), catch: (e) => (e instanceof SourceGone ? e : fail(dir)(e)) })
      const entry = yield* reserveEntry(placeIn, stamp(new Date(job.record.endedAt)), job.record.name)
      const base = path.join(dir, entry)
      // Only now that the entry is whole, and on disk, does the job leave the
      // running folder: a power cut then finds it in one place or the other.
      yield* Effect.tryPromise({ try: () => calls.syncDir(dir), catch: fail(dir) })
      yield* Effect.tryPromise({ try: () => mark(base, "placed"), catch: fail(base) })
      yield* Effect.tryPromise({ try: leave(job), catch: fail(base) })
      return base
    })
  }

  // Any later try, or a job this process did not end: an earlier archival may
  // have been cut short (its mark says how far it got), the job may have
  // removed its own script, its folder may have been taken over.
  const storeAgain = (dir: string, given: FinishedJob) =>
    Effect.gen(function*() {
      const earlier = yield* Effect.tryPromise({ try: () => readMark(calls, given.recordFile), catch: fail(given.recordFile) })
      if (earlier?.state === "placed") {
        yield* Effect.tryPromise({ try: leave(given), catch: fail(earlier.entry) })
        return earlier.entry
      }
      if (earlier !== null) {
        yield* Effect.logWarning("archived again: an earlier archival of this job was cut short, and its entry may be whole there (if so, both are this one run)")
          .pipe(Effect.annotateLogs({ earlier: `${earlier.host}:${earlier.entry}` }))
      }
      const job = yield* whatIsLeft(given)
      if (job === null) return yield* new ClaimLost({ path: given.script ?? given.recordFile })
      const recorded = yield* Effect.tryPromise({ try: () => calls.lstat(job.recordFile).then(() => true, () => false), catch: fail(job.recordFile) })
      if (!recorded) yield* settle(job)
      return yield* placeEntry(dir, job, false).pipe(Effect.catchTag("SourceGone", (e) => Effect.die(e)))
    })

  const store = (dir: string, given: FinishedJob) =>
    Effect.suspend(() => {
      // The name becomes a path: it must stay one name inside DIR.
      if (!isJobName(given.record.name)) return new ArchiveFailed({ path: dir, reason: `not a job name: ${JSON.stringify(given.record.name)}` })
      // A fresh job's files are where its run left them (none of the lookups
      // storeAgain makes, each a round trip on a cluster volume), unless it
      // removed its own script: then it is looked at as storeAgain does.
      return given.fresh === true
        ? placeEntry(dir, given, true).pipe(Effect.catchTag("SourceGone", () => storeAgain(dir, { ...given, fresh: false })))
        : storeAgain(dir, given)
    })

  // With only an error dir, a successful job's output was captured in case it
  // failed; it passes through to pmjq's own output instead of vanishing.
  const discard = (job: FinishedJob) =>
    Effect.tryPromise({
      try: async () => {
        // Archived already by a node that had an archive dir: not replayed twice.
        if ((await readMark(calls, job.recordFile))?.state === "placed") return leave(job)()
        if (job.stdout !== null) await replay(calls, job.stdout, process.stdout, null)
        if (job.stderr !== null) await replay(calls, job.stderr, process.stderr, logLines(job.record.name))
        await leave(job)()
      },
      catch: fail(job.script ?? job.recordFile)
    })

  // Checked as at startup, never made: the listing and the removals are of the
  // real path, reached only through folders no one else can change.
  const sweep = Effect.fn("Archive.sweep")(function*(dir: string) {
    const now = yield* Clock.currentTimeMillis
    const real = yield* Effect.tryPromise({ try: () => trustedArchiveDir(calls, dir), catch: fail(dir) })
    if (real === null) return 0
    const names = yield* Effect.tryPromise({ try: () => listOrEmpty(calls, real), catch: fail(dir) })
    // One file that cannot be looked at or removed is said, and left; the others are still swept.
    const removed = yield* Effect.forEach(names.filter(isArchiveAside), (name) => {
      const file = path.join(real, name)
      return Effect.tryPromise({ try: () => removeIfStale(calls, file, now), catch: fail(file) }).pipe(
        Effect.catchTag("ArchiveFailed", (e) =>
          Effect.as(Effect.logWarning("left in the archive dir").pipe(Effect.annotateLogs({ file, reason: e.reason })), false))
      )
    })
    return removed.filter(Boolean).length
  })

  return Archive.of({ settle, store, discard, sweep })
}
