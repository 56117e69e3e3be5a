/**
 * Where a job is, by name: queued in the spool, or claimed in a node's running
 * folder (one the node took over from a dead node included). What `pmjq
 * cancel` and `pmjq log` ask before they act, read with plain synchronous
 * calls (a command looks at a few names, not a daemon's whole spool).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { claimedName, isAdopted, isHidden, isJob, runningRoot } from "./layout.js"
import type { Submitted } from "./view.js"

/** Where job NAME is now, whose it is, and which file it is (its inode: what its record is known by). */
export type Place =
  | { readonly at: "queued"; readonly file: string; readonly uid: number; readonly inode: number }
  | { readonly at: "running"; readonly file: string; readonly uid: number; readonly inode: number; readonly node: string }
  | { readonly at: "nowhere" }

/** What FILE is (not following a symlink), or null when there is nothing there to look at. */
export const lstatOrNull = (file: string) => {
  try {
    return fs.lstatSync(file)
  } catch {
    return null
  }
}

const namesIn = (dir: string) => {
  try {
    return fs.readdirSync(dir)
  } catch {
    return []
  }
}

// Folders taken over from dead nodes nest (a taker that died was taken over
// in turn); a few levels are all a spool ever sees.
const ADOPTED_DEPTH = 4

/**
 * A node's running folder and the dead nodes' folders it took over, whose jobs
 * may still run (adopted from a pmjq that left). Only real folders: readdir
 * would follow a symlink, and what it points to is nobody's claim.
 */
const claimFolders = (folder: string, depth = 0): Array<string> => {
  const stat = lstatOrNull(folder)
  if (stat === null || !stat.isDirectory()) return []
  if (depth >= ADOPTED_DEPTH) return [folder]
  return [folder, ...namesIn(folder).filter(isAdopted).flatMap((name) => claimFolders(path.join(folder, name), depth + 1))]
}

/**
 * The jobs in the spool, queued or claimed by a node, with where each is:
 * those whose name WANTED takes (looked at only then: one lstat each); with
 * EXACTLY, only that name, and the spool is not listed (it may hold 100,000
 * files, and a command looks ten times a second while it waits).
 */
export const jobsIn = (spool: string, wanted: (name: string) => boolean = () => true, exactly?: string): Array<{ readonly name: string; readonly place: Place }> => {
  const found: Array<{ name: string; place: Place }> = []
  for (const name of exactly === undefined ? namesIn(spool).filter(wanted) : [exactly]) {
    const file = path.join(spool, name)
    const stat = lstatOrNull(file)
    if (stat !== null && isJob(name, stat)) found.push({ name, place: { at: "queued", file, uid: stat.uid, inode: stat.ino } })
  }
  const root = runningRoot(spool)
  for (const node of namesIn(root)) {
    for (const folder of claimFolders(path.join(root, node))) {
      for (const claimed of namesIn(folder).filter((n) => !isHidden(n) && wanted(claimedName(n)))) {
        const file = path.join(folder, claimed)
        const stat = lstatOrNull(file)
        if (stat !== null && stat.isFile()) found.push({ name: claimedName(claimed), place: { at: "running", file, uid: stat.uid, inode: stat.ino, node } })
      }
    }
  }
  return found
}

/** Where a job NAME is: the caller's own first (several jobs may share a name: copies, nodes, users). */
export const placeOf = (spool: string, name: string, me: number): Place => {
  const named = jobsIn(spool, (n) => n === name, name)
  const mine = named.find((j) => j.place.at !== "nowhere" && (me === 0 || j.place.uid === me))
  return (mine ?? named[0])?.place ?? { at: "nowhere" }
}

/** The job JOB as the spool has it now: the file queued, or its claim, or gone. */
export const whereIs = (spool: string, job: Submitted): Place =>
  jobsIn(spool, (n) => n === job.name, job.name).find((j) => j.place.at !== "nowhere" && j.place.inode === job.inode)?.place ?? { at: "nowhere" }
