/**
 * What pmjq reads back from disk (records, heartbeats, attempt notes) is
 * decoded here before it is believed: a file in the spool may have been
 * written by anyone, torn by a crash, or made by another version. A value that
 * does not decode is set aside (quarantine), never trusted and never fatal.
 */
import { Either, ParseResult, Schema } from "effect"
import type { ProcessId } from "../process/proc.js"
import { type JobRecord, OUTCOMES } from "./record.js"

/**
 * A name pmjq may join to a folder: one path component, never `.` or `..`,
 * no NUL, at most NAME_MAX bytes, not hidden (hidden names are never jobs).
 */
export const isJobName = (name: string): boolean =>
  name.length > 0 && !name.startsWith(".") && !name.includes("/") && !name.includes("\0") &&
  Buffer.byteLength(name) <= 255

const JobName = Schema.String.pipe(
  Schema.filter(isJobName, { message: () => "a job name must be one path component, not hidden" })
)

/** ISO 8601 text that is a real instant (an invalid date crashed an earlier pmjq). */
const Instant = Schema.String.pipe(
  Schema.filter((text) => Number.isFinite(Date.parse(text)) && Math.abs(Date.parse(text)) <= 8.64e15, {
    message: () => "not a valid ISO 8601 time"
  })
)

const Count = Schema.Number.pipe(Schema.int(), Schema.nonNegative())
/**
 * An inode number as Node gives it (fs.Stats.ino, a double): GlusterFS, some
 * NFS servers and XFS hand out 64-bit numbers past 2^53, which are whole but
 * not "safe" integers. Refusing them once sent every finished job's record on
 * GlusterFS to quarantine, and the job ran again.
 */
const Inode = Schema.Number.pipe(Schema.filter((n) => Number.isInteger(n) && n >= 0, { message: () => "not an inode number" }))
const Pid = Schema.Number.pipe(Schema.int(), Schema.positive())

const nullByDefault = <A, I>(schema: Schema.Schema<A, I>) => Schema.optionalWith(Schema.NullOr(schema), { default: () => null })

const JobRecordSchema = Schema.Struct({
  name: JobName,
  node: Schema.String,
  host: Schema.String,
  pid: Schema.NullOr(Pid),
  user: Schema.String,
  // Absent in records written before pmjq kept them.
  uid: nullByDefault(Count),
  inode: nullByDefault(Inode),
  attempt: Count,
  claimedAt: Instant,
  startedAt: Schema.NullOr(Instant),
  endedAt: Instant,
  durationMs: Schema.Number,
  outcome: Schema.Literal(...OUTCOMES),
  exitCode: Schema.NullOr(Schema.Number.pipe(Schema.int())),
  signal: Schema.NullOr(Schema.String),
  reason: Schema.NullOr(Schema.String)
})

/** job-spool/.pmjq/ended/UID/NAME: how UID's last job named NAME ended (spool/ended.ts). */
const EndedNoteSchema = Schema.Struct({
  name: JobName,
  /** The job file's owner: a dependency names one of its dependent's owner's jobs. */
  uid: Count,
  outcome: JobRecordSchema.fields.outcome,
  exitCode: Schema.NullOr(Schema.Number.pipe(Schema.int())),
  endedAt: Instant,
  node: Schema.String
})
export type EndedNote = typeof EndedNoteSchema.Type

/** job-spool/.pmjq/paused/spool or paused/node-NODE: who paused, when, and why (spool/pauses.ts). */
const PauseNoteSchema = Schema.Struct({
  by: Schema.String.pipe(Schema.maxLength(256)),
  at: Instant,
  reason: Schema.NullOr(Schema.String.pipe(Schema.maxLength(1024)))
})
export type PauseNote = typeof PauseNoteSchema.Type

