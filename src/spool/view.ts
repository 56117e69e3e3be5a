/**
 * What `pmjq status` shows: the spool as it is, read and never changed. Queued
 * files (with why each waits, and what their #PMJQ lines say; held ones
 * among them), the pauses, claimed ones, the nodes' heartbeats, and the
 * newest archive entries of the dirs those heartbeats publish. Every name, and
 * what counts as a job, is layout.ts's, as for the daemon itself. Every file
 * is read through the Calls seam (syscalls.ts), a job's head by a descriptor
 * that follows no symlink (Calls.head).
 */
import { Effect, Either, Option } from "effect"
import * as os from "node:os"
import * as path from "node:path"
import { decodeCancelRequest, decodeHeartbeat, decodeRecord, type PauseNote } from "../record/decode.js"
import { ownDirProblem } from "../filesystem/dirs.js"
import { factsOf, type FileFacts } from "../filesystem/files.js"
import { dependencyNames, type Verdict } from "../directives/dependencies.js"
import { describeProblem, HEAD_MAX, PLAIN, type Read } from "../directives/directives.js"
import { refusal } from "../owners/refusal.js"
import { Users } from "../owners/Users.js"
import { isSameProcess, parentOf, procList, processes, type ProcessId, uidOf } from "../process/proc.js"
import { iso, type JobRecord } from "../record/record.js"
import {
  besideName, claimedName, entryOfRecord, heartbeatFile, heldJob, isAside, isCancelRequest, isHidden, isJob, nodesDir, pausedDir, pausedFile,
  rejectedDir, runningRoot, SPOOL_PAUSE, stateDir
} from "./layout.js"
import type { Heartbeat } from "./Nodes.js"
import { type Calls, type Stat, Syscalls, threadedCalls } from "../filesystem/syscalls.js"
import { type Dependent, judgeDependents } from "./dependencyFacts.js"
import { type Pause, readNote } from "./pauses.js"
import { candidateOf, inspectNames } from "./Spool.js"

/**
 * Why a queued job waits, as a word for scripts: `next` (nothing holds it),
 * `slots` (-j full), `load` (-C: the load estimate at or above it),
 * `paused` (`pmjq pause`, and nothing else holds it), `user-share` (its
 * owner at --max-jobs-per-user while others wait), `refused` (it will be
 * rejected, never run, unless the file is changed), `held` (`pmjq hold`, or
 * its own `#PMJQ --hold`: until `pmjq release`), `after` (`#PMJQ --after`,
 * `--after-any`: a job it runs after has not ended; or one failed, and it
 * ends unrun), `no-node` (no pmjq takes jobs from the spool), `unknown` (a
 * node does not say: a pmjq older than these words, or pmjq's state not
 * shown; or the job's #PMJQ lines cannot be read by this caller).
 */
export type Reason = "next" | "slots" | "load" | "paused" | "user-share" | "refused" | "held" | "after" | "no-node" | "unknown"

/** `pmjq pause`s (spool/pauses.ts): the whole spool's, and each node's; who paused, when, and why. */
export interface Paused {
  readonly spool: PauseNote | null
  readonly nodes: Readonly<Record<string, PauseNote>>
}

/** A pause as status says it: `the spool, by root at 2026-12-07T10:00:00.000Z (maintenance)`. */
export const describePaused = (note: PauseNote, node: string | null) =>
  `${node === null ? "the spool" : `node ${node}`}, by ${note.by} at ${note.at}${note.reason === null ? "" : ` (${note.reason})`}`

export interface SpoolView {
  readonly spool: string
  readonly at: string
  readonly queued: ReadonlyArray<{
    readonly name: string
    readonly readyAt: string
    /** The job file's owner: uid, and name (the uid again when the password database has none). */
    readonly uid: number
    readonly user: string
    /** One Reason; several, comma-separated, when nodes hold it for different ones. */
    readonly reason: string
    /** The same in words, with the numbers: `slots: -j 1 on n1, 1 running`. */
    readonly detail: string
    /**
     * What its #PMJQ lines say (directives/directives.ts): held (by `pmjq hold`, its
     * file then `.pmjq-held-NAME`, or by its own `--hold`), the jobs it runs
     * after, its priority (0 unless it says; a raise its owner may not give
     * counts 0). Null when they cannot be read: another user's file this
     * caller may not read (`held` is still true for a `pmjq hold`).
     */
    readonly held: boolean | null
    readonly after: ReadonlyArray<string> | null
    readonly afterAny: ReadonlyArray<string> | null
    readonly priority: number | null
  }>
  readonly running: ReadonlyArray<{
    readonly name: string
    readonly node: string
    readonly claimedAt: string
    readonly forMs: number
    /**
     * The job's own process: from the node's last heartbeat, or on this host
     * the child of the node's spawner that runs the claimed file; null when
     * neither says (on another host, started since the last beat).
     */
    readonly pid: number | null
    /** "running", or "ended" when its record is written and archival is pending. */
    readonly state: "running" | "ended"
    readonly uid: number
    readonly user: string
  }>
  /** Cancel requests no node has taken yet (pmjq cancel), with the asker's uid. */
  readonly cancelling: ReadonlyArray<{ readonly name: string; readonly uid: number }>
  /** Heartbeats; `running` is what runs on the node now, counted in its running folder. */
  readonly nodes: ReadonlyArray<Heartbeat & { readonly alive: boolean; readonly ageMs: number }>
  readonly finished: ReadonlyArray<JobRecord & { readonly entry: string }>
  readonly rejected: ReadonlyArray<JobRecord & { readonly entry: string }>
  /** Why pmjq's state in this spool is not shown (a .pmjq that is not pmjq's own); null when it is. */
  readonly untrusted: string | null
  /** `pmjq pause`: none when not paused (or pmjq's state not shown). */
  readonly paused: Paused
}

