/**
 * `pmjq cancel [--mine] JOB-SPOOL [NAME...]`
 *
 * Leaves one request per job in the spool (spool/Requests.ts) for the nodes to
 * act on (features/Cancels.ts), waits until a node has taken it, then until
 * the job's record says how it ended, and only then says what became of it:
 * a job may end on its own between the request and the node's act, and a
 * script must not be told "cancelled" of a job that succeeded. A NAME may be
 * a unique prefix of a queued or running job's name (those `pmjq submit`
 * makes are long); an exact name always wins. Exit status: 0 when every job
 * was cancelled; 1 when one had nothing to cancel (it ended already, or there
 * is no such job); 64 for a prefix of several jobs' names; 77 when one is not
 * the caller's; 75 when no node took a request in time (it stays, for the
 * next node that looks), or how a job ended is not known in time.
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Duration, Effect, Either } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { decodeRecord, isJobName } from "../record/decode.js"
import { UsageError } from "../errors/errors.js"
import { createNew, readRegularAsync } from "../filesystem/files.js"
import type { JobRecord } from "../record/record.js"
import { asideOf, besideName, cancelRequestName, stateDir } from "../spool/layout.js"
import { jobsIn, placeOf, whereIs } from "../spool/places.js"
import { requireSpool } from "../spool/Spool.js"
import { findRecord, isOwnRecord, recordDirs, stateOwner, type Submitted } from "../spool/view.js"
import { visible } from "../log/text.js"
import { duration } from "./options.js"

// Enough to recognise the job meant; the rest is counted.
const LISTED = 5

/**
 * The job GIVEN names: itself when a queued or running job has that name,
 * else the one queued or running job of the caller's (ME) whose name starts
 * with it. Only one's own jobs are matched by a prefix: another user's job
 * must be named in full (root's `cancel backup`, once its own backup ended,
 * must not stop bob's backup-db), and no one can make a prefix of yours
 * ambiguous by naming a job like it. Several are refused, naming them; none
 * leaves GIVEN as it is (nothing to cancel).
 */
const resolveName = (spool: string, given: string, me: number) =>
  Effect.gen(function*() {
    if (!isJobName(given)) return yield* new UsageError({ reason: `not a job's name: ${visible(given)}` })
    if (jobsIn(spool, (n) => n === given, given).length > 0) return given
    const matches = [...new Set(jobsIn(spool, (n) => n.startsWith(given)).filter((j) => j.place.at !== "nowhere" && j.place.uid === me).map((j) => j.name))].sort()
    if (matches.length <= 1) return matches[0] ?? given
    const more = matches.length > LISTED ? ` and ${matches.length - LISTED} more` : ""
    return yield* new UsageError({ reason: `ambiguous job name ${visible(given)}: matches ${matches.slice(0, LISTED).map((m) => visible(m)).join(", ")}${more}` })
  })

/** The request, written aside and renamed, so no node reads half of one. */
const ask = (spool: string, uid: number, name: string) =>
  Effect.try({
    try: () => {
      const file = path.join(spool, cancelRequestName(uid, Date.now(), randomBytes(4).toString("hex")))
      const aside = asideOf(file)
      const fd = createNew(aside, 0o644, null)
      try {
        fs.writeSync(fd, JSON.stringify({ name }) + "\n")
      } finally {
        fs.closeSync(fd)
      }
      fs.renameSync(aside, file)
      return file
    },
    catch: (e) => new UsageError({ reason: `cannot ask ${spool} to cancel ${name}: ${(e as Error).message}` })
  })

const EX_NOTHING = 1
const EX_TEMPFAIL = 75
const EX_NOPERM = 77

// Outcomes only pmjq judges, written over its spawner's record before
// anything moves: final as soon as they are there.
const PMJQS_OWN = new Set<JobRecord["outcome"]>(["cancelled", "timed-out", "interrupted", "rejected"])

// An archival mark is a symlink whose target is its text (job/ArchivalMark.ts):
// looked at, never followed.
const marked = (file: string) => {
  try {
    fs.lstatSync(file)
    return true
  } catch {
    return false
  }
}

/**
 * JOB's record, once it is final: beside its claim while it is archived, or in
 * the archive and error dirs the nodes publish once it is gone from the spool.
 * Only a record pmjq wrote (owned by the owner of .pmjq) of this very file
 * counts. The one beside the claim is first its spawner's, written as the
 * process ended, then pmjq's own when pmjq judges otherwise (a cancel, a
 * time-out): it is final once archival has begun (a done mark), once it is
 * pmjq's own, or when the job had ended before ASKED (no cancel could change
 * it then: the job's own end, kept while its archival waits). "pending"
 * while the job is queued or runs; null when it is gone and no record is kept
 * (no -o or -e).
 */

const finalRecord = (spool: string, job: Submitted, asked: number) =>
  Effect.gen(function*() {
    const place = whereIs(spool, job)
    const owner = yield* Effect.promise(() => stateOwner(stateDir(spool)))
    if (Either.isLeft(owner)) return "pending" as const
    if (place.at === "running") {
      const folder = path.dirname(place.file)
      const claimed = path.basename(place.file)
      const text = yield* Effect.promise(() => readRegularAsync(path.join(folder, besideName(claimed, ".json")), owner.right).catch(() => null))
      const record = text === null ? null : Either.getOrNull(decodeRecord(text))
      if (record === null || !isOwnRecord(record, job)) return "pending" as const
      const final = PMJQS_OWN.has(record.outcome) || Date.parse(record.endedAt) < asked || marked(path.join(folder, besideName(claimed, ".done")))
      return final ? record : "pending" as const
    }
    if (place.at === "queued") return "pending" as const
    // Gone: archival places the entry before it clears the claim, so its record is there, if any is kept.
    const dirs = yield* recordDirs(spool)
    return dirs === null ? null : yield* findRecord(dirs.dirs, dirs.uid, job)
  })

