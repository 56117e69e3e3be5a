/**
 * The failures pmjq tells apart: one tagged error per decision a caller makes.
 * Startup errors carry the sysexits status the entry point exits with.
 */
import { Data, Effect } from "effect"
import * as os from "node:os"

/** The spool directory does not exist or is not a directory (EX_NOINPUT). */
export class SpoolMissing extends Data.TaggedError("SpoolMissing")<{
  readonly path: string
}> {
  override get message() {
    return `job spool ${this.path} does not exist or is not a directory`
  }
}

/** A file or archive entry a command was given does not exist (EX_NOINPUT). */
export class InputMissing extends Data.TaggedError("InputMissing")<{
  readonly path: string
  readonly what: string
}> {
  override get message() {
    return `${this.what} ${this.path} does not exist`
  }
}

/**
 * `pmjq log`: no job of that name is queued or running on the spool, nor
 * archived in a dir a node publishes (EX_NOINPUT).
 */
export class NoSuchJob extends Data.TaggedError("NoSuchJob")<{
  readonly name: string
  readonly spool: string
}> {
  override get message() {
    return `${this.name}: no such job: not queued or running on ${this.spool}, nor archived where its nodes archive (their archive and error dirs, as their heartbeats say)`
  }
}

/**
 * `pmjq log`: the job's node keeps no output in files (no -o, no -e: it goes
 * to the node's own log), so there is none to read (EX_NOINPUT).
 */
export class OutputNotKept extends Data.TaggedError("OutputNotKept")<{
  readonly name: string
  readonly node: string
}> {
  override get message() {
    return `${this.name}: its output is not kept: node ${this.node} runs jobs without -o or -e, and their output goes to its log`
  }
}

/**
 * `pmjq log`: a job's output file that cannot be read: not the job's (a
 * symlink, not a regular file, another owner's) or not the caller's to read
 * (EX_NOPERM); or an I/O error (EX_TEMPFAIL: a network filesystem may answer
 * again).
 */
export class OutputUnreadable extends Data.TaggedError("OutputUnreadable")<{
  readonly file: string
  readonly reason: string
  readonly denied: boolean
}> {
  override get message() {
    return `cannot read ${this.file}: ${this.reason}`
  }
}

/**
 * An output file `pmjq log` had open is lost to it: ESTALE once another NFS
 * client removed it (the node that archived it), or another I/O error. Never
 * seen by a user: the follower reads the archived copy from where it stood.
 */
export class OutputLost extends Data.TaggedError("OutputLost")<{
  readonly reason: string
}> {}

/** A directory pmjq needs (archive, error, its own state) cannot be created (EX_CANTCREAT). */
export class CannotCreateDirectory extends Data.TaggedError("CannotCreateDirectory")<{
  readonly path: string
  readonly reason: string
}> {
  override get message() {
    return `cannot create directory ${this.path}: ${this.reason}`
  }
}

/** A command-line value pmjq refuses (EX_USAGE). */
export class UsageError extends Data.TaggedError("UsageError")<{
  readonly reason: string
}> {
  override get message() {
    return this.reason
  }
}

/** An option that needs privileges pmjq does not have (EX_NOPERM). */
export class NotPermitted extends Data.TaggedError("NotPermitted")<{
  readonly reason: string
}> {
  override get message() {
    return this.reason
  }
}

/** An unexpected I/O failure on the spool: logged, and the operation retried later. */
export class SpoolIOError extends Data.TaggedError("SpoolIOError")<{
  readonly operation: string
  readonly path: string
  readonly reason: string
}> {
  override get message() {
    return `${this.operation} ${this.path}: ${this.reason}`
  }
}

/** RUN, a promise of filesystem calls, as an Effect that fails with a SpoolIOError naming OPERATION and FILE. */
export const spoolIO = <A>(operation: string, file: string, run: () => Promise<A>) =>
  Effect.tryPromise({ try: run, catch: (e) => new SpoolIOError({ operation, path: file, reason: describe(e) }) })

/**
 * The job file is still open for writing (ETXTBSY at exec): it is not ready yet,
 * so the run is retried rather than recorded as a failure.
 */
export class JobBusy extends Data.TaggedError("JobBusy")<{
  readonly path: string
}> {
  override get message() {
    return `${this.path} is still being written (ETXTBSY)`
  }
}

/**
 * No spawner could take the job (its fork failed, or it died or was let go
 * before the job was sent to it): the job was not started, so the run is
 * retried, then handed back to the queue, never recorded as a failure.
 */
export class NoSpawner extends Data.TaggedError("NoSpawner")<{
  readonly reason: string
}> {
  override get message() {
    return `no spawner to start it: ${this.reason}`
  }
}

/** The job could not be started at all (missing interpreter, no shebang, EACCES...). */
export class SpawnFailed extends Data.TaggedError("SpawnFailed")<{
  readonly path: string
  readonly code: string
  readonly reason: string
}> {
  override get message() {
    return `cannot execute: ${this.reason}`
  }
}

/** A finished job could not be moved to its archive: it is kept where it is. */
export class ArchiveFailed extends Data.TaggedError("ArchiveFailed")<{
  readonly path: string
  readonly reason: string
}> {
  override get message() {
    return `cannot archive to ${this.path}: ${this.reason}`
  }
}