// ---- why a queued job waits: a pure function of the queue and the nodes ----

/** What a node says holds its queue back, and what runs on it now. */
export interface NodeLimits {
  readonly node: string
  /** Alive and not left: it claims jobs. */
  readonly taking: boolean
  /** Its -j (0: no cap), --max-jobs-per-user, -C and load estimate; null when its heartbeat does not say (an older pmjq). */
  readonly limits: {
    readonly maxJobs: number
    readonly maxJobsPerUser: number | null
    readonly cpuLimit: number | null
    readonly loadEstimate: number
  } | null
  /** Jobs running on it now (not those ended and being archived), in all and by owner's uid. */
  readonly running: number
  readonly byUser: ReadonlyMap<number, number>
  /** The pause that holds it (`pmjq pause`), in words (describePaused); none when not paused. */
  readonly paused?: string | null
}

/** A queued job as the reasons need it: its owner, and why it is or would be refused, and until when (null: it would run). */
export interface Waiting {
  readonly uid: number
  readonly refusal: string | null
}

/** Why a job waits: a Reason (several, comma-separated, when nodes differ), and in words. */
export type Hold = { readonly reason: string; readonly detail: string }

const fixed = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2))

/**
 * Why each of QUEUE (oldest first) waits, given NODES. The queue is walked as
 * the dispatchers take it: a job a node could start now is `next`, and takes
 * its slot, its share and a unit of its load estimate (the gate counts a
 * new job as 1) from the jobs behind it. Each node holds a job for the first
 * reason its dispatcher would wait on: a slot, then the gate, then the share;
 * a pause (`pmjq pause`) only when nothing else holds the job on a node (it
 * is then that node's, for the jobs behind). USER names an owner in the details.
 */
export const whyWaiting = (
  queue: ReadonlyArray<Waiting>, nodes: ReadonlyArray<NodeLimits>, user: (uid: number) => string = String
): Array<Hold> => {
  const taking = nodes.filter((n) => n.taking)
  // What the walk has given to jobs ahead: slots, shares, load.
  const ahead = new Map(taking.map((n) => [n.node, { jobs: 0, byUser: new Map<number, number>() }]))
  const left = new Map<number, number>()
  for (const job of queue) left.set(job.uid, (left.get(job.uid) ?? 0) + 1)
  let total = queue.length

  const holdOn = (n: NodeLimits, job: Waiting): Hold | null => {
    const limits = n.limits!
    const mine = ahead.get(n.node)!
    const running = n.running + mine.jobs
    if (limits.maxJobs > 0 && running >= limits.maxJobs) {
      return { reason: "slots", detail: `slots: -j ${limits.maxJobs} on ${n.node}, ${n.running} running${mine.jobs > 0 ? `, ${mine.jobs} ahead` : ""}` }
    }
    const load = limits.loadEstimate + mine.jobs
    if (limits.cpuLimit !== null && load >= limits.cpuLimit) {
      return { reason: "load", detail: `load: ${fixed(load)} on ${n.node}, -C ${fixed(limits.cpuLimit)}` }
    }
    const cap = limits.maxJobsPerUser
    const theirs = (n.byUser.get(job.uid) ?? 0) + (mine.byUser.get(job.uid) ?? 0)
    const othersWait = total - (left.get(job.uid) ?? 0) > 0
    if (cap !== null && othersWait && theirs >= cap) {
      return { reason: "user-share", detail: `user share: ${user(job.uid)} runs ${theirs} on ${n.node}, --max-jobs-per-user ${cap}, others wait` }
    }
    // A pause last: said only when nothing else holds the job there, so that once resumed the node starts it.
    if (n.paused != null) return { reason: "paused", detail: `paused: ${n.paused}` }
    return null
  }

  return queue.map((job): Hold => {
    const leave = () => {
      left.set(job.uid, (left.get(job.uid) ?? 1) - 1)
      total--
    }
    // Refused the moment it is claimed: it holds no slot from the jobs behind
    // (it still counts as its owner's job waiting, as in the daemon's queue).
    if (job.refusal !== null) {
      return { reason: "refused", detail: `refused: ${job.refusal}` }
    }
    if (taking.length === 0) return { reason: "no-node", detail: "no node: no pmjq takes jobs from this spool" }
    const holds: Array<Hold> = []
    const silent: Array<string> = []
    // The job goes to N: it takes its slot, its share and a unit of its load from the jobs behind.
    const goes = (n: NodeLimits) => {
      const mine = ahead.get(n.node)!
      mine.jobs++
      mine.byUser.set(job.uid, (mine.byUser.get(job.uid) ?? 0) + 1)
      leave()
    }
    let paused: { readonly node: NodeLimits; readonly hold: Hold } | null = null
    for (const n of taking) {
      if (n.limits === null) {
        silent.push(n.node)
        continue
      }
      const hold = holdOn(n, job)
      if (hold === null) {
        goes(n)
        return { reason: "next", detail: `next: ${n.node} can start it` }
      }
      if (hold.reason === "paused") paused ??= { node: n, hold }
      holds.push(hold)
    }
    if (silent.length > 0) {
      const told = holds.map((h) => h.detail)
      return { reason: "unknown", detail: [...told, `${silent.join(", ")} ${silent.length === 1 ? "does" : "do"} not say (an older pmjq)`].join("; ") }
    }
    // Only a pause holds it on a node: it is that node's once resumed, and counted there for the jobs behind.
    if (paused !== null) {
      goes(paused.node)
      return paused.hold
    }
    return { reason: [...new Set(holds.map((h) => h.reason))].join(","), detail: holds.map((h) => h.detail).join("; ") }
  })
}

