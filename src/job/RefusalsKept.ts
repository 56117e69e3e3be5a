/**
 * What pmjq keeps of the files it refuses is bounded per user: the newest
 * KEEP entries of each owner (by uid) in the dir refusals go to (the error
 * dir, else .pmjq/rejected). A refused file is never run, and each one used
 * to leave an entry for ever: one user's flood of junk filled pmjq's disk
 * (12,000 refusals, 96 MB). When a newer refusal of an owner makes KEEP + 1,
 * the oldest of theirs is removed (its record first, so no reader sees half
 * an entry; its script only when it is the very file refused) and counted
 * in the log.
 *
 * Only entries whose record says `rejected` are ever removed: what ran, and
 * everyone else's, is never touched. Entries from before this start are
 * found by one look at the dir, in the background.
 */
import { Context, Deferred, Effect, Either, Layer, Option } from "effect"
import * as path from "node:path"
import { decodeRecord } from "../record/decode.js"
import { errnoCode } from "../errors/errors.js"
import { entryFiles, entryOfRecord } from "../spool/layout.js"
import { Syscalls } from "../filesystem/syscalls.js"
import { destinationOf } from "./Archive.js"

/** Entries kept per owner. */
export const KEEP = 1000

export class RefusalsKept extends Context.Tag("pmjq/RefusalsKept")<RefusalsKept, {
  /** ENTRY (a path in the refusals' dir, without suffix) was just placed for a file of UID's. */
  readonly placed: (uid: number, entry: string) => Effect.Effect<void>
  /** Done once the entries from before this start have been found (and the bound applied to them). */
  readonly scanned: Effect.Effect<void>
}>() {
  static readonly layer = (settings: Dirs) => Layer.scoped(RefusalsKept, make(settings))
}

type Dirs = Parameters<typeof destinationOf>[1]

const make = (settings: Dirs) => Effect.gen(function*() {
  const calls = yield* Syscalls
  const dir = Option.getOrNull(destinationOf("rejected", settings))
  const self = process.getuid?.() ?? 0
  // Each owner's entries, oldest first (a Set: an entry found at the start
  // and placed again by an archival retried is one); how many were removed.
  const kept = new Map<number, Set<string>>()
  const removed = new Map<number, number>()
  // The start's scan and each trim, one at a time.
  const oneAtATime = yield* Effect.makeSemaphore(1)

  const unlink = (file: string) => calls.unlink(file).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? undefined : Promise.reject(e)))
  // Only what the entry is known to be: its record (still pmjq's, still this
  // refusal's), then its script when it is the very file refused (its
  // inode). A refusal never ran, so it has no output; a `.out` or `.err`
  // beside it is another entry's (a job called "x.out"), and never touched.
  const remove = (entry: string, uid: number) =>
    Effect.tryPromise(async () => {
      const files = entryFiles(entry)
      const text = await calls.readText(files.record, self).catch(() => null)
      const record = text === null ? null : Either.getOrNull(decodeRecord(text))
      if (record === null || record.outcome !== "rejected" || record.uid !== uid) return false
      const script = await calls.lstat(files.script).catch(() => null)
      await unlink(files.record)
      if (script !== null && record.inode !== null && script.ino === record.inode) await unlink(files.script)
      return true
    })

  const entriesOf = (uid: number) => {
    const entries = kept.get(uid) ?? new Set<string>()
    kept.set(uid, entries)
    return entries
  }

  const trim = (uid: number) =>
    oneAtATime.withPermits(1)(Effect.gen(function*() {
      const entries = entriesOf(uid)
      while (entries.size > KEEP) {
        const oldest = entries.values().next().value!
        entries.delete(oldest)
        const gone = yield* Effect.either(remove(oldest, uid))
        if (Either.isLeft(gone)) {
          yield* Effect.logWarning("an old refusal could not be removed").pipe(Effect.annotateLogs({ entry: oldest, reason: String(gone.left.error) }))
          continue
        }
        if (!gone.right) continue
        const count = (removed.get(uid) ?? 0) + 1
        removed.set(uid, count)
        // Said at the first and every thousandth: a line per refusal would be the flood again.
        if (count === 1 || count % KEEP === 0) {
          yield* Effect.logWarning(`refusals beyond the newest ${KEEP} of a user: the oldest removed`).pipe(
            Effect.annotateLogs({ uid, removed: count })
          )
        }
      }
    }))

  const placed = (uid: number, entry: string) =>
    Effect.suspend(() => {
      const entries = entriesOf(uid)
      entries.add(entry)
      return entries.size > KEEP ? trim(uid) : Effect.void
    })

  // The refusals already there: records pmjq wrote that say `rejected`, by
  // their owner, oldest first (an entry's name starts with its end time).
  const found = (from: string) =>
    Effect.gen(function*() {
      const names = (yield* Effect.promise(() => calls.readdir(from).catch(() => [] as Array<string>))).sort()
      const before = new Map<number, Array<string>>()
      for (const name of names) {
        const entry = entryOfRecord(name)
        if (entry === null) continue
        const text = yield* Effect.promise(() => calls.readText(path.join(from, name), self).catch(() => null))
        const record = text === null ? null : Either.getOrNull(decodeRecord(text))
        if (record?.outcome !== "rejected" || record.uid === null) continue
        const list = before.get(record.uid) ?? []
        before.set(record.uid, list)
        list.push(path.join(from, entry))
      }
      for (const [uid, entries] of before) {
        kept.set(uid, new Set([...entries, ...entriesOf(uid)]))
        yield* trim(uid)
      }
    })
  const scanned = yield* Deferred.make<void>()
  yield* Effect.forkScoped(Effect.ensuring(dir === null ? Effect.void : found(dir), Deferred.succeed(scanned, undefined)))
  return RefusalsKept.of({ placed, scanned: Deferred.await(scanned) })
})

