/** Directories pmjq makes: the archive and error dirs, its state under the spool. */
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { errnoCode } from "./errors.js"

// mkdir -p that retries each component once: mkdir("/proc/x") says ENOENT
// while /proc exists, and Node's recursive mkdir loops on that forever. A
// daemon must fail at startup, not hang. With `parents` false it creates DIR
// only, and an existing DIR must be a directory.
export const mkdirs = async (dir: string, parents = true): Promise<void> => {
  try {
    await fsp.mkdir(dir)
  } catch (e) {
    const code = errnoCode(e)
    if (code === "EEXIST") {
      if ((await fsp.stat(dir)).isDirectory()) return
      throw e
    }
    const parent = path.dirname(dir)
    if (code !== "ENOENT" || parent === dir || !parents) throw e
    await mkdirs(parent)
    await mkdirs(dir, false)
  }
}

/**
 * Makes ROOT/PARTS... one level at a time, never ROOT itself: state kept below
 * a spool must not bring back a spool that was removed.
 */
export const mkdirsBelow = async (root: string, parts: ReadonlyArray<string>): Promise<void> => {
  let dir = root
  for (const part of parts) {
    dir = path.join(dir, part)
    await mkdirs(dir, false)
  }
}

/** The names in DIR; none when DIR does not exist (state made on first use). */
export const listOrEmpty = (dir: string): Promise<Array<string>> =>
  fsp.readdir(dir).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? [] : Promise.reject(e)))