// ---- what a job's #PMJQ lines say (directives/directives.ts), and why it waits with them ----

/** A queued file as status reads it. */
export interface Queued {
  readonly name: string
  /** When it became ready (its ctime), ISO 8601 UTC. */
  readonly readyAt: string
  readonly uid: number
  /** What its head says; null when it could not be read (another user's file this caller may not read). */
  readonly read: Read | null
  /** Held by `pmjq hold`: its file is .pmjq-held-NAME. */
  readonly aside: boolean
}

/** What Q's #PMJQ lines say, as the JSON has it (SpoolView.queued): null for what cannot be read. */
const said = (q: Queued) => ({
  held: q.aside || (q.read === null ? null : q.read.directives.hold),
  after: q.read?.directives.after ?? null,
  afterAny: q.read?.directives.afterAny ?? null,
  priority: q.read?.directives.priority ?? null
})

/** The hold Q is under: `pmjq hold`, or its own #PMJQ --hold; null when none (or its lines cannot be read). */
const heldHold = (q: Queued): Hold | null =>
  q.aside
    ? { reason: "held", detail: "held by pmjq hold: pmjq release to start it" }
    : q.read?.directives.hold === true
    ? { reason: "held", detail: "held by its #PMJQ --hold: pmjq release to start it" }
    : null

const FOR_GOOD = "; rejected when claimed, never run, unless the file changes"

/** A failed dependency as the judge says it (`not run: build-1 ended failed`), in status's words. */
const doomedDetail = (reason: string) => {
  const why = reason.replace(/^not run: /, "")
  return `${why.startsWith("dependency loop") ? why : `dependency failed: ${why}`}; it ends unrun once claimed`
}

const priorityOf = (q: Queued) => q.read?.directives.priority ?? 0

/**
 * Why each of QUEUED (oldest first) waits. A held job, and one whose
 * dependencies are not met yet (VERDICTS: what the dependencies of the jobs
 * with some say, directives/dependencies.ts), is in no node's queue: it is said so.
 * The others are walked as the dispatchers take them (whyWaiting), highest
 * priority first, then oldest. REFUSAL: why every node would refuse a file
 * (a #PMJQ line pmjq does not understand is refused too); a job whose
 * dependency failed is taken, and ends unrun. A job whose #PMJQ lines cannot
 * be read is `unknown`, with what it would be if it had none.
 */
