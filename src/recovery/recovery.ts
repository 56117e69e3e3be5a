/**
 * Recovery: what a dead node claimed is finished or run again, never lost.
 *
 * A node is dead when it ran on this host and its pid is gone (known at once),
 * or when its heartbeat is older than the lease (another host: it may only be
 * cut off, so it gets the lease to come back). Its running folder is taken over
 * with one rename, then each job in it is settled:
 *
 * - it has a record: its process ended, so it is archived as recorded, never rerun;
 * - it has none: it was claimed or running when its node died. It goes back to
 *   the spool with its attempt counted (at-least-once), or to the error dir as
 *   `interrupted` with `--orphans fail` or once it has used `--max-attempts`.
 *   What output the dead attempt left is archived (script-less entry), not dropped.
 *
 * Each job settles on its own: one that cannot be read or settled now is
 * logged and left in the folder for the next round, and the others go on.
 * A node killed in its first beat left only its heartbeat's aside: it goes too.
 *
 * A job's end settled here (archived as recorded, or failed as interrupted) is
 * told to `ended` (--on-finish), as its own node would have; a cut run's
 * output is not an end (the job runs again). Should its node have died after
 * its archival but before it was done, its hook may run twice.
 */
import { Clock, Duration, Effect, Metric, Option } from "effect"
import type { Adoptable } from "../job/Adopted.js"
import { Archive, destinationOf, type FinishedJob } from "../job/Archive.js"
import { spawnersOf, writerOf } from "../record/decode.js"
import { isSameProcess, type ProcessId, stillRuns } from "../process/proc.js"
import { iso, type JobRecord, unstartedRecord } from "../record/record.js"
import { deadOf, type LeftoverNames } from "../spool/layout.js"
import { type Heartbeat, type Leftover, Nodes, type NodeView } from "../spool/Nodes.js"
import { Spool } from "../spool/Spool.js"
import { nodes as nodesSeen } from "../telemetry/metrics.js"

export type Orphans = "requeue" | "fail"

export interface RecoverySettings {
  readonly node: string
  readonly host: string
  readonly lease: Duration.DurationInput
  readonly orphans: Orphans
  readonly maxAttempts: number
  readonly archiveDir: Option.Option<string>
  readonly errorDir: Option.Option<string>
  /** Where refused jobs go when there is no error dir. */
  readonly rejectedDir: string
}

/** Why NODE is dead, or null while it may be alive. */
export const deathOf = (
  view: NodeView,
  now: number,
  host: string,
  leaseMs: number,
  runs: (process: ProcessId) => boolean
): string | null => {
  const hb: Heartbeat | null = view.heartbeat
  if (hb === null) {
    // A node beats before it makes its folder, so this one is gone, or is not a
    // pmjq of this version: it gets a lease without change to its folder.
    return now - view.folderChangedAt > leaseMs ? `no heartbeat, and its folder unchanged for over ${leaseMs} ms` : null
  }
  // Its spawners too: until they are gone, its jobs may still be running.
  // By pid and start time: a user's process that took one of their pids does
  // not keep the node alive, nor does a pid reused by chance.
  if (hb.host === host && ![writerOf(hb), ...spawnersOf(hb)].some(runs)) return `its process ${hb.pid} on this host is gone`
  const age = now - Date.parse(hb.beatAt)
  return age > leaseMs ? `its last heartbeat is ${Math.round(age / 1000)} s old (lease ${leaseMs / 1000} s)` : null
}


/**
 * Whether the job NAMES is one the leaving pmjq of heartbeat HB left running:
 * it has no record yet, and either its very process is still there (the pid
 * and start time the heartbeat lists: never a later process with its pid) or
 * a spawner it may have been left to still is (it may be writing its record
 * now). Anything else in the folder is settled as a dead node's would be.
 */
export const stillRunning = (hb: Heartbeat, names: LeftoverNames): Option.Option<Adoptable> => {
  // Whatever the heartbeat says of `left`: a pmjq killed with SIGKILL said
  // nothing, and its spawners may have had no time to beat yet.
  if (names.claim === null || names.hasRecord) return Option.none()
  const job = hb.jobs?.find((j) => j.name === names.claim)
  const startTicks = job?.startTicks ?? null
  const helpers = spawnersOf(hb)
  if (job !== undefined && startTicks !== null && isSameProcess(job.pid, startTicks)) {
    return Option.some({ names, process: { pid: job.pid, startTicks }, helpers })
  }
  return helpers.some(stillRuns) ? Option.some({ names, process: null, helpers }) : Option.none()
}