const howItEnded = (record: JobRecord) =>
  `${record.outcome}${record.exitCode !== null ? ` (exit status ${record.exitCode})` : record.signal !== null ? ` (${record.signal})` : ""}`

/** What became of the job, from its record: said, and the exit status it makes. */
const tell = (name: string, record: JobRecord & { readonly entry?: string }) =>
  Effect.gen(function*() {
    const where = record.entry === undefined ? "" : `; archived as ${record.entry}`
    if (record.outcome !== "cancelled") {
      yield* Console.error(`pmjq: ${visible(name)}: had already ended: ${howItEnded(record)}${visible(where)}; nothing changed`)
      return EX_NOTHING
    }
    if (record.startedAt === null) {
      yield* Console.log(`${visible(name)}: cancelled while queued: it never ran${visible(where)}`)
    } else {
      const end = record.signal !== null ? `ended by ${record.signal}` : `exited with status ${record.exitCode}`
      yield* Console.log(`${visible(name)}: stopped while running: its process group was signalled, it ${end}${visible(where)}`)
    }
    return 0
  })

const cancelOne = (spool: string, me: number, name: string, patience: Duration.Duration) =>
  Effect.gen(function*() {
    const place = placeOf(spool, name, me)
    if (place.at === "nowhere") {
      yield* Console.error(`pmjq: ${visible(name)}: not queued or running: it ended already, or there is no such job; nothing changed`)
      return EX_NOTHING
    }
    if (me !== 0 && place.uid !== me) {
      yield* Console.error(`pmjq: ${visible(name)}: not yours (its owner is uid ${place.uid}); nothing changed`)
      return EX_NOPERM
    }
    const job: Submitted = { name, uid: place.uid, inode: place.inode }
    const asked = Date.now()
    const request = yield* ask(spool, me, name)
    const taken = Date.now() + Duration.toMillis(patience)
    while (fs.existsSync(request)) {
      if (Date.now() > taken) {
        yield* Console.error(`pmjq: ${visible(name)}: no node has taken the request yet (is pmjq running on this spool?); it stays for the next one`)
        return EX_TEMPFAIL
      }
      yield* Effect.sleep("100 millis")
    }
    // A node takes a request for a queued job once it has claimed it: one
    // still queued was refused (the file is not the asker's).
    if (place.at === "queued" && whereIs(spool, job).at === "queued") {
      yield* Console.error(`pmjq: ${visible(name)}: the node refused to cancel it`)
      return EX_NOPERM
    }
    // Taken: a queued job is archived as cancelled at once; a running one's
    // node stops its process group (SIGTERM, SIGKILL after its --grace).
    const ended = Date.now() + Duration.toMillis(patience)
    for (;;) {
      const record = yield* finalRecord(spool, job, asked)
      if (record === null) {
        yield* Console.error(`pmjq: ${visible(name)}: its node took the request and the job is gone, but no record says how it ended (none is kept without -o or -e)`)
        return EX_TEMPFAIL
      }
      if (record !== "pending") return yield* tell(name, record)
      if (Date.now() > ended) {
        yield* Console.error(`pmjq: ${visible(name)}: its node is stopping it (SIGTERM, then SIGKILL after its --grace); it has not ended within --wait-for`)
        return EX_TEMPFAIL
      }
      yield* Effect.sleep("100 millis")
    }
  })

export const cancelCommand = Command.make(
  "cancel",
  {
    mine: Options.boolean("mine").pipe(Options.withDescription("cancel all of your queued and running jobs")),
    patience: duration("wait-for", "30s", "how long to wait for a node to act, and for the end"),
    spool: Args.text({ name: "job-spool" }).pipe(Args.withDescription("The spool of the jobs (required).")),
    names: Args.text({ name: "name" }).pipe(Args.withDescription("A job's name, as `pmjq submit` printed it or `pmjq status` shows it, or a unique prefix of it."), Args.repeated)
  },
  ({ mine, names, patience, spool }) =>
    Effect.gen(function*() {
      const dir = path.resolve(spool)
      yield* requireSpool(dir)
      const me = process.getuid?.() ?? 0
      // Every name resolved before any request: an ambiguous one cancels nothing.
      const given = yield* Effect.forEach(names, (name) => resolveName(dir, name, process.getuid?.() ?? 0))
      const wanted = [...new Set([...(mine ? jobsIn(dir).filter((j) => j.place.at !== "nowhere" && j.place.uid === me).map((j) => j.name) : []), ...given])]
      if (wanted.length === 0) {
        if (mine) return yield* Console.log("no job of yours is queued or running")
        return yield* new UsageError({ reason: "name a job to cancel, or give --mine" })
      }
      let status = 0
      for (const name of wanted) {
        const result = yield* cancelOne(dir, me, name, patience)
        if (status === 0) status = result
      }
      if (status !== 0) process.exitCode = status
    })
).pipe(Command.withDescription("Cancel queued or running jobs: a queued job never runs; a running one is stopped. Only your own (root: any)."))

export const CANCEL = "pmjq cancel [--mine] [--wait-for DURATION] JOB-SPOOL [NAME...]"
