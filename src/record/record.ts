/**
 * A job's record, archived as STAMP_NAME.json beside it. Its fields are a stable
 * interface for scripts (see DESIGN.md); add fields, never rename them.
 *
 * Plain data and pure functions, at the bottom of the module map: the spool
 * reads records (recovery, status), jobs and their spawner write them, and the
 * spawner bundles this without Effect.
 */

/** Every way a job can end: the record's, the metrics' and the decoder's one list. */
export const OUTCOMES = ["succeeded", "failed", "timed-out", "interrupted", "rejected", "cancelled", "dependency-failed"] as const
export type Outcome = typeof OUTCOMES[number]

export interface JobRecord {
  readonly name: string
  readonly node: string
  readonly host: string
  readonly pid: number | null
  readonly user: string
  /** The job file's owner, and its inode: what `pmjq submit --wait` knows its own job by. */
  readonly uid: number | null
  readonly inode: number | null
  readonly attempt: number
  readonly claimedAt: string
  readonly startedAt: string | null
  readonly endedAt: string
  readonly durationMs: number
  readonly outcome: Outcome
  readonly exitCode: number | null
  readonly signal: string | null
  readonly reason: string | null
}

/** What is known of a job when it starts; the rest comes from its end. */
export type RecordBase = Pick<JobRecord, "name" | "node" | "host" | "user" | "uid" | "inode" | "attempt" | "claimedAt">

export const iso = (millis: number) => new Date(millis).toISOString()

/**
 * The record of a run that started. pmjq's spawner writes it the moment the
 * process ends and pmjq writes it when it judges otherwise (a stop it asked
 * for): both through here, so the same facts give the same bytes.
 */
export const startedRecord = (base: RecordBase, pid: number, startedAt: number, endedAt: number, ending: Ending): JobRecord => ({
  name: base.name,
  node: base.node,
  host: base.host,
  pid,
  user: base.user,
  uid: base.uid,
  inode: base.inode,
  attempt: base.attempt,
  claimedAt: base.claimedAt,
  startedAt: iso(startedAt),
  endedAt: iso(endedAt),
  durationMs: endedAt - startedAt,
  ...judge(ending)
})

/** The record of a job that never ran (refused, could not start, cut before it started). */
export const unstartedRecord = (
  base: RecordBase,
  endedAt: number,
  verdict: Pick<JobRecord, "outcome" | "exitCode" | "signal" | "reason">
): JobRecord => ({
  name: base.name,
  node: base.node,
  host: base.host,
  pid: null,
  user: base.user,
  uid: base.uid,
  inode: base.inode,
  attempt: base.attempt,
  claimedAt: base.claimedAt,
  startedAt: null,
  endedAt: iso(endedAt),
  durationMs: 0,
  ...verdict
})

export const recordText = (record: JobRecord) => JSON.stringify(record, null, 2) + "\n"

/** How a job's process ended, as its runner tells it. */
export interface ProcessExit {
  readonly exitCode: number | null
  readonly signal: NodeJS.Signals | null
  /** Set when pmjq lost track of the job and stopped it: why. */
  readonly lost?: string
  /** When it started and ended, by the clock of whoever watched it. */
  readonly times?: { readonly startedAt: number; readonly endedAt: number }
  /** The spec's record was written, from these very facts, as the process ended. */
  readonly recorded?: boolean
}

/** What happened to the process, before it is written down. */
export type Ending =
  | {
    readonly _tag: "Exited"
    readonly exit: ProcessExit
    /** pmjq stopped it (a stop, or lost track of it). */
    readonly interrupted: boolean
    /** It ran past --timeout (the limit, as written) and was stopped. */
    readonly timedOut: string | null
  }
  | { readonly _tag: "NotStarted"; readonly reason: string }
  | { readonly _tag: "Rejected"; readonly reason: string }
  /** Never run: a job it runs `--after` ended otherwise than succeeded, or its dependencies loop. */
  | { readonly _tag: "DependencyFailed"; readonly reason: string }
  /** `pmjq cancel` by BY (a user name or uid): before it started (no exit), or its process group stopped. */
  | { readonly _tag: "Cancelled"; readonly by: string; readonly exit: ProcessExit | null }

export const judge = (ending: Ending): Pick<JobRecord, "outcome" | "exitCode" | "signal" | "reason"> => {
  if (ending._tag === "NotStarted") {
    return { outcome: "failed", exitCode: null, signal: null, reason: ending.reason }
  }
  if (ending._tag === "Rejected") {
    return { outcome: "rejected", exitCode: null, signal: null, reason: `refused: ${ending.reason}` }
  }
  if (ending._tag === "DependencyFailed") {
    return { outcome: "dependency-failed", exitCode: null, signal: null, reason: ending.reason }
  }
  if (ending._tag === "Cancelled") {
    if (ending.exit === null) return { outcome: "cancelled", exitCode: null, signal: null, reason: `cancelled by ${ending.by} before it started` }
    const { exitCode, signal } = ending.exit
    return { outcome: "cancelled", exitCode, signal, reason: `cancelled by ${ending.by}; its process group was stopped (${signal ?? `exit ${exitCode}`})` }
  }
  const { exitCode, signal, lost } = ending.exit
  if (lost !== undefined) return { outcome: "interrupted", exitCode, signal, reason: lost }
  if (ending.interrupted) {
    return {
      outcome: "interrupted",
      exitCode,
      signal,
      reason: `pmjq stopped before the job ended (${signal ?? `exit ${exitCode}`})`
    }
  }
  if (ending.timedOut !== null) {
    return {
      outcome: "timed-out",
      exitCode,
      signal,
      reason: `ran longer than --timeout ${ending.timedOut}; its process group was stopped (${signal ?? `exit ${exitCode}`})`
    }
  }
  if (signal !== null) return { outcome: "failed", exitCode: null, signal, reason: `killed by ${signal}` }
  if (exitCode === 0) return { outcome: "succeeded", exitCode: 0, signal: null, reason: null }
  return { outcome: "failed", exitCode, signal: null, reason: `exited with status ${exitCode}` }
}
