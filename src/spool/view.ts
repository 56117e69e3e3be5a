/**
 * What `pmjq status` shows: the spool as it is, read and never changed. Queued
 * files, claimed ones, the nodes' heartbeats, and the newest archive entries of
 * the dirs those heartbeats publish. Every name, and what counts as a job, is
 * layout.ts's, as for the daemon itself.
 */
import { Effect, Either } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { decodeCancelRequest, decodeHeartbeat, decodeRecord } from "../decode.js"
import { ownDirProblem } from "../dirs.js"
import { readRegularAsync } from "../files.js"
import { iso, type JobRecord } from "../record.js"
import { besideName, claimedName, entryOfRecord, isCancelRequest, isHidden, nodesDir, rejectedDir, runningRoot, stateDir } from "./layout.js"
import type { Heartbeat } from "./Nodes.js"
import { type Calls, Syscalls } from "../syscalls.js"
import { inspectNames } from "./Spool.js"

export interface SpoolView {
  readonly spool: string
  readonly at: string
  readonly queued: ReadonlyArray<{ readonly name: string; readonly readyAt: string }>
  readonly running: ReadonlyArray<{
    readonly name: string
    readonly node: string
    readonly claimedAt: string
    readonly forMs: number
    /** From the node's last heartbeat; null when it started after that beat. */
    readonly pid: number | null
    /** "running", or "ended" when its record is written and archival is pending. */
    readonly state: "running" | "ended"
  }>
  /** Cancel requests no node has taken yet (pmjq cancel), with the asker's uid. */
  readonly cancelling: ReadonlyArray<{ readonly name: string; readonly uid: number }>
  readonly nodes: ReadonlyArray<Heartbeat & { readonly alive: boolean; readonly ageMs: number }>
  readonly finished: ReadonlyArray<JobRecord & { readonly entry: string }>
  readonly rejected: ReadonlyArray<JobRecord & { readonly entry: string }>
  /** Why pmjq's state in this spool is not shown (a .pmjq that is not pmjq's own); null when it is. */
  readonly untrusted: string | null
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

export const viewSpool = (spool: string, lastCount = 10) =>
  Effect.flatMap(Syscalls, (calls) => Effect.promise(() => view(calls, spool, lastCount)))

const view = async (calls: Calls, spool: string, lastCount: number): Promise<SpoolView> => {
    const now = Date.now()
    const state = stateDir(spool)
    const listed = await names(spool)
    // Looked at as the daemon does (Spool.inspectNames), through the seam chosen for the spool's filesystem.
    const queued = [...(await inspectNames(calls, spool, listed.filter((n) => !isHidden(n)))).jobs].sort((a, b) => a.readyAt - b.readyAt)

    const cancelling = (await Promise.all(listed.filter(isCancelRequest).map(async (name) => {
      const file = path.join(spool, name)
      const s = await fsp.lstat(file).catch(() => null)
      if (s === null || !s.isFile()) return null
      const request = await readRegularAsync(file, s.uid, 4096).then((text) => (text === null ? null : Either.getOrNull(decodeCancelRequest(text))), () => null)
      return request === null ? null : { name: request.name, uid: s.uid }
    }))).filter((c): c is { name: string; uid: number } => c !== null)

    const owner = await stateOwner(state)
    if (Either.isLeft(owner)) {
      const untrusted = owner.left === "no state yet" ? null : owner.left
      return { spool, at: iso(now), queued: queued.map((q) => ({ name: q.name, readyAt: iso(q.readyAt) })), running: [], cancelling, nodes: [], finished: [], rejected: [], untrusted }
    }
    const uid = owner.right
    const nodes = (await heartbeats(spool, uid)).map((hb) => {
      const ageMs = Math.max(0, now - Date.parse(hb.beatAt))
      return { ...hb, ageMs, alive: ageMs <= hb.leaseMs }
    })

    const running = (await Promise.all((await names(runningRoot(spool))).map(async (node) => {
      const folder = path.join(runningRoot(spool), node)
      const inside = await names(folder)
      return Promise.all(inside.filter((n) => !isHidden(n)).map(async (name) => {
        const s = await fsp.lstat(path.join(folder, name)).catch(() => null)
        const claimedAt = s?.ctimeMs ?? now
        // Its record, where the spawner writes it (a long name's is cut and hashed).
        const state: "running" | "ended" = inside.includes(besideName(name, ".json")) ? "ended" : "running"
        const pid = nodes.find((n) => n.node === node)?.jobs?.find((j) => j.name === name)?.pid ?? null
        return { name: claimedName(name), node, claimedAt: iso(claimedAt), forMs: Math.max(0, Math.round(now - claimedAt)), pid, state }
      }))
    }))).flat()

    const dirs = [...new Set(nodes.flatMap((n) => [n.archiveDir, n.errorDir]).filter((d): d is string => d !== null))]
    const finished = (await Promise.all(dirs.map((d) => newest(d, lastCount, uid)))).flat()
      .sort((a, b) => a.endedAt.localeCompare(b.endedAt)).slice(-lastCount)
    const rejected = [
      ...await newest(rejectedDir(spool), lastCount, uid),
      ...finished.filter((r) => r.outcome === "rejected")
    ]
    return {
      spool,
      at: iso(now),
      queued: queued.map((q) => ({ name: q.name, readyAt: iso(q.readyAt) })),
      running,
      cancelling,
      nodes,
      finished: finished.filter((r) => r.outcome !== "rejected"),
      rejected,
      untrusted: null
    }
}