export const reasonsOf = (
  queued: ReadonlyArray<Queued>,
  refusal: (q: Queued) => string | null,
  verdicts: ReadonlyMap<string, Verdict>,
  nodes: ReadonlyArray<NodeLimits>,
  user: (uid: number) => string = String
): Array<Hold> => {
  const holds = queued.map((q): Hold | null => {
    const verdict = verdicts.get(q.name)
    return heldHold(q) ?? (verdict?._tag === "Waiting" ? { reason: "after", detail: verdict.reason } : null)
  })
  // Sorting is stable: within a priority, the oldest first.
  const walked = queued.flatMap((_, i) => (holds[i] === null ? [i] : [])).sort((a, b) => priorityOf(queued[b]!) - priorityOf(queued[a]!))
  const refused = walked.map((i) => {
    const q = queued[i]!
    return refusal(q) ?? (q.read?.problem != null ? `${describeProblem(q.read.problem)}${FOR_GOOD}` : null)
  })
  const failed = walked.map((i) => {
    const verdict = verdicts.get(queued[i]!.name)
    return verdict?._tag === "Failed" ? verdict.reason : null
  })
  // Refused, or doomed by a dependency: either way taken and ended at once, holding no slot from the jobs behind.
  const why = whyWaiting(walked.map((i, k) => ({ uid: queued[i]!.uid, refusal: refused[k] ?? failed[k] ?? null })), nodes, user)
  walked.forEach((i, k) => {
    const walk = why[k]!
    holds[i] = refused[k] !== null
      ? walk
      : failed[k] !== null
      ? { reason: "after", detail: doomedDetail(failed[k]!) }
      : queued[i]!.read === null
      ? { reason: "unknown", detail: `unknown: its #PMJQ lines cannot be read (its owner's or root's pmjq status can); if it has none, ${walk.detail}` }
      : walk
  })
  return holds.map((h) => h!)
}

// Through CALLS (Syscalls): the view's own reads take the seam chosen for the spool's filesystem.
const names = (dir: string, calls: Calls = threadedCalls) => calls.readdir(dir).catch(() => [] as Array<string>)

/**
 * A file pmjq wrote, decoded; null for anything else. Only files owned by
 * pmjq's uid count: a job's own file named like a record (a job called
 * `x.json` is archived as STAMP_x.json) belongs to its owner, who can rewrite it.
 */
const readPmjqFile = <A>(decode: (text: string) => Either.Either<A, string>, uid: number, calls: Calls = threadedCalls) => (file: string): Promise<A | null> =>
  calls.readText(file, uid).then((text) => (text === null ? null : Either.getOrNull(decode(text))), () => null)

/** The newest records of DIR (entry names start with their UTC stamp, so they sort by time). */
const newest = async (dir: string, count: number, uid: number, calls: Calls) => {
  const files = (await names(dir, calls)).filter((n) => entryOfRecord(n) !== null).sort().slice(-count)
  const records = await Promise.all(files.map(async (n) => {
    const r = await readPmjqFile(decodeRecord, uid, calls)(path.join(dir, n))
    return r === null ? null : { ...r, entry: path.join(dir, entryOfRecord(n)!) }
  }))
  return records.filter((r): r is JobRecord & { entry: string } => r !== null)
}

/** The nodes' heartbeats that pmjq (UID) wrote. */
const heartbeats = async (spool: string, uid: number, calls: Calls = threadedCalls): Promise<Array<Heartbeat>> =>
  (await Promise.all((await names(nodesDir(spool), calls)).filter((n) => !isHidden(n)).map((n) =>
    readPmjqFile(decodeHeartbeat, uid, calls)(path.join(nodesDir(spool), n))))).filter((hb): hb is Heartbeat => hb !== null)

/** NODE's heartbeat, if pmjq (UID) wrote it; null when there is none (the node left, or never was). */
export const heartbeatOf = (spool: string, node: string, uid: number) =>
  Effect.promise(() => readPmjqFile(decodeHeartbeat, uid)(heartbeatFile(spool, node)))

/** pmjq's uid, as the owner of the spool's .pmjq; or why that folder cannot be believed. */
export const stateOwner = async (state: string, calls: Calls = threadedCalls): Promise<Either.Either<number, string>> => {
  const stat = await calls.lstat(state).catch(() => null)
  if (stat === null) return Either.left("no state yet")
  const problem = ownDirProblem(stat, stat.uid)
  return problem === null ? Either.right(stat.uid) : Either.left(`${state} ${problem}`)
}

/** A job as `submit` wrote it: its name, and the file's owner and inode (another user may reuse the name). */
export interface Submitted {
  readonly name: string
  readonly uid: number
  readonly inode: number
}

/** The record of this very submission. */
export const isOwnRecord = (record: JobRecord, job: Submitted) =>
  record.name === job.name && record.uid === job.uid && record.inode === job.inode

/**
 * Where JOB's record may land, as the spool says now: the archive and error
 * dirs of the nodes' heartbeats, and .pmjq/rejected. Null while .pmjq cannot
 * be believed (or is not there yet).
 */
export const recordDirs = (spool: string) =>
  Effect.promise(async (): Promise<{ readonly uid: number; readonly dirs: ReadonlyArray<string> } | null> => {
    const owner = await stateOwner(stateDir(spool))
    if (Either.isLeft(owner)) return null
    const uid = owner.right
    const dirs = (await heartbeats(spool, uid)).flatMap((hb) => [hb.archiveDir, hb.errorDir]).filter((d): d is string => d !== null)
    return { uid, dirs: [...new Set([...dirs, rejectedDir(spool)])] }
  })

