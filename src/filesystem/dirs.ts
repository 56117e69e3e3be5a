/**
 * Directories pmjq makes and trusts: the archive and error dirs, and its own
 * state under the spool. Each is created with an explicit mode (never the
 * umask's) and checked before use, the way sshd's StrictModes checks a home:
 * a folder others could change under pmjq is refused, naming the path.
 *
 * Every call goes through the given Calls (syscalls.ts); the startup checks,
 * made once, use the threaded ones.
 */
import * as path from "node:path"
import { Data } from "effect"
import { describe, errnoCode } from "../errors/errors.js"
import { type Calls, type Stat, threadedCalls } from "./syscalls.js"

/** pmjq's own folders and the archive: readable by all (users find their entries), written by pmjq only. */
const DIR_MODE = 0o755

const S_ISVTX = 0o1000

const myUid = () => process.getuid?.() ?? 0

/** A directory pmjq would use but must not trust: why, in a sentence that names it. */
export class UntrustedDirectory extends Data.TaggedError("UntrustedDirectory")<{
  readonly dir: string
  readonly why: string
}> {
  override get message() {
    return `${this.dir} ${this.why}`
  }
}

/**
 * Why pmjq must not use DIR as its own (a folder of .pmjq, or an archive dir):
 * null when it is a real directory (not a symlink), owned by pmjq's uid (or
 * root), writable by nobody else.
 */
export const ownDirProblem = (stat: Stat, uid = myUid()): string | null => {
  if (stat.isSymbolicLink()) return "is a symlink"
  if (!stat.isDirectory()) return "is not a directory"
  if (stat.uid !== uid && stat.uid !== 0) return `is owned by uid ${stat.uid}, not by pmjq (uid ${uid})`
  if ((stat.mode & 0o022) !== 0) return "is writable by group or others"
  return null
}

/**
 * Why a directory above an archive dir lets others swap what is below it
 * (StrictModes): null when owned by root or pmjq and not writable by group or
 * others, or writable but sticky (like /tmp: others cannot rename our entries).
 */
export const parentProblem = (stat: Stat, uid = myUid()): string | null => {
  if (stat.uid !== uid && stat.uid !== 0) return `is owned by uid ${stat.uid}, neither root nor pmjq (uid ${uid})`
  if ((stat.mode & 0o022) !== 0 && (stat.mode & S_ISVTX) === 0) return "is writable by group or others without the sticky bit"
  return null
}

/** Checks DIR as ownDirProblem does; throws UntrustedDirectory. */
export const verifyOwnDir = async (calls: Calls, dir: string): Promise<void> => {
  const problem = ownDirProblem(await calls.lstat(dir))
  if (problem !== null) throw new UntrustedDirectory({ dir, why: problem })
}

/** Makes DIR with exactly MODE; false when it existed already. */
const makeDir = async (calls: Calls, dir: string, mode: number): Promise<boolean> => {
  try {
    await calls.mkdir(dir, mode)
  } catch (e) {
    if (errnoCode(e) === "EEXIST") return false
    throw e
  }
  // mkdir's mode passed through the umask. Set through a descriptor of the
  // folder itself, never through a name something else may have taken.
  await calls.chmodDir(dir, mode)
  return true
}

/**
 * mkdir -p with explicit modes, retrying each component once: mkdir("/proc/x")
 * says ENOENT while /proc exists, and Node's recursive mkdir loops on that
 * forever. A daemon must fail at startup, not hang. An existing DIR must be a
 * directory.
 */
export const mkdirs = async (calls: Calls, dir: string, mode = DIR_MODE): Promise<void> => {
  try {
    if (await makeDir(calls, dir, mode)) return
    if (!(await calls.stat(dir)).isDirectory()) throw Object.assign(new Error(`${dir} exists and is not a directory`), { code: "EEXIST" })
  } catch (e) {
    const parent = path.dirname(dir)
    if (errnoCode(e) !== "ENOENT" || parent === dir) throw e
    await mkdirs(calls, parent, mode)
    await makeDir(calls, dir, mode)
  }
}

/**
 * Makes ROOT/PARTS... one level at a time, never ROOT itself (state kept below
 * a spool must not bring back a spool that was removed), each with MODE, and
 * checks each level is pmjq's own: a folder planted by a user (or a symlink)
 * is refused, never used.
 */
export const ownDirsBelow = async (calls: Calls, root: string, parts: ReadonlyArray<string>, mode = DIR_MODE): Promise<void> => {
  let dir = root
  for (const part of parts) {
    dir = path.join(dir, part)
    await makeDir(calls, dir, mode)
    await verifyOwnDir(calls, dir)
  }
}

