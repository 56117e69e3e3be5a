/**
 * What pmjq and its spawners say to each other (Node IPC, one JSON message
 * each way per event; see spawner.ts). Types only: the Runner (pmjq's side)
 * and the spawner both import them, and neither imports the other.
 *
 *   in:  SpawnRequest | KeepRequest
 *   out: { id, pid, startTicks } | { id, error: { code, message } }
 *        | { id, exitCode, signal, startedAt, endedAt, recorded }
 */
import type { ProcessId } from "../process/proc.js"
import type { RecordBase } from "../record/record.js"
import type { JobUser } from "./world.js"

/**
 * The version of this protocol, and of what the spawners of a pmjq that left
 * do for the next one (KeepRequest, the records): said in the heartbeat, so
 * that a pmjq adopts only jobs whose spawners it understands. Raise it with
 * any change a pmjq of the version before could not follow.
 */
export const SPAWNER_PROTOCOL = 1

export interface SpawnRequest {
  readonly id: number
  readonly path: string
  /** Where a job run as pmjq starts (one run as its owner starts in the owner's home). */
  readonly cwd: string
  /** The job's own variables (PMJQ_*). */
  readonly env: Readonly<Record<string, string>>
  /** Names whose values a job run as its owner keeps from pmjq's environment (--keep-env). */
  readonly keepEnv: ReadonlyArray<string>
  /** RLIMIT_NPROC of a job run as its owner (--job-nproc); null: none. */
  readonly nproc: number | null
  /** A file to create (never one that exists), or null: a pipe, copied to pmjq's own stdout. */
  readonly stdout: string | null
  /** As stdout; a pipe's lines reach pmjq's stderr marked with the job's name. */
  readonly stderr: string | null
  /** Where to write the job's record the moment it ends, and what pmjq knows of it. */
  readonly record: { readonly file: string; readonly base: RecordBase } | null
  /** Run as this user: setpriv(1) sets uid, gid and the user's supplementary groups; null: as pmjq. */
  readonly user: JobUser | null
}

/**
 * pmjq runs with --on-stop leave: whenever it goes (a stop, a crash, SIGKILL),
 * its jobs stay. The spawner goes on waiting for them and writing their
 * records, and keeps the node's heartbeat fresh (`heartbeatFile`, every
 * `everyMs`, marked `left`) while it has jobs, no spawner before it in
 * `spawners` still runs, and no live process owns the heartbeat (the next
 * pmjq, once it beats, does); it exits once its last job has ended.
 */
export interface KeepRequest {
  readonly keep: {
    readonly heartbeatFile: string
    readonly heartbeatAside: string
    readonly everyMs: number
    /** Every spawner of this pmjq, in order, with its start time. */
    readonly spawners: ReadonlyArray<ProcessId>
  }
}

/**
 * pmjq lets an idle spawner go (--spawner-idle): no job of its runs, and none
 * will be sent. It exits once its jobs' output is all copied (a job's
 * background child may still write through it, for a while: spawner.ts:
 * retire), and pmjq disconnects at once.
 */
export interface RetireRequest {
  readonly retire: true
}

export type SpawnerMessage = SpawnRequest | KeepRequest | RetireRequest

/**
 * The spawner's first message, once it is loaded and listening: pmjq sends it
 * no job before. A spawner that ends before it said so read no request, so
 * the job meant for it was not started (one that ends later may have started
 * it, and its job is recorded as interrupted or not started, never run again).
 */
export interface Ready {
  readonly ready: true
}

export type SpawnReport =
  /** Started; with its start time (proc.ts: startTicks), read while it is the spawner's unreaped child. */
  | { readonly id: number; readonly pid: number; readonly startTicks: number | null }
  | { readonly id: number; readonly error: { readonly code: string; readonly message: string } }
  | {
    readonly id: number
    readonly exitCode: number | null
    readonly signal: NodeJS.Signals | null
    readonly startedAt: number
    readonly endedAt: number
    /** The record was written before this report was sent. */
    readonly recorded: boolean
  }
