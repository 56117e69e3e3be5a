/**
 * `pmjq log [-f] JOB-SPOOL NAME`
 *
 * A job's output so far, wherever it is: beside its claim in a node's running
 * folder (any node sharing the spool), or in its archive entry. Its standard
 * output goes to log's standard output, its error output to log's standard
 * error, each as the job wrote it: two files cannot be interleaved truthfully
 * (nothing records which byte came first). With -f it follows the job until it
 * ends, then exits with the job's status as `pmjq submit --wait` does
 * (waited.ts).
 *
 * Following polls: the size of each open descriptor (fstat), every 200 ms. Over
 * NFS inotify says nothing of another host's writes, and a name may be gone or
 * another file while the descriptor still reads the job's output. The job's
 * end is its record in an archive or error dir, found as --wait finds it.
 *
 * pmjq runs as root; log runs as its caller, and reads only the caller's own
 * jobs (root: any). An output file is opened without following a symlink and
 * must be a regular file owned by the job's owner or by pmjq (a job run as
 * pmjq): whatever else lies at its name (planted in an archive dir users may
 * write) is refused, never read.
 */
import { Args, Command, Options } from "@effect/cli"
import { Duration, Effect, Either } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { isJobName } from "../record/decode.js"
import { describe, errnoCode, NoSuchJob, NotPermitted, OutputLost, OutputNotKept, OutputUnreadable, UsageError } from "../errors/errors.js"
import { openRegularAsync, Untrusted } from "../filesystem/files.js"
import { besideClaim, entryFiles, stateDir } from "../spool/layout.js"
import { placeOf, whereIs } from "../spool/places.js"
import { requireSpool } from "../spool/Spool.js"
import { findRecord, heartbeatOf, recordDirs, type Recorded, recordLookout, recordsOf, stateOwner, type Submitted } from "../spool/view.js"
import { visible } from "../log/text.js"
import { endOf } from "./waited.js"

// ---- the follower: what it sees of the job, and its output files ----

/** A job's output file, open. Its size comes from its descriptor, never its name: over NFS the name may be gone, or another file's. */
export interface OutputFile {
  /** Which file it is: a new run's output is another. */
  readonly ino: number
  readonly size: Effect.Effect<number, OutputLost>
  /** At most MAX bytes from AT; none at its end. */
  readonly read: (at: number, max: number) => Effect.Effect<Uint8Array, OutputLost>
  readonly close: Effect.Effect<void>
}

/** Where the job is, as one look saw it. */
export type Sighting =
  | { readonly at: "queued" }
  | { readonly at: "running"; readonly node: string; readonly stdout: string; readonly stderr: string }
  | { readonly at: "ended"; readonly record: Recorded }
  /** Between places (put back in the queue by recovery, or its record on its way): the next look tells. */
  | { readonly at: "gone" }

/** What the follower asks of the spool: the live one reads it, the tests' is scripted. */
export interface Watch {
  readonly look: Effect.Effect<Sighting>
  /** The output file at FILE, open; null when there is none (yet). */
  readonly open: (file: string) => Effect.Effect<OutputFile | null, OutputUnreadable>
  /** The inode at FILE now; null when none. */
  readonly inodeAt: (file: string) => Effect.Effect<number | null>
  /** Whether NODE keeps its jobs' output in files (it has -o or -e); true when it does not say. */
  readonly keepsOutput: (node: string) => Effect.Effect<boolean>
}

/** Where the output goes: the job's two streams, and pmjq's own notes (a line on stderr). */
export interface Sinks {
  readonly stdout: (bytes: Uint8Array) => Effect.Effect<void>
  readonly stderr: (bytes: Uint8Array) => Effect.Effect<void>
  readonly note: (line: string) => Effect.Effect<void>
}

/** How often a follower looks: a bounded wait, whatever the filesystem tells (NFS tells nothing). */
export const POLL = Duration.millis(200)

/** The most read at once: a job may write gigabytes (or a sparse 100G file), which must not fill log's memory. */
export const CHUNK = 64 * 1024

/** One of the job's streams as followed: its file when open, the inode of the last one read, how far it was copied. */
interface Tail {
  readonly what: string
  readonly write: (bytes: Uint8Array) => Effect.Effect<void>
  file: OutputFile | null
  ino: number | null
  at: number
}