/**
 * Walks DIR as the kernel resolves it, from "/": every directory met on the
 * way (the given path's and any symlink's target's) passes parentProblem, and
 * every symlink on the way is root's or pmjq's (one that a user owns could be
 * pointed elsewhere at any time). Returns the real path, or null when a
 * component does not exist yet (everything before it was checked). Throws
 * UntrustedDirectory.
 */
const walk = async (calls: Calls, dir: string): Promise<string | null> => {
  const uid = myUid()
  const pending = path.resolve(dir).split("/").filter((part) => part !== "")
  let here = "/"
  for (let hops = 0; pending.length > 0;) {
    const problem = parentProblem(await calls.stat(here), uid)
    if (problem !== null) throw new UntrustedDirectory({ dir: here, why: `(on the way to ${dir}) ${problem}` })
    const next = path.join(here, pending.shift()!)
    const stat = await calls.lstat(next).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? null : Promise.reject(e)))
    if (stat === null) return null
    if (!stat.isSymbolicLink()) {
      here = next
      continue
    }
    if (stat.uid !== uid && stat.uid !== 0) throw new UntrustedDirectory({ dir: next, why: `(on the way to ${dir}) is a symlink owned by uid ${stat.uid}, neither root nor pmjq` })
    if (++hops > 40) throw new UntrustedDirectory({ dir: next, why: "has too many levels of symlinks" })
    const target = await calls.readlink(next)
    pending.unshift(...target.split("/").filter((part) => part !== ""))
    if (path.isAbsolute(target)) here = "/"
  }
  return here
}

/**
 * StrictModes for an archive or error dir, made if missing (mode 0755): every
 * directory on the way to it, as given and through any symlink, is owned by
 * root or pmjq and not open to others without the sticky bit; every symlink on
 * the way is root's or pmjq's; the dir itself is pmjq's own. Checked before
 * anything is made, and again after. Throws UntrustedDirectory.
 */
export const ensureArchiveDir = async (calls: Calls, dir: string): Promise<void> => {
  if ((await walk(calls, dir)) === null) await mkdirs(calls, dir)
  const real = await walk(calls, dir)
  if (real === null) throw Object.assign(new Error(`${dir} vanished as it was made`), { code: "ENOENT" })
  await verifyOwnDir(calls, real)
}

/**
 * An archive dir checked as ensureArchiveDir checks it, but never made: its
 * real path, or null when it does not exist. Throws UntrustedDirectory.
 */
export const trustedArchiveDir = async (calls: Calls, dir: string): Promise<string | null> => {
  const real = await walk(calls, dir)
  if (real !== null) await verifyOwnDir(calls, real)
  return real
}

/**
 * StrictModes for the folder of a file pmjq replaces now and then
 * (--metrics-file): the way to it as for an archive dir, and the folder itself
 * pmjq's own, not open to others even with the sticky bit (in /tmp a user
 * could take the name first). Throws UntrustedDirectory, or ENOENT.
 */
export const verifyFileFolder = async (calls: Calls, dir: string): Promise<void> => {
  const real = await walk(calls, dir)
  if (real === null) throw Object.assign(new Error(`ENOENT: no such directory, ${dir}`), { code: "ENOENT" })
  await verifyOwnDir(calls, real)
}

/**
 * A spool pmjq runs as root on: owned by root or pmjq (its owner could rename
 * pmjq's .pmjq away and plant another), open to others only with the sticky
 * bit, reached only through directories and symlinks others cannot change.
 * Null when it is; else why.
 */
export const spoolProblem = async (spool: string, calls: Calls = threadedCalls): Promise<string | null> => {
  try {
    const real = await walk(calls, spool)
    if (real === null) return null // SpoolMissing is said elsewhere
    const stat = await calls.stat(real)
    const uid = myUid()
    if (stat.uid !== uid && stat.uid !== 0) return `${spool} is owned by uid ${stat.uid}, neither root nor pmjq: its owner could replace pmjq's own state`
    if ((stat.mode & 0o022) !== 0 && (stat.mode & S_ISVTX) === 0) return `${spool} is writable by group or others without the sticky bit, and pmjq runs as root: chmod +t it`
    return null
  } catch (e) {
    // What cannot be checked is not trusted.
    return e instanceof UntrustedDirectory ? e.message : `${spool} cannot be checked: ${describe(e)}`
  }
}

/** The names in DIR; none when DIR does not exist (state made on first use). */
export const listOrEmpty = (calls: Calls, dir: string): Promise<Array<string>> =>
  calls.readdir(dir).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? [] : Promise.reject(e)))