/** job-spool/.pmjq/nodes/NODE, rewritten every lease/4 (see spool/Nodes.ts). */
const HeartbeatSchema = Schema.Struct({
  node: Schema.String,
  host: Schema.String,
  pid: Pid,
  /** When pmjq's process started (proc.ts: ProcessId); absent before pmjq kept it. */
  startTicks: Schema.optional(Count),
  /** Its helper processes' pids (spawners), for pmjq versions that read no more. */
  helpers: Schema.Array(Pid),
  /**
   * Its helper processes with their start times: its jobs may run until these
   * are gone too (absent before pmjq kept them: then `helpers` is all there is).
   */
  spawners: Schema.optional(Schema.Array(Schema.Struct({ pid: Pid, startTicks: Count }))),
  /** ISO 8601 UTC, by the writer's clock. */
  beatAt: Instant,
  leaseMs: Schema.Number.pipe(Schema.positive()),
  archiveDir: nullByDefault(Schema.String),
  errorDir: nullByDefault(Schema.String),
  running: Schema.optionalWith(Count, { default: () => 0 }),
  load: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  /**
   * The jobs running at the time of the beat, by claimed file name; with the
   * start time of their process (proc.ts: startTicks), so that a pid reused by
   * another process is never taken for the job (absent before pmjq kept it).
   */
  jobs: Schema.optional(Schema.Array(Schema.Struct({ name: Schema.String, pid: Pid, startTicks: Schema.optional(Count) }))),
  /**
   * Written by the spawners of a pmjq that stopped with --on-stop leave: its
   * jobs run on under them, and the next pmjq with this node id adopts them.
   */
  left: Schema.optional(Schema.Boolean),
  /** What its spawners speak (spawner/protocol.ts: SPAWNER_PROTOCOL); 1 before pmjq said. */
  protocol: Schema.optionalWith(Count, { default: () => 1 }),
  /**
   * What holds its queue back, for `pmjq status` to say why a job waits:
   * -j (0: no cap), --max-jobs-per-user, -C (null: not given), the gate's
   * load estimate (estimate.ts) as of the beat, and --run-as-owner (which
   * decides what it refuses). Absent before pmjq wrote them: status then
   * says it cannot tell.
   */
  maxJobs: Schema.optional(Count),
  maxJobsPerUser: Schema.optional(Schema.NullOr(Count)),
  cpuLimit: Schema.optional(Schema.NullOr(Schema.Number.pipe(Schema.finite()))),
  loadEstimate: Schema.optional(Schema.Number.pipe(Schema.finite())),
  runAsOwner: Schema.optional(Schema.Boolean)
})

export type Heartbeat = typeof HeartbeatSchema.Type

/** The pmjq that wrote HB, as a process (proc.ts: ProcessId). */
export const writerOf = (hb: Heartbeat): ProcessId => ({ pid: hb.pid, startTicks: hb.startTicks ?? null })

/** HB's spawners, as processes; by pid alone only in a heartbeat written before pmjq kept start times. */
export const spawnersOf = (hb: Heartbeat): ReadonlyArray<ProcessId> =>
  hb.spawners ?? hb.helpers.map((pid) => ({ pid, startTicks: null }))

/** .pmjq/attempts/NAME: starts of each requeued file named NAME, by inode (see Spool.ts). */
const AttemptNotesSchema = Schema.Record({
  key: Schema.String,
  value: Schema.Struct({ attempts: Count, mtimeMs: Schema.Number })
})

export type AttemptNotes = typeof AttemptNotesSchema.Type

/** TEXT as JSON, decoded with SCHEMA; on failure, why, in one line. */
const decodeJson = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknownEither(schema)
  return (text: string): Either.Either<A, string> => {
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      return Either.left("not JSON")
    }
    return Either.mapLeft(decode(value), (error) => {
      const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
      return issue === undefined ? "does not decode" : `${issue.path.length > 0 ? issue.path.join(".") + ": " : ""}${issue.message}`
    })
  }
}

/**
 * .pmjq/running/NODE/.NAME.done: where the job's archive entry goes, on which
 * host, and whether it is whole yet (see job/ArchivalMark.ts). Only logged and
 * returned: never joined to a path.
 */
const DoneMarkSchema = Schema.Struct({
  entry: Schema.String,
  host: Schema.String,
  state: Schema.Literal("placing", "placed"),
  at: Instant
})

export type DoneMark = typeof DoneMarkSchema.Type

/** SPOOL/.pmjq-cancel-*: one job to cancel, asked by the file's owner (see features/Cancels.ts). */
const CancelRequestSchema = Schema.Struct({ name: JobName })

export const decodeCancelRequest = decodeJson(CancelRequestSchema)
export const decodeEndedNote = decodeJson(EndedNoteSchema)
export const decodePauseNote = decodeJson(PauseNoteSchema)

export const decodeRecord: (text: string) => Either.Either<JobRecord, string> = decodeJson(JobRecordSchema)
export const decodeHeartbeat = decodeJson(HeartbeatSchema)
export const decodeAttemptNotes = decodeJson(AttemptNotesSchema)
export const decodeDoneMark = decodeJson(DoneMarkSchema)