const drop = (tail: Tail) =>
  Effect.suspend(() => {
    const file = tail.file
    tail.file = null
    return file === null ? Effect.void : file.close
  })

// Each chunk is written (and its sink drained) before the next is read.
const copyUpTo = (tail: Tail, file: OutputFile, limit: number | null) =>
  Effect.gen(function*() {
    while (limit === null || tail.at < limit) {
      const bytes = yield* file.read(tail.at, limit === null ? CHUNK : Math.min(CHUNK, limit - tail.at))
      if (bytes.length === 0) return
      yield* tail.write(bytes)
      tail.at += bytes.length
    }
  })

/**
 * What TAIL's file holds past what was copied: up to its size now, or with
 * TO_END until a read finds nothing (a file no one writes any more). A file
 * that shrank (truncated) is followed from its new end: what came before it
 * was copied already. A file lost (ESTALE) is let go; the archived copy takes
 * over from the same place.
 */
const catchUp = (tail: Tail, note: (text: string) => Effect.Effect<void>, toEnd: boolean) =>
  Effect.gen(function*() {
    const file = tail.file
    if (file === null) return
    const size = yield* file.size
    if (size < tail.at) {
      yield* note(`its ${tail.what} shrank from ${tail.at} to ${size} bytes; followed from there`)
      tail.at = size
    }
    yield* copyUpTo(tail, file, toEnd ? null : size)
  }).pipe(Effect.catchTag("OutputLost", () => drop(tail)))

/**
 * TAIL on the file at FILE. One already open goes on, unless a running job's
 * FILE is now another file: a new run (recovery ran it again), whose output is
 * read from its start once the last run's is copied to its end. A file opened
 * anew goes on from where the last stopped when it is the same run's (the
 * same file, or its archived copy). True when a new run began.
 */
const attach = (watch: Watch, tail: Tail, file: string, ended: boolean, note: (text: string) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    if (tail.file !== null && !ended) {
      const ino = yield* watch.inodeAt(file)
      if (ino !== null && ino !== tail.file.ino) {
        yield* catchUp(tail, note, true)
        yield* drop(tail)
      }
    }
    if (tail.file !== null) return false
    const opened = yield* watch.open(file)
    if (opened === null) return false
    const newRun = !ended && tail.ino !== null && opened.ino !== tail.ino
    if (newRun) tail.at = 0
    tail.file = opened
    tail.ino = opened.ino
    return newRun
  })

/** The files a sighting says hold the output, stdout's then stderr's; none while queued or between places. */
const filesOf = (seen: Sighting): readonly [string, string] | null => {
  if (seen.at === "running") return [seen.stdout, seen.stderr]
  if (seen.at !== "ended") return null
  const files = entryFiles(seen.record.entry)
  return [files.stdout, files.stderr]
}

/** One look's worth: the files attached, and what they hold copied (to their end once the job ended, or TO_END). */
const step = (watch: Watch, tails: ReadonlyArray<Tail>, seen: Sighting, toEnd: boolean, note: (text: string) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const files = filesOf(seen)
    if (files !== null) {
      const fresh = yield* Effect.forEach(tails, (tail, i) => attach(watch, tail, files[i]!, seen.at === "ended", note))
      if (fresh.some((f) => f)) yield* note("run again (its node died while it ran): this run's output follows")
    }
    yield* Effect.forEach(tails, (tail) => catchUp(tail, note, toEnd || seen.at === "ended"), { discard: true })
  })

const QUEUED = {
  once: "queued, not started yet: no output",
  following: "queued, not started yet; its output follows once it starts"
} as const

/**
 * Job NAME's output, from where FIRST saw it: what there is now, or with
 * FOLLOW all of it until the job ends. The record of its end when it has
 * ended (null when not followed to it).
 */