/**
 * The running folder that held a finished job is gone: another node took it
 * over while this one seemed dead, and that node answers for the job now.
 */
export class ClaimLost extends Data.TaggedError("ClaimLost")<{
  readonly path: string
}> {
  override get message() {
    return `${this.path} was taken over by another node`
  }
}

/**
 * Jobs left running by a pmjq whose spawners speak a newer protocol than this
 * one: this pmjq cannot watch them, and must not settle them as a dead node's
 * (they would run twice). EX_TEMPFAIL: start that version, or wait for them.
 */
export class CannotAdopt extends Data.TaggedError("CannotAdopt")<{
  readonly node: string
  readonly protocol: number
  readonly ours: number
}> {
  override get message() {
    return `node ${this.node}'s running jobs were left by a pmjq whose spawners speak protocol ${this.protocol}; this pmjq speaks ${this.ours} and cannot adopt them: start that version of pmjq, or wait until they end`
  }
}

/** This node id's heartbeat is another host's, and fresh: it runs there, or its jobs do (EX_TEMPFAIL). */
export class NodeElsewhere extends Data.TaggedError("NodeElsewhere")<{
  readonly node: string
  readonly host: string
  readonly ageSeconds: number
}> {
  override get message() {
    return `node ${this.node} is alive on host ${this.host} (heartbeat ${this.ageSeconds} s old): give this pmjq another --node-id, or start it once that node's lease is over`
  }
}

/** --metrics-listen could not listen (the port taken, the address not this host's), or --metrics-file could not be written. */
export class CannotServeMetrics extends Data.TaggedError("CannotServeMetrics")<{
  readonly reason: string
}> {
  override get message() {
    return this.reason
  }
}

/**
 * The node could not write its heartbeat for half its lease: it stopped its
 * jobs (another node runs them again) and exits, for its service manager to
 * start it again once the spool is back (EX_TEMPFAIL).
 */
export class CutOff extends Data.TaggedError("CutOff")<{
  readonly spool: string
}> {
  override get message() {
    return `cut off from the spool ${this.spool}: no heartbeat could be written for half the lease, so its running jobs were stopped (the node that takes them over runs them again); start pmjq again once the spool is back`
  }
}

/** A --drain in which a job did not succeed: exit status 1, like make(1); its last line said which. */
export class DrainFailed extends Data.TaggedError("DrainFailed")<{
  readonly failed: number
}> {
  override get message() {
    return `${this.failed} drained ${this.failed === 1 ? "job" : "jobs"} did not succeed`
  }
}

export type StartupError =
  | DrainFailed
  | CutOff
  | SpoolMissing
  | InputMissing
  | NoSuchJob
  | OutputNotKept
  | OutputUnreadable
  | CannotCreateDirectory
  | UsageError
  | NotPermitted
  | CannotAdopt
  | NodeElsewhere
  | CannotServeMetrics

/** sysexits(3) status for each startup error. */
export const exitStatus = (error: StartupError): number => {
  switch (error._tag) {
    case "UsageError":
      return 64
    case "SpoolMissing":
    case "InputMissing":
    case "NoSuchJob":
    case "OutputNotKept":
      return 66
    case "OutputUnreadable":
      return error.denied ? 77 : 75
    case "CannotCreateDirectory":
      return 73
    case "NotPermitted":
      return 77
    case "CannotAdopt":
    case "NodeElsewhere":
    case "CutOff":
      return 75
    case "CannotServeMetrics":
      return 69
    case "DrainFailed":
      return 1
  }
}

// libuv has no name for some errors network filesystems give (ESTALE from
// NFS and FUSE): Node calls them "Unknown system error -116". The kernel's
// names, by number, from the constants Node does know.
const errnoNames = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]))
const UNKNOWN = /^Unknown system error (-?\d+)/

const codeOf = (error: NodeJS.ErrnoException): string | undefined => {
  const unknown = error.code === undefined ? null : UNKNOWN.exec(error.code)
  return unknown === null ? error.code : errnoNames.get(Math.abs(Number(unknown[1]))) ?? error.code
}

/** One line from a Node system error, e.g. "EACCES: permission denied". */
export const describe = (error: unknown): string => {
  if (error instanceof Error) {
    const code = codeOf(error)
    const text = error.message.replace(/^[A-Z]+: /, "").replace(/, \w+ '.*'$/, "")
    if (code !== undefined && UNKNOWN.test(error.message)) return `${code} (${error.message.replace(/(Unknown system error -?\d+(: |, )?)+/g, "") || "no description"})`
    return code ? `${code}: ${text}` : text
  }
  return String(error)
}

export const errnoCode = (error: unknown): string | undefined => (error instanceof Error ? codeOf(error) : undefined)

const startupTags: ReadonlySet<string> = new Set([
  "SpoolMissing",
  "InputMissing",
  "NoSuchJob",
  "OutputNotKept",
  "OutputUnreadable",
  "CannotCreateDirectory",
  "UsageError",
  "NotPermitted",
  "CannotAdopt",
  "NodeElsewhere",
  "CannotServeMetrics",
  "CutOff",
  "DrainFailed"
])

export const isStartupError = (u: unknown): u is StartupError =>
  typeof u === "object" && u !== null && "_tag" in u && startupTags.has(String(u._tag))
