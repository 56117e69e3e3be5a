/**
 * What `pmjq status` shows: the spool as it is, read and never changed. Queued
 * files (with why each waits), claimed ones, the nodes' heartbeats, and the
 * newest archive entries of the dirs those heartbeats publish. Every name, and
 * what counts as a job, is layout.ts's, as for the daemon itself.
 */
import { Effect, Either, Option } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { decodeCancelRequest, decodeHeartbeat, decodeRecord } from "../decode.js"
import { ownDirProblem } from "../dirs.js"
import { factsOf, type FileFacts, readRegularAsync } from "../files.js"
import { refusal } from "../job/refusal.js"
import { Users } from "../job/Users.js"
import { isSameProcess, parentOf, type ProcessId } from "../proc.js"
import { iso, type JobRecord } from "../record.js"
import { besideName, claimedName, entryOfRecord, isCancelRequest, isHidden, isJob, nodesDir, rejectedDir, runningRoot, stateDir } from "./layout.js"
import type { Heartbeat } from "./Nodes.js"
import { type Calls, type Stat, Syscalls } from "../syscalls.js"
import { inspectNames } from "./Spool.js"

/**
 * Why a queued job waits, as a word for scripts: `next` (nothing holds it),
 * `slots` (-j full), `load` (-C: the load estimate at or above it),
 * `user-share` (its owner at --max-jobs-per-user while others wait),
 * `refused` (it will be rejected, never run, unless the file is changed),
 * `no-node` (no pmjq takes jobs from the spool), `unknown` (a node does not
 * say: a pmjq older than these words, or pmjq's state not shown).
 */
export type Reason = "next" | "slots" | "load" | "user-share" | "refused" | "no-node" | "unknown"

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
 * reason its dispatcher would wait on: a slot, then the gate, then the share.
 * USER names an owner in the details.
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
    for (const n of taking) {
      if (n.limits === null) {
        silent.push(n.node)
        continue
      }
      const hold = holdOn(n, job)
      if (hold === null) {
        const mine = ahead.get(n.node)!
        mine.jobs++
        mine.byUser.set(job.uid, (mine.byUser.get(job.uid) ?? 0) + 1)
        leave()
        return { reason: "next", detail: `next: ${n.node} can start it` }
      }
      holds.push(hold)
    }
    if (silent.length > 0) {
      const told = holds.map((h) => h.detail)
      return { reason: "unknown", detail: [...told, `${silent.join(", ")} ${silent.length === 1 ? "does" : "do"} not say (an older pmjq)`].join("; ") }
    }
    return { reason: [...new Set(holds.map((h) => h.reason))].join(","), detail: holds.map((h) => h.detail).join("; ") }
  })
}

const names = (dir: string) => fsp.readdir(dir).catch(() => [] as Array<string>)

/**
 * A file pmjq wrote, decoded; null for anything else. Only files owned by
 * pmjq's uid count: a job's own file named like a record (a job called
 * `x.json` is archived as STAMP_x.json) belongs to its owner, who can rewrite it.
 */
const readPmjqFile = <A>(decode: (text: string) => Either.Either<A, string>, uid: number) => (file: string): Promise<A | null> =>
  readRegularAsync(file, uid).then((text) => (text === null ? null : Either.getOrNull(decode(text))), () => null)

/** The newest records of DIR (entry names start with their UTC stamp, so they sort by time). */
const newest = async (dir: string, count: number, uid: number) => {
  const files = (await names(dir)).filter((n) => entryOfRecord(n) !== null).sort().slice(-count)
  const records = await Promise.all(files.map(async (n) => {
    const r = await readPmjqFile(decodeRecord, uid)(path.join(dir, n))
    return r === null ? null : { ...r, entry: path.join(dir, entryOfRecord(n)!) }
  }))
  return records.filter((r): r is JobRecord & { entry: string } => r !== null)
}

/** The nodes' heartbeats that pmjq (UID) wrote. */
const heartbeats = async (spool: string, uid: number): Promise<Array<Heartbeat>> =>
  (await Promise.all((await names(nodesDir(spool))).filter((n) => !isHidden(n)).map((n) =>
    readPmjqFile(decodeHeartbeat, uid)(path.join(nodesDir(spool), n))))).filter((hb): hb is Heartbeat => hb !== null)

