/**
 * `pmjq cancel [--mine] JOB-SPOOL [NAME...]`
 *
 * Leaves one request per job in the spool (spool/Requests.ts) for the nodes to
 * act on (features/Cancels.ts), then waits until a node has taken it, and says
 * what became of each job. Exit status: 0 when every job was cancelled; 1 when
 * one had nothing to cancel (it ended already, or there is no such job); 77
 * when one is not the caller's; 75 when no node took a request in time (it
 * stays, for the next node that looks).
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Duration, Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { isJobName } from "../decode.js"
import { UsageError } from "../errors.js"
import { createNew } from "../files.js"
import { asideOf, cancelRequestName, claimedName, isHidden, isJob, runningRoot } from "../spool/layout.js"
import { requireSpool } from "../spool/Spool.js"
import { duration } from "./options.js"

/** Where job NAME is now, and whose it is. */
type Place = { readonly at: "queued" | "running"; readonly file: string; readonly uid: number } | { readonly at: "nowhere" }

const lstatOrNull = (file: string) => {
  try {
    return fs.lstatSync(file)
  } catch {
    return null
  }
}

const namesIn = (dir: string) => {
  try {
    return fs.readdirSync(dir)
  } catch {
    return []
  }
}

/**
 * The jobs in the spool, queued or claimed by a node, with where each is:
 * those named `only` (one lstat each), or all of them.
 */
const jobsIn = (spool: string, only: string | null = null): Array<{ readonly name: string; readonly place: Place }> => {
  const found: Array<{ name: string; place: Place }> = []
  for (const name of only === null ? namesIn(spool) : [only]) {
    const file = path.join(spool, name)
    const stat = lstatOrNull(file)
    if (stat !== null && isJob(name, stat)) found.push({ name, place: { at: "queued", file, uid: stat.uid } })
  }
  const root = runningRoot(spool)
  for (const node of namesIn(root)) {
    for (const claimed of namesIn(path.join(root, node)).filter((n) => !isHidden(n) && (only === null || claimedName(n) === only))) {
      const file = path.join(root, node, claimed)
      const stat = lstatOrNull(file)
      if (stat !== null && stat.isFile()) found.push({ name: claimedName(claimed), place: { at: "running", file, uid: stat.uid } })
    }
  }
  return found
}

/** Where a job NAME is: the caller's own first (several jobs may share a name: copies, nodes, users). */
const placeOf = (spool: string, name: string, me: number): Place => {
  const named = jobsIn(spool, name)
  const mine = named.find((j) => j.place.at !== "nowhere" && (me === 0 || j.place.uid === me))
  return (mine ?? named[0])?.place ?? { at: "nowhere" }
}

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

const cancelOne = (spool: string, me: number, name: string, patience: Duration.Duration) =>
  Effect.gen(function*() {
    if (!isJobName(name)) return yield* new UsageError({ reason: `not a job's name: ${name}` })
    const place = placeOf(spool, name, me)
    if (place.at === "nowhere") {
      yield* Console.error(`pmjq: ${name}: not queued or running: it ended already, or there is no such job; nothing changed`)
      return EX_NOTHING
    }
    if (me !== 0 && place.uid !== me) {
      yield* Console.error(`pmjq: ${name}: not yours (its owner is uid ${place.uid}); nothing changed`)
      return EX_NOPERM
    }
    const request = yield* ask(spool, me, name)
    const deadline = Date.now() + Duration.toMillis(patience)
    while (fs.existsSync(request)) {
      if (Date.now() > deadline) {
        yield* Console.error(`pmjq: ${name}: no node has taken the request yet (is pmjq running on this spool?); it stays for the next one`)
        return EX_TEMPFAIL
      }
      yield* Effect.sleep("100 millis")
    }
    // Taken. A queued job is archived as cancelled at once; a running one's
    // node stops its process group (SIGTERM, SIGKILL after its --grace).
    if (place.at === "queued" && placeOf(spool, name, me).at === "queued") {
      yield* Console.error(`pmjq: ${name}: the node refused to cancel it`)
      return EX_NOPERM
    }
    yield* Console.log(place.at === "queued" ? `${name}: cancelled` : `${name}: cancelling: its node stops its process group`)
    return 0
  })

export const cancelCommand = Command.make(
  "cancel",
  {
    mine: Options.boolean("mine").pipe(Options.withDescription("Cancel all of your queued and running jobs.")),
    patience: duration("wait-for", "30s", "How long to wait for a node to take each request."),
    spool: Args.text({ name: "job-spool" }).pipe(Args.withDescription("The spool of the jobs (required).")),
    names: Args.text({ name: "name" }).pipe(Args.withDescription("A job's name, as `pmjq submit` printed it or `pmjq status` shows it."), Args.repeated)
  },
  ({ mine, names, patience, spool }) =>
    Effect.gen(function*() {
      const dir = path.resolve(spool)
      yield* requireSpool(dir)
      const me = process.getuid?.() ?? 0
      const wanted = mine ? [...new Set(jobsIn(dir).filter((j) => j.place.at !== "nowhere" && j.place.uid === me).map((j) => j.name)), ...names] : names
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