export const followJob = (name: string, watch: Watch, sinks: Sinks, first: Sighting, follow: boolean) =>
  Effect.gen(function*() {
    const tails: ReadonlyArray<Tail> = [
      { what: "standard output", write: sinks.stdout, file: null, ino: null, at: 0 },
      { what: "error output", write: sinks.stderr, file: null, ino: null, at: 0 }
    ]
    const note = (text: string) => sinks.note(`pmjq: ${visible(name)}: ${text}`)
    const job = Effect.gen(function*() {
      let seen = first
      let queuedSaid = false
      for (;;) {
        if (seen.at === "queued" && !queuedSaid) yield* note(follow ? QUEUED.following : QUEUED.once)
        queuedSaid ||= seen.at === "queued"
        yield* step(watch, tails, seen, !follow, note)
        // Nothing to open while it runs: the spawn is under way, or no file is ever made.
        if (seen.at === "running" && tails.every((t) => t.ino === null) && !(yield* watch.keepsOutput(seen.node))) {
          return yield* new OutputNotKept({ name: visible(name), node: visible(seen.node) })
        }
        if (seen.at === "ended") return seen.record
        if (!follow) return null
        yield* Effect.sleep(POLL)
        seen = yield* watch.look
      }
    })
    return yield* Effect.ensuring(job, Effect.forEach(tails, drop, { discard: true }))
  })

// ---- the spool as the follower sees it ----

const lost = (e: unknown) => new OutputLost({ reason: describe(e) })

const outputOf = (handle: fs.promises.FileHandle, ino: number): OutputFile => ({
  ino,
  size: Effect.tryPromise({ try: () => handle.stat().then((s) => s.size), catch: lost }),
  read: (at, max) =>
    Effect.tryPromise({
      try: async () => {
        const buffer = Buffer.allocUnsafe(max)
        const { bytesRead } = await handle.read(buffer, 0, max, at)
        return buffer.subarray(0, bytesRead)
      },
      catch: lost
    }),
  close: Effect.promise(() => handle.close().catch(() => undefined))
})

// What says the file is not the job's, or not the caller's: refused (77), never read.
const DENIED = new Set(["EACCES", "EPERM", "ELOOP"])

/** FILE as a job's output: none (ENOENT), or a regular file of one of OWNERS, never through a symlink, never waiting on a FIFO. */
export const openOutput = (file: string, owners: ReadonlyArray<number>) =>
  Effect.tryPromise({
    try: () =>
      openRegularAsync(file, owners).then(
        ({ handle, stat }) => outputOf(handle, stat.ino),
        (e: unknown) => (errnoCode(e) === "ENOENT" ? null : Promise.reject(e))
      ),
    catch: (e) =>
      e instanceof Untrusted
        ? new OutputUnreadable({ file: visible(file), reason: `${e.why}: not the job's output, not read`, denied: true })
        : new OutputUnreadable({ file: visible(file), reason: describe(e), denied: DENIED.has(errnoCode(e) ?? "") })
  })

/** pmjq's uid on SPOOL (the owner of its .pmjq), null before any pmjq ran there; refused when .pmjq is not pmjq's own. */
const pmjqOf = (spool: string) =>
  Effect.flatMap(Effect.promise(() => stateOwner(stateDir(spool))), Either.match({
    onRight: (uid): Effect.Effect<number | null, NotPermitted> => Effect.succeed(uid),
    onLeft: (why) =>
      why === "no state yet" ? Effect.succeed(null) : Effect.fail(new NotPermitted({ reason: `pmjq's state is not to be trusted: ${visible(why)}` }))
  }))

/** Who may own JOB's output: the job's owner (it ran as them) or pmjq (it ran as pmjq), once a pmjq has run there. */
const ownersOf = (spool: string, job: Submitted) =>
  Effect.map(pmjqOf(spool).pipe(Effect.orElseSucceed(() => null)), (pmjq) => (pmjq === null ? [job.uid] : [job.uid, pmjq]))

/** The job JOB on SPOOL, looked at again and again: queued, running, then its record, in the order a job moves. */
export const liveWatch = (spool: string, job: Submitted): Watch => {
  const lookout = recordLookout(spool)
  return {
    look: Effect.suspend((): Effect.Effect<Sighting> => {
      const place = whereIs(spool, job)
      if (place.at === "queued") return Effect.succeed({ at: "queued" })
      if (place.at === "running") {
        return Effect.succeed({ at: "running", node: place.node, stdout: besideClaim(place.file, ".out"), stderr: besideClaim(place.file, ".err") })
      }
      return Effect.map(lookout((dirs, uid) => findRecord(dirs, uid, job)), (record) => (record === null ? { at: "gone" } : { at: "ended", record }))
    }),
    open: (file) => Effect.flatMap(ownersOf(spool, job), (owners) => openOutput(file, owners)),
    inodeAt: (file) => Effect.promise(() => fs.promises.lstat(file).then((s) => s.ino, () => null)),
    keepsOutput: (node) =>
      Effect.flatMap(pmjqOf(spool).pipe(Effect.orElseSucceed(() => null)), (pmjq) =>
        pmjq === null
          ? Effect.succeed(true)
          : Effect.map(heartbeatOf(spool, node, pmjq), (hb) => hb === null || hb.archiveDir !== null || hb.errorDir !== null))
  }
}

