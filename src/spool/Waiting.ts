/**
 * The jobs this node saw that may not start yet: held (`#PMJQ --hold`), or
 * waiting for their dependencies (directives/dependencies.ts). They take no slot and
 * no process, and are not in the pending queue: each review (a rescan, a job
 * of this node ending) judges them again, and those free to go (or doomed:
 * a dependency failed, a loop) are handed to the queue. Held by a file moved
 * aside (`pmjq hold`), a job is not even listed: it is no job until released.
 */
import type { Directives } from "../directives/directives.js"
import { dependencyNames, type Verdict } from "../directives/dependencies.js"
import type { Candidate } from "./Pending.js"

export interface WaitingJob {
  readonly candidate: Candidate
  readonly directives: Directives
  /** What it waits for now: "held", or the first dependency not met. */
  readonly reason: string
}

export type WaitReason = "held" | "dependency"

export const makeWaiting = () => {
  const jobs = new Map<string, WaitingJob>()
  return {
    /** Whether CANDIDATE (its directives read) may not start yet: then it is kept here, else left out. */
    admit: (candidate: Candidate): boolean => {
      const d = candidate.read?.directives
      if (d === undefined || candidate.read!.problem !== null || (!d.hold && dependencyNames(d).length === 0)) {
        jobs.delete(candidate.name)
        return false
      }
      const before = jobs.get(candidate.name)
      jobs.set(candidate.name, { candidate, directives: d, reason: d.hold ? "held" : before?.reason ?? "dependencies not looked at yet" })
      return true
    },
    has: (name: string) => jobs.has(name),
    /** NAME is no job any more (gone, or not executable). */
    forget: (name: string) => void jobs.delete(name),
    /** The jobs waiting on dependencies (not held), for a review. */
    onDependencies: (): ReadonlyArray<WaitingJob> => [...jobs.values()].filter((w) => !w.directives.hold),
    /** What a review found for NAME: Ready and Failed leave (the caller queues them); Waiting says for what. */
    judged: (name: string, verdict: Verdict) => {
      const job = jobs.get(name)
      if (job === undefined) return
      if (verdict._tag === "Waiting") jobs.set(name, { ...job, reason: verdict.reason })
      else jobs.delete(name)
    },
    /** Drops the names gone from the spool (claimed elsewhere, removed, held aside). */
    retain: (present: ReadonlySet<string>) => {
      for (const name of jobs.keys()) if (!present.has(name)) jobs.delete(name)
    },
    size: () => jobs.size,
    /** Every job waiting, as it was seen. */
    all: (): ReadonlyArray<WaitingJob> => [...jobs.values()],
    /** How many wait, by why. */
    counts: (): Record<WaitReason, number> => {
      let held = 0
      for (const w of jobs.values()) if (w.directives.hold) held++
      return { held, dependency: jobs.size - held }
    }
  }
}

export type Waiting = ReturnType<typeof makeWaiting>
