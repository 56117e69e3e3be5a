/**
 * How a command that waited for a job ends once the job has (`pmjq submit
 * --wait`, `pmjq retry --wait`, `pmjq log -f`): with the job's status, so that
 * a script reads the job's end as its own, and a line on stderr when pmjq's
 * verdict, not the job's exit, is what ended it. One place, so that the
 * commands can never disagree about the same record.
 */
import * as os from "node:os"
import type { JobRecord } from "../record/record.js"
import { visible } from "../log/text.js"

const SIGNALS: Readonly<Record<string, number>> = os.constants.signals

/** The job's status: its own, 128+signal when killed (as a shell reports it), 1 when it never ran. */
export const waitStatus = (record: JobRecord) =>
  record.exitCode !== null ? record.exitCode : record.signal !== null ? 128 + (SIGNALS[record.signal] ?? 0) : 1

/** A cancelled job's: 128 + SIGTERM, as a shell reports a job stopped by SIGTERM, whether it had started or not. */
export const CANCELLED_STATUS = 143

/**
 * A job never run because a job it ran --after did not succeed (or its
 * dependencies looped): 65, among pmjq's own sysexits-style statuses, with a
 * line saying which job ended how.
 */
export const DEPENDENCY_FAILED_STATUS = 65

/**
 * What a waiting command exits with once job NAME ended as RECORD says, and
 * the line it prints on stderr after the job's output (null: the status
 * says it all).
 */
export const endOf = (name: string, record: JobRecord): { readonly status: number; readonly says: string | null } =>
  record.outcome === "rejected"
    ? { status: 1, says: `pmjq: ${visible(name)} was rejected: ${visible(record.reason ?? "")}` }
    : record.outcome === "dependency-failed"
    ? { status: DEPENDENCY_FAILED_STATUS, says: `pmjq: ${visible(name)} was ${visible(record.reason ?? "not run: a dependency failed")}` }
    : record.outcome === "cancelled"
    ? { status: CANCELLED_STATUS, says: `pmjq: ${visible(name)} was ${visible(record.reason ?? "cancelled")}` }
    : { status: waitStatus(record), says: null }