/** The job a record is of, as its record knows it (an older record may not say its owner: then only pmjq's files are its output). */
const jobOfRecord = (record: Recorded): Submitted => ({ name: record.name, uid: record.uid ?? -1, inode: record.inode ?? -1 })

/**
 * Job NAME on SPOOL, for caller ME: queued or running (one's own first: jobs of
 * several users may share a name), else the newest record of one's own in the
 * dirs the nodes archive to. Root may read anyone's; another's is refused.
 */
export const findJob = (spool: string, name: string, me: number) =>
  Effect.gen(function*() {
    const pmjq = yield* pmjqOf(spool)
    const place = placeOf(spool, name, me)
    if (place.at !== "nowhere" && (me === 0 || place.uid === me)) {
      const job: Submitted = { name, uid: place.uid, inode: place.inode }
      const first: Sighting = place.at === "queued"
        ? { at: "queued" }
        : { at: "running", node: place.node, stdout: besideClaim(place.file, ".out"), stderr: besideClaim(place.file, ".err") }
      return { job, first }
    }
    const where = pmjq === null ? null : yield* recordDirs(spool)
    const records = where === null ? [] : yield* recordsOf(where.dirs, where.uid, name)
    const mine = records.filter((r) => me === 0 || r.uid === me).at(-1)
    if (mine !== undefined) return { job: jobOfRecord(mine), first: { at: "ended", record: mine } satisfies Sighting }
    const theirs = place.at !== "nowhere" ? place.uid : records.at(-1)?.uid
    if (theirs === undefined) return yield* new NoSuchJob({ name: visible(name), spool: visible(spool) })
    return yield* new NotPermitted({ reason: `${visible(name)}: not yours (its owner is ${theirs === null ? "not recorded" : `uid ${theirs}`}): only its owner or root may read its output` })
  })

// ---- the command ----

// Written, and drained, before the next chunk is read: a slow reader slows log, never fills its memory.
const writeTo = (stream: NodeJS.WritableStream) => (bytes: Uint8Array) =>
  Effect.async<void>((resume) => {
    // An error (EPIPE: `pmjq log | head`) is the stream's own to report: bin.ts ends quietly on it.
    stream.write(bytes, () => resume(Effect.void))
  })

export const processSinks: Sinks = {
  stdout: writeTo(process.stdout),
  stderr: writeTo(process.stderr),
  note: (line) => writeTo(process.stderr)(Buffer.from(`${line}\n`))
}

/** The output of an ended job's archive entry, RECORD's, printed (`pmjq submit --wait`): read as `pmjq log` reads it. */
export const printEnded = (spool: string, record: Recorded) =>
  followJob(record.name, liveWatch(spool, jobOfRecord(record)), processSinks, { at: "ended", record }, false)

export const logCommand = Command.make(
  "log",
  {
    follow: Options.boolean("follow").pipe(Options.withAlias("f"), Options.withDescription("follow it until it ends; exit as it did")),
    spool: Args.text({ name: "job-spool" }).pipe(Args.withDescription("The spool of the job (required).")),
    name: Args.text({ name: "name" }).pipe(Args.withDescription("The job's name, as `pmjq submit` printed it or `pmjq status` shows it."))
  },
  ({ follow, name, spool }) =>
    Effect.gen(function*() {
      const dir = path.resolve(spool)
      yield* requireSpool(dir)
      // The name becomes a path: one component, not hidden.
      if (!isJobName(name)) return yield* new UsageError({ reason: `not a job's name: ${visible(name)}` })
      const found = yield* findJob(dir, name, process.getuid?.() ?? 0)
      const record = yield* followJob(name, liveWatch(dir, found.job), processSinks, found.first, follow)
      // Without -f, the status says the output was found: a script asks for the job's status with -f.
      if (!follow || record === null) return
      const end = endOf(name, record)
      if (end.says !== null) yield* processSinks.note(end.says)
      process.exitCode = end.status
    })
).pipe(Command.withDescription("Print a job's output so far, running or archived; with -f, follow it to its end and exit as it did."))