/** A record, with the archive entry it belongs to (DIR/STAMP_NAME). */
export type Recorded = JobRecord & { readonly entry: string }

/**
 * The records pmjq (UID) wrote in DIRS of jobs named NAME, however many
 * entries came after them: one listing of each dir, and a read only of the
 * entries named for the job (STAMP_NAME, or STAMP-N_NAME, NAME cut to fit).
 */
async function* recordsNamed(dirs: ReadonlyArray<string>, uid: number, name: string): AsyncGenerator<Recorded> {
  for (const dir of dirs) {
    for (const file of await names(dir)) {
      const entry = entryOfRecord(file)
      const named = entry === null ? "" : entry.slice(entry.indexOf("_") + 1)
      if (entry === null || named === "" || !name.startsWith(named)) continue
      const record = await readPmjqFile(decodeRecord, uid)(path.join(dir, file))
      if (record !== null && record.name === name) yield { ...record, entry: path.join(dir, entry) }
    }
  }
}

/** JOB's record in DIRS (written by UID, pmjq), wherever it landed. */
export const findRecord = (dirs: ReadonlyArray<string>, uid: number, job: Submitted) =>
  Effect.promise(async (): Promise<Recorded | null> => {
    for await (const record of recordsNamed(dirs, uid, job.name)) if (isOwnRecord(record, job)) return record
    return null
  })

/** Every record in DIRS (written by UID, pmjq) of a job named NAME, whoever's, oldest end first. */
export const recordsOf = (dirs: ReadonlyArray<string>, uid: number, name: string) =>
  Effect.promise(async (): Promise<ReadonlyArray<Recorded>> => {
    const found: Array<Recorded> = []
    for await (const record of recordsNamed(dirs, uid, name)) found.push(record)
    return found.sort((a, b) => a.endedAt.localeCompare(b.endedAt))
  })

/**
 * A look for records that goes on over time: FIND is given every dir a node
 * has said it archives to since the lookout was made (a node that ends takes
 * its heartbeat with it, and the record of a job it ran may land after), and
 * pmjq's uid. Null while .pmjq cannot be believed (or is not there yet).
 */
export const recordLookout = (spool: string) => {
  const seen = new Set<string>()
  return <A>(find: (dirs: ReadonlyArray<string>, uid: number) => Effect.Effect<A | null>) =>
    Effect.flatMap(recordDirs(spool), (where) => {
      if (where === null) return Effect.succeed(null)
      where.dirs.forEach((dir) => seen.add(dir))
      return find([...seen], where.uid)
    })
}

/**
 * The spool now. With Users provided, owners are shown by name (`pmjq
 * status`); without, by uid (`pmjq submit --wait`, which shows no owner).
 */
export const viewSpool = (spool: string, lastCount = 10) =>
  Effect.gen(function*() {
    const calls = yield* Syscalls
    const users = yield* Effect.serviceOption(Users)
    const seen = yield* Effect.promise(() => view(calls, spool, lastCount))
    const uids = [...new Set([...seen.queued.map((q) => q.uid), ...seen.running.map((r) => r.uid)])]
    const names = new Map(yield* Effect.forEach(uids, (uid) =>
      Option.match(users, {
        onNone: () => Effect.succeed([uid, String(uid)] as const),
        onSome: (u) => Effect.map(u.account(uid), (a) => [uid, Option.match(a, { onNone: () => String(uid), onSome: (acc) => acc.name })] as const)
      }), { concurrency: 8 }))
    const user = (uid: number) => names.get(uid) ?? String(uid)
    const reasons = seen.reasons(user)
    const { cancelling, finished, nodes, paused, rejected, untrusted } = seen.view
    return {
      spool,
      at: seen.view.at,
      queued: seen.queued.map((q, i) => ({ name: q.name, readyAt: q.readyAt, uid: q.uid, user: user(q.uid), ...reasons[i]!, ...said(q) })),
      running: seen.running.map((r) => ({ ...r, user: user(r.uid) })),
      cancelling,
      nodes,
      finished,
      rejected,
      untrusted,
      paused
    } satisfies SpoolView
  })

/**
 * A node's limits as its heartbeat says them; null from a pmjq before they
 * were written. STARTED jobs claimed since the beat add 1 each to its load
 * estimate, as its gate counts them.
 */
const limitsOf = (hb: Heartbeat, started: number): NodeLimits["limits"] =>
  hb.maxJobs === undefined || hb.loadEstimate === undefined
    ? null
    : { maxJobs: hb.maxJobs, maxJobsPerUser: hb.maxJobsPerUser ?? null, cpuLimit: hb.cpuLimit ?? null, loadEstimate: hb.loadEstimate + started }