/** pmjq's uid, as the owner of the spool's .pmjq; or why that folder cannot be believed. */
export const stateOwner = async (state: string): Promise<Either.Either<number, string>> => {
  const stat = await fsp.lstat(state).catch(() => null)
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

/**
 * JOB's record in DIRS (written by UID, pmjq), wherever it landed and however
 * many entries came after it: one listing of each dir, and a read only of the
 * entries named for the job (STAMP_NAME, or STAMP-N_NAME, NAME cut to fit).
 */
export const findRecord = (dirs: ReadonlyArray<string>, uid: number, job: Submitted) =>
  Effect.promise(async (): Promise<(JobRecord & { readonly entry: string }) | null> => {
    for (const dir of dirs) {
      for (const file of await names(dir)) {
        const entry = entryOfRecord(file)
        const named = entry === null ? "" : entry.slice(entry.indexOf("_") + 1)
        if (entry === null || named === "" || !job.name.startsWith(named)) continue
        const record = await readPmjqFile(decodeRecord, uid)(path.join(dir, file))
        if (record !== null && isOwnRecord(record, job)) return { ...record, entry: path.join(dir, entry) }
      }
    }
    return null
  })

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
    const { cancelling, finished, nodes, rejected, untrusted } = seen.view
    return {
      spool,
      at: seen.view.at,
      queued: seen.queued.map((q, i) => ({ name: q.name, readyAt: q.readyAt, uid: q.uid, user: user(q.uid), ...reasons[i]! })),
      running: seen.running.map((r) => ({ ...r, user: user(r.uid) })),
      cancelling,
      nodes,
      finished,
      rejected,
      untrusted
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

// A process's argv and environment can be megabytes: only the start is read.
const PROC_READ_MAX = 64 * 1024

/** The start of a NUL-separated /proc file of PID's (cmdline, environ); null when it cannot be read (gone, or another user's environ). */
const procList = (pid: number, file: "cmdline" | "environ"): ReadonlyArray<string> | null => {
  let fd: number | null = null
  try {
    fd = fs.openSync(`/proc/${pid}/${file}`, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    const buffer = Buffer.alloc(PROC_READ_MAX)
    const read = fs.readSync(fd, buffer, 0, PROC_READ_MAX, 0)
    return buffer.subarray(0, read).toString("utf8").split("\0")
  } catch {
    return null
  } finally {
    if (fd !== null) fs.closeSync(fd)
  }
}

/** The uid a process runs as (the owner of its /proc folder); null when gone. */
const uidOf = (pid: number): number | null => {
  try {
    return fs.statSync(`/proc/${pid}`).uid
  } catch {
    return null
  }
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
  let pids: Array<number>
  try {
    pids = fs.readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number)
  } catch {
    return []
  }
  return pids.filter((pid) => {
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
  readonly queued: ReadonlyArray<{ readonly name: string; readonly readyAt: string; readonly uid: number }>
  readonly running: ReadonlyArray<Omit<SpoolView["running"][number], "user">>
  /** Why each queued job waits, once owners have names. */
  readonly reasons: (user: (uid: number) => string) => ReadonlyArray<Hold>
}

type Beat = Heartbeat & { readonly alive: boolean; readonly ageMs: number }
type Claimed = Omit<SpoolView["running"][number], "user"> & { readonly claimed: string }

/**
 * What waits in the spool, oldest first: its jobs, and the regular files
 * without an execute bit (not jobs, but waiting all the same: a cp without
 * +x, a chmod forgotten), with what the lstat of each saw.
 */
const waitingIn = async (calls: Calls, spool: string, listed: ReadonlyArray<string>) => {
  const stats = new Map<string, Stat>()
  // Looked at as the daemon does (Spool.inspectNames), through the seam chosen for the spool's filesystem.
  const found = await inspectNames(calls, spool, listed.filter((n) => !isHidden(n)), (name, stat) => void stats.set(name, stat))
  const unrun = found.others.flatMap((name) => {
    const stat = stats.get(name)
    return stat !== undefined && stat.isFile() ? [{ name, readyAt: stat.ctimeMs, uid: stat.uid }] : []
  })
  const queued = [...found.jobs, ...unrun].sort((a, b) => a.readyAt - b.readyAt).map((q) => ({ name: q.name, readyAt: iso(q.readyAt), uid: q.uid }))
  const facts = (name: string) => {
    const stat = stats.get(name)
    return stat === undefined ? undefined : factsOf(stat)
  }
  return { queued, facts }
}

const cancelRequests = async (spool: string, listed: ReadonlyArray<string>) =>
  (await Promise.all(listed.filter(isCancelRequest).map(async (name) => {
    const file = path.join(spool, name)
    const s = await fsp.lstat(file).catch(() => null)
    if (s === null || !s.isFile()) return null
    const request = await readRegularAsync(file, s.uid, 4096).then((text) => (text === null ? null : Either.getOrNull(decodeCancelRequest(text))), () => null)
    return request === null ? null : { name: request.name, uid: s.uid }
  }))).filter((c): c is { name: string; uid: number } => c !== null)

/** The claimed jobs of every node's running folder, each with its owner and its process when known. */
const claimsIn = async (spool: string, beats: ReadonlyArray<Beat>, now: number): Promise<Array<Claimed>> => {
  const running = (await Promise.all((await names(runningRoot(spool))).map(async (node) => {
    const folder = path.join(runningRoot(spool), node)
    const inside = await names(folder)
    return (await Promise.all(inside.filter((n) => !isHidden(n)).map(async (name) => {
      const s = await fsp.lstat(path.join(folder, name)).catch(() => null)
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
const limitsIn = (beats: ReadonlyArray<Beat>, running: ReadonlyArray<Claimed>): Array<NodeLimits> =>
  beats.map((hb) => {
    const on = running.filter((r) => r.node === hb.node && r.state === "running")
    const byUser = new Map<number, number>()
    for (const r of on) byUser.set(r.uid, (byUser.get(r.uid) ?? 0) + 1)
    const started = on.filter((r) => r.claimedAt > hb.beatAt).length
    return { node: hb.node, taking: hb.alive && hb.left !== true, limits: limitsOf(hb, started), running: on.length, byUser }
  })

const view = async (calls: Calls, spool: string, lastCount: number): Promise<Seen> => {
  const now = Date.now()
  const listed = await names(spool)
  const { facts, queued } = await waitingIn(calls, spool, listed)
  const cancelling = await cancelRequests(spool, listed)

  const owner = await stateOwner(stateDir(spool))
  if (Either.isLeft(owner)) {
    const untrusted = owner.left === "no state yet" ? null : owner.left
    const reasons = (user: (uid: number) => string) =>
      untrusted === null
        ? whyWaiting(queued.map((q) => ({ uid: q.uid, refusal: refusedBy(facts(q.name), null, []) })), [], user)
        : queued.map((): Hold => ({ reason: "unknown", detail: "unknown: pmjq's state is not shown" }))
    return { view: { spool, at: iso(now), cancelling, nodes: [], finished: [], rejected: [], untrusted }, queued, running: [], reasons }
  }
  const uid = owner.right
  const beats = (await heartbeats(spool, uid)).map((hb) => {
    const ageMs = Math.max(0, now - Date.parse(hb.beatAt))
    return { ...hb, ageMs, alive: ageMs <= hb.leaseMs }
  })
  const running = await claimsIn(spool, beats, now)
  const limits = limitsIn(beats, running)
  const nodes = beats.map((hb, i) => ({ ...hb, running: limits[i]!.running }))
  const waiting = queued.map((q) => ({ uid: q.uid, refusal: refusedBy(facts(q.name), uid, beats) }))

  const dirs = [...new Set(beats.flatMap((n) => [n.archiveDir, n.errorDir]).filter((d): d is string => d !== null))]
  const finished = (await Promise.all(dirs.map((d) => newest(d, lastCount, uid)))).flat()
    .sort((a, b) => a.endedAt.localeCompare(b.endedAt)).slice(-lastCount)
  const rejected = [
    ...await newest(rejectedDir(spool), lastCount, uid),
    ...finished.filter((r) => r.outcome === "rejected")
  ]
  return {
    view: { spool, at: iso(now), cancelling, nodes, finished: finished.filter((r) => r.outcome !== "rejected"), rejected, untrusted: null },
    queued,
    running: running.map(({ claimed: _, ...r }) => r),
    reasons: (user) => whyWaiting(waiting, limits, user)
  }
}
