/**
 * Archival: a finished job's script, output and record, moved under one entry name
 *
 *   DIR/STAMP_NAME  DIR/STAMP_NAME.out  DIR/STAMP_NAME.err  DIR/STAMP_NAME.json
 *
 * The entry is reserved by creating STAMP_NAME exclusively (link(2) or an
 * O_EXCL copy), so two same-named jobs ending in the same millisecond get
 * STAMP_NAME and STAMP-1_NAME: nothing is ever overwritten. The record appears
 * last and whole (written aside, then linked in), so a reader that sees the
 * .json sees a complete entry.
 */
import { Context, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { pipeline } from "node:stream/promises"
import { ArchiveFailed, describe, errnoCode } from "../errors.js"
import { type Calls, Syscalls } from "../syscalls.js"
import type { JobRecord } from "./Record.js"

export interface Finished {
  /** The claimed script. */
  readonly script: string
  /** Captured output files, when output was captured. */
  readonly stdout: string | null
  readonly stderr: string | null
  readonly record: JobRecord
}

export class Archive extends Context.Tag("pmjq/Archive")<
  Archive,
  {
    /** Moves a finished job into DIR; returns the entry's path (its script). */
    readonly store: (dir: string, job: Finished, stamp: string) => Effect.Effect<string, ArchiveFailed>
    /** No archive for this job: delete the script (and any captured output). */
    readonly discard: (job: Finished) => Effect.Effect<void, ArchiveFailed>
  }
>() {
  static readonly Live = Layer.effect(Archive, Effect.map(Syscalls, (calls) => makeLive(calls)))
}

// Longest file name most filesystems take (NAME_MAX), and room for ".json".
const NAME_MAX = 255
const LONGEST_SUFFIX = ".json".length

const fitName = (prefix: string, name: string): string => {
  const room = NAME_MAX - LONGEST_SUFFIX - Buffer.byteLength(prefix)
  if (Buffer.byteLength(name) <= room) return name
  // Cut on a character boundary; the record keeps the full name.
  let cut = ""
  for (const ch of name) {
    if (Buffer.byteLength(cut + ch) > room) break
    cut += ch
  }
  return cut
}

/** STAMP_NAME, then STAMP-1_NAME, STAMP-2_NAME... */
export const entryName = (stamp: string, name: string, clash: number): string => {
  const prefix = clash === 0 ? `${stamp}_` : `${stamp}-${clash}_`
  return prefix + fitName(prefix, name)
}

/**
 * Tries entry names in order until `reserve` creates one (true) rather than
 * finding it taken (false).
 */
export const reserveEntry = <E>(
  reserve: (entry: string) => Effect.Effect<boolean, E>,
  stamp: string,
  name: string
): Effect.Effect<string, E> => {
  const attempt = (clash: number): Effect.Effect<string, E> => {
    const entry = entryName(stamp, name, clash)
    return Effect.flatMap(reserve(entry), (created) => (created ? Effect.succeed(entry) : attempt(clash + 1)))
  }
  return attempt(0)
}

/** Hard link where we can; across filesystems, an exclusive copy. Never replaces `to`. */
const placeExclusive = async (calls: Calls, from: string, to: string): Promise<boolean> => {
  try {
    await calls.link(from, to)
    return true
  } catch (e) {
    const code = errnoCode(e)
    if (code === "EEXIST") return false
    if (code !== "EXDEV" && code !== "EPERM") throw e
  }
  try {
    await calls.copyNew(from, to)
    return true
  } catch (e) {
    if (errnoCode(e) === "EEXIST") return false
    throw e
  }
}

const removeIfPresent = (calls: Calls, file: string) =>
  calls.unlink(file).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? undefined : Promise.reject(e)))

const replay = (file: string, sink: NodeJS.WritableStream) =>
  pipeline(fs.createReadStream(file), sink, { end: false }).catch((e: unknown) =>
    errnoCode(e) === "ENOENT" ? undefined : Promise.reject(e)
  )

const makeLive = (calls: Calls) => {
  const fail = (where: string) => (e: unknown) => new ArchiveFailed({ path: where, reason: describe(e) })

  // An entry is four names, and a job called "x.out" ending in the same
  // millisecond as a job called "x" owns STAMP_x.out. So every name is placed
  // exclusively, and on any clash the names placed so far (ours) are undone and
  // the next counter is tried.
  const place = async (dir: string, entry: string, job: Finished, record: string): Promise<boolean> => {
    const base = path.join(dir, entry)
    const aside = path.join(dir, `.${entry}.json.tmp`)
    const placed: Array<string> = []
    const parts: Array<readonly [string, string]> = [[job.script, base]]
    if (job.stdout !== null) parts.push([job.stdout, base + ".out"])
    if (job.stderr !== null) parts.push([job.stderr, base + ".err"])
    try {
      for (const [from, to] of parts) {
        if (!(await placeExclusive(calls, from, to))) return false
        placed.push(to)
      }
      // The record appears last and whole: written aside, then linked in.
      await calls.writeNew(aside, record)
      const linked = await placeExclusive(calls, aside, base + ".json")
      await calls.unlink(aside)
      if (!linked) return false
      placed.length = 0
      return true
    } finally {
      for (const mine of placed) await removeIfPresent(calls, mine)
    }
  }

  const store = (dir: string, job: Finished, stamp: string) =>
    Effect.gen(function*() {
      const record = JSON.stringify(job.record, null, 2) + "\n"
      const entry = yield* reserveEntry(
        (candidate) => Effect.tryPromise({ try: () => place(dir, candidate, job, record), catch: fail(dir) }),
        stamp,
        job.record.name
      )
      const base = path.join(dir, entry)
      // Only now that the entry is whole does the job leave the running folder.
      yield* Effect.tryPromise({
        try: async () => {
          for (const file of [job.script, job.stdout, job.stderr]) if (file !== null) await removeIfPresent(calls, file)
        },
        catch: fail(base)
      })
      return base
    })

  // With only an error dir, a successful job's output was captured in case it
  // failed; it passes through to pmjq's own output instead of vanishing.
  const discard = (job: Finished) =>
    Effect.tryPromise({
      try: async () => {
        for (const [file, sink] of [[job.stdout, process.stdout], [job.stderr, process.stderr]] as const) {
          if (file !== null) await replay(file, sink)
        }
        for (const file of [job.script, job.stdout, job.stderr]) if (file !== null) await removeIfPresent(calls, file)
      },
      catch: fail(job.script)
    })

  return Archive.of({ store, discard })
}