/**
 * Why FACTS would be refused by every node that may claim it (each with its
 * --run-as-owner; pmjq's uid, the owner of .pmjq, says whether it runs as
 * root), or null. A node that does not say, or no node at all: only what
 * is refused whatever the settings (a symlink, set-uid, hard links).
 * --allow-users and --allow-groups are not published, so not foreseen.
 */
const refusedBy = (facts: FileFacts | undefined, pmjq: number | null, nodes: ReadonlyArray<Heartbeat & { alive: boolean }>): string | null => {
  if (facts === undefined) return null
  // Not a job at all: pmjq leaves it where it is, and takes it once it is made executable.
  if (!isJob("job", { isDirectory: () => false, mode: facts.mode })) return "no execute bit; left in the spool until it has one (chmod +x)"
  const taking = nodes.filter((n) => n.alive && n.left !== true)
  const policies = (taking.length === 0 ? [undefined] : taking.map((n) => n.runAsOwner)).map((runAsOwner) => ({
    asRoot: runAsOwner !== undefined && pmjq === 0,
    runAsOwner: runAsOwner ?? true,
    allowUsers: null,
    allowGroups: null
  }))
  const why = policies.map((policy) => refusal(facts, policy, () => []))
  return why.every((w) => w !== null) ? `${why[0]!}; rejected when claimed, never run, unless the file changes` : null
}

/**
 * On this host, the processes the spawners SPAWNERS started: a job's process
 * is its spawner's child. Only a live spawner of pmjq's is believed as a
 * parent (pid and start time, as the heartbeat wrote them): no other
 * process's children are taken for jobs, whatever they call themselves.
 */
const spawnedBy = (spawners: ReadonlyArray<ProcessId>): Array<number> => {
  const parents = new Set(spawners.filter((s) => s.startTicks !== null && isSameProcess(s.pid, s.startTicks)).map((s) => s.pid))
  if (parents.size === 0) return []
  return processes().filter((pid) => {
    const parent = parentOf(pid)
    return parent !== null && parents.has(parent)
  })
}

/**
 * Which of CHILDREN (a node's spawners' children) runs the job claimed as
 * CLAIMED (its path ending TAIL), named NAME: the one whose command line
 * names the claimed file (a script's interpreter is given its path), or, for
 * a job that exec'd another program, the one whose environment says
 * PMJQ_JOB=NAME (readable by root and the job's owner only). Null unless
 * exactly one is.
 */
const jobProcess = (children: ReadonlyArray<number>, tail: string, name: string, runsAs: number): number | null => {
  const only = (pids: ReadonlyArray<number>) => (pids.length === 1 ? pids[0]! : null)
  // Only processes running as the job does: another user's job could name
  // this one in its argv or environment, and be shown as it.
  const owners = children.filter((pid) => uidOf(pid) === runsAs)
  return only(owners.filter((pid) => procList(pid, "cmdline")?.some((a) => a.endsWith(tail)) === true)) ??
    only(owners.filter((pid) => procList(pid, "environ")?.includes(`PMJQ_JOB=${name}`) === true))
}

interface Seen {
  readonly view: Omit<SpoolView, "queued" | "running">
  readonly queued: ReadonlyArray<Queued>
  readonly running: ReadonlyArray<Omit<SpoolView["running"][number], "user">>
  /** Why each queued job waits, once owners have names. */
  readonly reasons: (user: (uid: number) => string) => ReadonlyArray<Hold>
}

type Beat = Heartbeat & { readonly alive: boolean; readonly ageMs: number }
type Claimed = Omit<SpoolView["running"][number], "user"> & { readonly claimed: string }

/**
 * The jobs `pmjq hold` holds (.pmjq-held-NAME among LISTED): regular files,
 * each with its owner and what its head says, looked at as a job is
 * (Calls.head: no symlink followed, no FIFO waited on).
 */
const heldIn = async (calls: Calls, spool: string, listed: ReadonlyArray<string>) => {
  const held = await Promise.all(listed.flatMap((file) => {
    const name = heldJob(file)
    return name === null ? [] : [calls.head(path.join(spool, file), HEAD_MAX, (s) => isJob(name, s)).then((head) => {
      if (!head.stat.isFile()) return null
      const read = head.text === null && isJob(name, head.stat) ? null : candidateOf(name, head.stat, head).read ?? PLAIN
      return { name, readyAt: head.stat.ctimeMs, uid: head.stat.uid, read, aside: true }
    }, () => null)]
  }))
  return held.filter((q) => q !== null)
}

/**
 * What the dependencies of the QUEUED jobs that have some say now, judged as a
 * node judges them (spool/dependencyFacts.ts: among each owner's own jobs;
 * OWNER, pmjq's uid, whose ended notes are believed), a loop among them
 * included. Held jobs are not judged, as no node judges them.
 */
