/**
 * The facts a job's dependencies are judged on (directives/dependencies.ts), looked
 * up in the spool for each name, among the jobs of the dependent's own owner
 * only (names are public: no other user's file, held file, claim or note of
 * that name may stand in for it): queued (an lstat), held
 * (`.pmjq-held-NAME`), running (any node's running folder, taken-over ones
 * included), or how that owner's last job of the name ended
 * (`.pmjq/ended/UID/NAME`). A job moves between these places by renames while
 * it is looked for, so a name found nowhere is looked for once more before
 * its note is believed. Only the names asked about are looked at, at most
 * LOOKUPS a review: thousands of jobs waiting on one build cost one lookup.
 */
import * as path from "node:path"
import { type DependencyFacts, dependencyNames, judgeDependencies, loopsAmong, type Presence, type Verdict } from "../directives/dependencies.js"
import type { Directives } from "../directives/directives.js"
import type { EndedNote } from "../record/decode.js"
import type { Calls } from "../filesystem/syscalls.js"
import { readEnded } from "./ended.js"
import { claimedName, heldName, isAdopted, isHidden, runningRoot } from "./layout.js"

const ownedBy = (calls: Calls, file: string, uid: number) => calls.lstat(file).then((s) => s.uid === uid, () => false)

const listOr = (calls: Calls, dir: string) => calls.entries(dir).catch(() => [])

// Folders taken over from dead nodes nest (a taker that died was taken over
// in turn); a few levels are all a spool ever sees (as spool/places.ts).
const ADOPTED_DEPTH = 4

/** Every claim in every node's running folder now, taken-over folders included: each job's name, with its files. */
export const runningClaims = async (calls: Calls, spool: string): Promise<Map<string, Array<string>>> => {
  const claims = new Map<string, Array<string>>()
  const collect = async (dir: string, depth: number) => {
    for (const e of await listOr(calls, dir)) {
      if (!e.isDirectory && !isHidden(e.name)) {
        const name = claimedName(e.name)
        claims.set(name, [...(claims.get(name) ?? []), path.join(dir, e.name)])
      } else if (e.isDirectory && depth < ADOPTED_DEPTH && isAdopted(e.name)) await collect(path.join(dir, e.name), depth + 1)
    }
  }
  const root = runningRoot(spool)
  for (const folder of await listOr(calls, root)) if (folder.isDirectory) await collect(path.join(root, folder.name), 0)
  return claims
}

/**
 * The facts about NAMES in SPOOL, for a dependent owned by UID. OWNER: the
 * uid of pmjq's own files (an ended note owned by anyone else is not believed).
 */
export const dependencyFacts = async (
  calls: Calls, spool: string, names: ReadonlyArray<string>, uid: number, owner: number
): Promise<DependencyFacts> => {
  const presence = new Map<string, Presence>()
  const ended = new Map<string, EndedNote>()
  let claims: Map<string, Array<string>> | null = null
  const where = async (name: string, fresh: boolean): Promise<Presence | null> => {
    if (await ownedBy(calls, path.join(spool, name), uid)) return "queued"
    if (await ownedBy(calls, path.join(spool, heldName(name)), uid)) return "held"
    if (claims === null || fresh) claims = await runningClaims(calls, spool)
    for (const file of claims.get(name) ?? []) if (await ownedBy(calls, file, uid)) return "running"
    return null
  }
  for (const name of names) {
    const found = (await where(name, false)) ?? (await where(name, true))
    if (found !== null) {
      presence.set(name, found)
      continue
    }
    const note = await readEnded(calls, spool, uid, name, owner)
    if (note !== null) ended.set(name, note)
  }
  return { presence, ended }
}

/** A job waiting on dependencies, as judged: its name, its owner, what it asks. */
export interface Dependent {
  readonly name: string
  readonly uid: number
  readonly directives: Directives
}

/** The most names one review looks up; the others wait for the next (a hostile flood of names costs a review this much). */
export const LOOKUPS = 2000

/**
 * The verdict on each of JOBS whose names could all be looked up this time
 * (`from`: where in the list of names this review starts, so that every name
 * has its turn), a loop among one owner's jobs included: among JOBS and
 * AROUND (the other jobs waiting, not judged now, whose names are not looked up).
 */
export const judgeDependents = async (
  calls: Calls, spool: string, jobs: ReadonlyArray<Dependent>, owner: number, from = 0, around: ReadonlyArray<Dependent> = []
): Promise<Map<string, Verdict>> => {
  const verdicts = new Map<string, Verdict>()
  const byOwner = new Map<number, Array<Dependent>>()
  for (const job of jobs) byOwner.set(job.uid, [...(byOwner.get(job.uid) ?? []), job])
  const wanted = [...byOwner].flatMap(([uid, mine]) => [...new Set(mine.flatMap((j) => dependencyNames(j.directives)))].map((name) => ({ uid, name })))
  const start = wanted.length <= LOOKUPS ? 0 : from % wanted.length
  const turn = [...wanted.slice(start), ...wanted.slice(0, start)].slice(0, LOOKUPS)
  for (const [uid, mine] of byOwner) {
    const names = turn.filter((w) => w.uid === uid).map((w) => w.name)
    const facts = await dependencyFacts(calls, spool, names, uid, owner)
    const looked = new Set(names)
    const loops = loopsAmong(new Map([...around.filter((j) => j.uid === uid), ...mine].map((j) => [j.name, j.directives])))
    for (const job of mine) {
      const loop = loops.get(job.name)
      if (loop !== undefined) verdicts.set(job.name, { _tag: "Failed", reason: loop })
      else if (dependencyNames(job.directives).every((n) => looked.has(n))) verdicts.set(job.name, judgeDependencies(job.directives, facts))
    }
  }
  return verdicts
}