export const makeRecovery = (
  settings: RecoverySettings,
  ended: (record: JobRecord, entry: string | null) => Effect.Effect<void> = () => Effect.void
) =>
  Effect.gen(function*() {
    const nodes = yield* Nodes
    const spool = yield* Spool
    const archive = yield* Archive
    const leaseMs = Duration.toMillis(settings.lease)

    // As a job's own run would have placed it.
    const put = (finished: FinishedJob) => {
      const dir = destinationOf(finished.record.outcome, settings)
      return Option.isSome(dir) ? archive.store(dir.value, finished) : Effect.as(archive.discard(finished), "(deleted: no archive dir)")
    }
    /** A job's end, put as its own run would have, and told to `ended` with its entry (none when deleted). */
    const putEnd = (finished: FinishedJob) =>
      Effect.tap(put(finished), (entry) =>
        ended(finished.record, Option.isSome(destinationOf(finished.record.outcome, settings)) ? entry : null))

    const interruptedRecord = (left: Leftover, dead: string, attempt: number, reason: string, now: number): JobRecord =>
      unstartedRecord(
        { name: left.name, node: dead, host: settings.host, user: "", uid: left.uid, inode: left.inode, attempt, claimedAt: iso(left.claimedAt) },
        now,
        { outcome: "interrupted", exitCode: null, signal: null, reason }
      )

    const settle = (left: Leftover, dead: string) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const finished = (record: JobRecord, withScript: boolean, recordFile = left.recordFile): FinishedJob => ({
          script: withScript ? left.file : null,
          stdout: left.stdout,
          stderr: left.stderr,
          recordFile,
          record,
          owner: left.uid === null || left.gid === null ? null : { uid: left.uid, gid: left.gid }
        })
        if (left.record !== null) {
          const entry = yield* putEnd(finished(left.record, true))
          return yield* Effect.logInfo("recovered: archived as recorded").pipe(Effect.annotateLogs({ entry, outcome: left.record.outcome }))
        }
        if (left.file === null) {
          // Output of a dead attempt whose script went back to the spool already.
          const entry = yield* put(finished(interruptedRecord(left, dead, 0, `output of a run cut short when node ${dead} died`, now), false))
          return yield* Effect.logInfo("recovered: output kept").pipe(Effect.annotateLogs({ entry }))
        }
        const attempt = (yield* spool.startedBefore(left.file, left.name)) + 1
        const giveUp = settings.orphans === "fail" || attempt >= settings.maxAttempts
        if (giveUp) {
          const why = settings.orphans === "fail"
            ? `node ${dead} died while it ran (--orphans fail)`
            : `node ${dead} died while it ran, attempt ${attempt} of --max-attempts ${settings.maxAttempts}`
          const entry = yield* putEnd(finished(interruptedRecord(left, dead, attempt, why, now), true))
          return yield* Effect.logWarning("recovered: interrupted, not run again").pipe(Effect.annotateLogs({ entry, attempt }))
        }
        // The cut run's output gets its own entry; its record is kept apart
        // from the job's, so that should this recovery die half way, the next
        // one does not take it for the job's end (and redoes the same entry).
        if (left.stdout !== null || left.stderr !== null || left.cutRecord !== null) {
          const why = `node ${dead} died while it ran; run again as attempt ${attempt + 1}`
          const cut = left.cutRecord ?? interruptedRecord(left, dead, attempt, why, now)
          yield* put(finished(cut, false, left.cutRecordFile))
        }
        const requeued = yield* spool.requeue(left.file, left.name, attempt)
        if (requeued) yield* Effect.logInfo("recovered: queued again").pipe(Effect.annotateLogs({ attempt: attempt + 1 }))
        else yield* Effect.logWarning("recovered: kept, a queued job has its name; will retry")
      }).pipe(
        Effect.annotateLogs({ job: left.name, from: dead }),
        Effect.catchAll((error) => Effect.logError("recovery failed; kept, will retry").pipe(Effect.annotateLogs({ job: left.name, reason: error.message })))
      )

    // Read, then settled, each job on its own: one that cannot be read (an I/O
    // error on its record or its script) stays where it is for the next round,
    // and is logged; the folder's other jobs are settled all the same.
    const settleOne = (folder: string, names: LeftoverNames, dead: string) =>
      nodes.gather(folder, names).pipe(
        Effect.matchEffect({
          onFailure: (error) =>
            Effect.logError("recovery failed; kept, will retry").pipe(Effect.annotateLogs({ job: names.name, from: dead, reason: error.message })),
          onSuccess: (left) => settle(left, dead)
        })
      )

    // Depth first: folders the dead node had itself taken over come first.
    // A folder whose listing fails is retried whole in the next round.
    const empty = (folder: string, dead: string): Effect.Effect<void> =>
      Effect.gen(function*() {
        const inventory = yield* nodes.inventory(folder)
        for (const inner of inventory.folders) yield* empty(inner, deadOf(inner))
        for (const names of inventory.leftovers) yield* settleOne(folder, names, dead)
        yield* nodes.removeFolder(folder)
      }).pipe(
        Effect.catchAll((error) => Effect.logError("recovery failed; will retry").pipe(Effect.annotateLogs({ folder, reason: error.message })))
      )

    /**
     * One round: take over the dead, then empty what we hold of theirs. Returns
     * how many other nodes look alive (0 when the spool could not be read).
     */
    const round = Effect.gen(function*() {
      // Recovery moves and removes files: never in a state someone else may control.
      if (!(yield* spool.checkState)) return 0
      const now = yield* Clock.currentTimeMillis
      let alive = 0
      // For the metrics: a node that missed two beats (lease/4 apart) is stale,
      // whether or not its lease has run out yet; this one is live.
      const seen = { live: 1, stale: 0 }
      for (const view of yield* nodes.others) {
        const why = deathOf(view, now, settings.host, leaseMs, stillRuns)
        const late = view.heartbeat !== null && now - Date.parse(view.heartbeat.beatAt) > view.heartbeat.leaseMs / 2
        if (view.heartbeat !== null) seen[why !== null || late ? "stale" : "live"]++
        if (why === null) {
          if (view.heartbeat !== null) alive++
          continue
        }
        // Taken over already, by a node that died before it could forget it;
        // or killed in its first beat, before it had a heartbeat or a folder.
        if (view.folder === null) {
          yield* nodes.forget(view.node)
          continue
        }
        const taken = yield* nodes.takeOver(view.node)
        if (Option.isNone(taken)) continue
        yield* Effect.logWarning("node dead; recovering its jobs").pipe(Effect.annotateLogs({ dead: view.node, reason: why }))
        yield* nodes.forget(view.node)
      }
      yield* Metric.set(Metric.tagged(nodesSeen, "state", "live"), seen.live)
      yield* Metric.set(Metric.tagged(nodesSeen, "state", "stale"), seen.stale)
      for (const folder of yield* nodes.adopted) yield* empty(folder, deadOf(folder))
      return alive
    }).pipe(
      Effect.catchAll((error) => Effect.as(Effect.logWarning("recovery round failed").pipe(Effect.annotateLogs({ reason: error.message })), 0))
    )

    /**
     * At startup: what a previous process with this node id left in its folder
     * (a reused --node-id after a crash or a stop). Nothing of this process runs
     * yet, so all of it is settled like a dead node's, except the jobs a pmjq
     * that stopped with --on-stop leave left running (`inherited`, its
     * heartbeat): those are returned, to be adopted, and the folder stays.
     */
    const own = (inherited: Option.Option<Heartbeat>) =>
      Effect.gen(function*() {
        const folder = nodes.ownFolder
        const inventory = yield* nodes.inventory(folder)
        for (const inner of inventory.folders) yield* empty(inner, deadOf(inner))
        const adopted: Array<Adoptable> = []
        for (const names of inventory.leftovers) {
          const running = Option.flatMap(inherited, (hb) => stillRunning(hb, names))
          if (Option.isSome(running)) adopted.push(running.value)
          else yield* settleOne(folder, names, settings.node)
        }
        if (adopted.length === 0) yield* nodes.removeFolder(folder)
        return adopted
      }).pipe(
        Effect.catchAll((error) =>
          Effect.as(Effect.logError("recovery failed; will retry").pipe(Effect.annotateLogs({ folder: nodes.ownFolder, reason: error.message })), [])
        )
      )

    return { own, round, settleOne }
  })