const dependencyVerdicts = async (calls: Calls, spool: string, queued: ReadonlyArray<Queued>, owner: number): Promise<ReadonlyMap<string, Verdict>> => {
  const judged: Array<Dependent> = []
  for (const q of queued) {
    if (q.aside || q.read === null || q.read.problem !== null) continue
    const d = q.read.directives
    if (!d.hold && dependencyNames(d).length > 0) judged.push({ name: q.name, uid: q.uid, directives: d })
  }
  return judged.length === 0 ? new Map() : judgeDependents(calls, spool, judged, owner)
}

/** The pauses in SPOOL (spool/pauses.ts): the whole spool's, and each node's. */
interface SeenPauses {
  readonly spool: PauseNote | null
  readonly nodes: ReadonlyMap<string, PauseNote>
}

/** .pmjq/paused/spool and paused/node-NODE, as pmjq (OWNER) or root wrote them (spool/pauses.ts: readNote). */
const pausesIn = async (calls: Calls, spool: string, owner: number): Promise<SeenPauses> => {
  const files = (await names(pausedDir(spool), calls)).filter((f) => !isAside(f))
  const notes = await Promise.all(files.flatMap((file) => {
    const node = file === SPOOL_PAUSE ? null : file.startsWith("node-") ? file.slice("node-".length) : ""
    // Only the names pausedFile gives are pauses.
    return node === "" || path.basename(pausedFile(spool, node)) !== file ? [] : [readNote(calls, spool, node, owner).catch(() => null)]
  }))
  const note = ({ at, by, reason }: Pause): PauseNote => ({ by, at, reason })
  const found = notes.filter((n) => n !== null)
  const whole = found.find((n) => n.node === null)
  return {
    spool: whole === undefined ? null : note(whole),
    nodes: new Map(found.flatMap((n) => (n.node === null ? [] : [[n.node, note(n)] as const])))
  }
}

/**
 * What waits in the spool, oldest first: its jobs, and the regular files
 * without an execute bit (not jobs, but waiting all the same: a cp without
 * +x, a chmod forgotten), with what the lstat of each saw.
 */
const waitingIn = async (calls: Calls, spool: string, listed: ReadonlyArray<string>) => {
  const stats = new Map<string, Stat>()
  const unread = new Set<string>()
  // Looked at as the daemon does (Spool.inspectNames), through the seam chosen for the spool's filesystem.
  const found = await inspectNames(calls, spool, listed.filter((n) => !isHidden(n)), (name, stat, head) => {
    stats.set(name, stat)
    // A job its descriptor could not be opened on to read (EACCES: another user's file, not as root).
    if (head.text === null && stat.isFile() && isJob(name, stat)) unread.add(name)
  })
  const unrun = found.others.flatMap((name) => {
    const stat = stats.get(name)
    return stat !== undefined && stat.isFile() ? [{ name, readyAt: stat.ctimeMs, uid: stat.uid, read: PLAIN, aside: false }] : []
  })
  const jobs = found.jobs.map((c) => ({ name: c.name, readyAt: c.readyAt, uid: c.uid, read: unread.has(c.name) ? null : c.read ?? PLAIN, aside: false }))
  const queued: ReadonlyArray<Queued> = [...jobs, ...unrun, ...await heldIn(calls, spool, listed)]
    .sort((a, b) => a.readyAt - b.readyAt).map((q) => ({ ...q, readyAt: iso(q.readyAt) }))
  const facts = (name: string) => {
    const stat = stats.get(name)
    return stat === undefined ? undefined : factsOf(stat)
  }
  return { queued, facts }
}

const cancelRequests = async (calls: Calls, spool: string, listed: ReadonlyArray<string>) =>
  (await Promise.all(listed.filter(isCancelRequest).map(async (name) => {
    const file = path.join(spool, name)
    const s = await calls.lstat(file).catch(() => null)
    if (s === null || !s.isFile()) return null
    const request = await calls.readText(file, s.uid, 4096).then((text) => (text === null ? null : Either.getOrNull(decodeCancelRequest(text))), () => null)
    return request === null ? null : { name: request.name, uid: s.uid }
  }))).filter((c): c is { name: string; uid: number } => c !== null)

/** The claimed jobs of every node's running folder, each with its owner and its process when known. */
const claimsIn = async (calls: Calls, spool: string, beats: ReadonlyArray<Beat>, now: number): Promise<Array<Claimed>> => {
  const running = (await Promise.all((await names(runningRoot(spool), calls)).map(async (node) => {
    const folder = path.join(runningRoot(spool), node)
    const inside = await names(folder, calls)
    return (await Promise.all(inside.filter((n) => !isHidden(n)).map(async (name) => {
      const s = await calls.lstat(path.join(folder, name)).catch(() => null)
      if (s === null) return null
      // Its record, where the spawner writes it (a long name's is cut and hashed).
      const state: "running" | "ended" = inside.includes(besideName(name, ".json")) ? "ended" : "running"
      const pid = beats.find((n) => n.node === node)?.jobs?.find((j) => j.name === name)?.pid ?? null
      return { name: claimedName(name), claimed: name, node, claimedAt: iso(s.ctimeMs), forMs: Math.max(0, Math.round(now - s.ctimeMs)), pid, state, uid: s.uid }
    }))).filter((r) => r !== null)
  }))).flat()
  // Jobs started since their node's last beat: on this host, their process is found under the node's spawners.
  const here = os.hostname()
  for (const hb of beats.filter((n) => n.host === here && n.spawners !== undefined)) {
    const missing = running.filter((r) => r.node === hb.node && r.pid === null && r.state === "running")
    if (missing.length === 0) continue
    const children = spawnedBy(hb.spawners!)
    // A job runs as its file's owner under --run-as-owner, else as pmjq.
    const runsAs = (r: Claimed) => (hb.runAsOwner === true ? r.uid : uidOf(hb.pid))
    for (const r of missing) r.pid = jobProcess(children, `/${path.basename(stateDir(spool))}/running/${hb.node}/${r.claimed}`, r.name, runsAs(r) ?? -1)
  }
  return running
}

/** Each node's limits and what runs on it now (RUNNING), counted in the spool, not as of its last beat. */
const limitsIn = (beats: ReadonlyArray<Beat>, running: ReadonlyArray<Claimed>, paused: SeenPauses): Array<NodeLimits> =>
  beats.map((hb) => {
    const on = running.filter((r) => r.node === hb.node && r.state === "running")
    const byUser = new Map<number, number>()
    for (const r of on) byUser.set(r.uid, (byUser.get(r.uid) ?? 0) + 1)
    const started = on.filter((r) => r.claimedAt > hb.beatAt).length
    const pause = paused.spool !== null ? describePaused(paused.spool, null) : paused.nodes.has(hb.node) ? describePaused(paused.nodes.get(hb.node)!, hb.node) : null
    return { node: hb.node, taking: hb.alive && hb.left !== true, limits: limitsOf(hb, started), running: on.length, byUser, paused: pause }
  })

const view = async (calls: Calls, spool: string, lastCount: number): Promise<Seen> => {
  const now = Date.now()
  const listed = await names(spool, calls)
  const { facts, queued } = await waitingIn(calls, spool, listed)
  const cancelling = await cancelRequests(calls, spool, listed)

  const owner = await stateOwner(stateDir(spool), calls)
  if (Either.isLeft(owner)) {
    const untrusted = owner.left === "no state yet" ? null : owner.left
    // No .pmjq yet: nothing runs nor ended, no node; dependencies are judged on the spool alone (owner -1: no note to read).
    const verdicts = untrusted === null ? await dependencyVerdicts(calls, spool, queued, -1) : new Map<string, Verdict>()
    const reasons = (user: (uid: number) => string) =>
      untrusted === null
        ? reasonsOf(queued, (q) => refusedBy(facts(q.name), null, []), verdicts, [], user)
        : queued.map((q): Hold => heldHold(q) ?? { reason: "unknown", detail: "unknown: pmjq's state is not shown" })
    const paused = { spool: null, nodes: {} }
    return { view: { spool, at: iso(now), cancelling, nodes: [], finished: [], rejected: [], untrusted, paused }, queued, running: [], reasons }
  }
  const uid = owner.right
  const beats = (await heartbeats(spool, uid, calls)).map((hb) => {
    const ageMs = Math.max(0, now - Date.parse(hb.beatAt))
    return { ...hb, ageMs, alive: ageMs <= hb.leaseMs }
  })
  const running = await claimsIn(calls, spool, beats, now)
  const pauses = await pausesIn(calls, spool, uid)
  const limits = limitsIn(beats, running, pauses)
  const nodes = beats.map((hb, i) => ({ ...hb, running: limits[i]!.running }))
  const verdicts = await dependencyVerdicts(calls, spool, queued, uid)

  const dirs = [...new Set(beats.flatMap((n) => [n.archiveDir, n.errorDir]).filter((d): d is string => d !== null))]
  const finished = (await Promise.all(dirs.map((d) => newest(d, lastCount, uid, calls)))).flat()
    .sort((a, b) => a.endedAt.localeCompare(b.endedAt)).slice(-lastCount)
  const rejected = [
    ...await newest(rejectedDir(spool), lastCount, uid, calls),
    ...finished.filter((r) => r.outcome === "rejected")
  ]
  const paused = { spool: pauses.spool, nodes: Object.fromEntries(pauses.nodes) }
  return {
    view: { spool, at: iso(now), cancelling, nodes, finished: finished.filter((r) => r.outcome !== "rejected"), rejected, untrusted: null, paused },
    queued,
    running: running.map(({ claimed: _, ...r }) => r),
    reasons: (user) => reasonsOf(queued, (q) => refusedBy(facts(q.name), uid, beats), verdicts, limits, user)
  }
}
