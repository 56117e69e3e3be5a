/**
 * Requests users leave in the spool for the nodes: today, `pmjq cancel`'s.
 *
 * A request is a hidden file in the spool (layout.ts: CANCEL_PREFIX), made by
 * the user who asks: its owner is who asks, which no user can forge, and the
 * spool is the one place every user of a shared spool may write. Nothing in it
 * is believed: it must be a regular file with one link, at most 4 KiB, that
 * decodes (decode.ts); anything else is removed, counted in one log line a
 * look. A folder under such a name can be neither read nor removed (it is its
 * maker's to empty): it is skipped by its directory entry's type, without a
 * call, and said when there are more of them than before. What a look costs
 * and keeps thus follows the requests, not the junk: memory for none of it,
 * and a log line a look at most. The nodes decide whether the asker may
 * (features/Cancels.ts).
 */
import { Context, Effect, Either, Layer, Ref } from "effect"
import * as path from "node:path"
import { decodeCancelRequest } from "../record/decode.js"
import { describe, errnoCode } from "../errors/errors.js"
import { type Calls, type Entry, Syscalls } from "../filesystem/syscalls.js"
import { makeUnchanged } from "./unchanged.js"
import { besideName, claimedName, isCancelRequest, isHidden, runningRoot } from "./layout.js"

export interface CancelRequest {
  readonly file: string
  /** Who asks: the request file's owner. */
  readonly uid: number
  /** The job to cancel, by the name it was submitted under. */
  readonly name: string
}

/** A claim in a node's running folder. */
export interface Holder {
  readonly node: string
  readonly claimed: string
  /** Its record is beside it: its job ended (its archival may be waiting). */
  readonly ended: boolean
}

const MAX_REQUEST = 4096

export class Requests extends Context.Tag("pmjq/Requests")<Requests, {
  /** The well-formed cancel requests in the spool now (the others are removed). */
  readonly cancels: Effect.Effect<ReadonlyArray<CancelRequest>>
  /** A request dealt with: removed. */
  readonly done: (request: CancelRequest) => Effect.Effect<void>
  /** The claims of a job NAME in the nodes' running folders, as listed now: which node, under which name (its copies are NAME.~N~). */
  readonly holders: Effect.Effect<(name: string) => ReadonlyArray<Holder>>
}>() {
  static readonly layer = ({ spool }: { readonly spool: string }) => Layer.effect(Requests, make(spool))
}

const readRequest = async (calls: Calls, file: string): Promise<Either.Either<CancelRequest, string>> => {
  const stat = await calls.lstat(file)
  if (!stat.isFile()) return Either.left("not a regular file")
  // A hard link to someone else's file would speak in its owner's name.
  if (stat.nlink !== 1) return Either.left(`${stat.nlink} links`)
  const text = await calls.readText(file, stat.uid, MAX_REQUEST)
  if (text === null) return Either.left("gone")
  return Either.map(decodeCancelRequest(text), ({ name }) => ({ file, uid: stat.uid, name }))
}

const make = (spool: string) =>
  Effect.gen(function*() {
    const calls = yield* Syscalls
    // Whether FILE could be removed (what could not is looked at again next look).
    const remove = (file: string): Effect.Effect<boolean> => Effect.promise(() => calls.unlink(file).then(() => true, () => false))
    // How many folders named like requests the last look saw: said again
    // only when there are more (a user could otherwise fill the log).
    const folders = yield* Ref.make(0)
    const sayFolders = (seen: number) =>
      Effect.flatMap(Ref.getAndSet(folders, seen), (before) =>
        seen > before
          ? Effect.logWarning("folders named like cancel requests: not requests, left alone").pipe(Effect.annotateLogs({ count: seen }))
          : Effect.void)

    const read = (file: string): Effect.Effect<Either.Either<CancelRequest, string>> =>
      Effect.promise(() =>
        readRequest(calls, file).catch((e: unknown): Either.Either<CancelRequest, string> =>
          Either.left(errnoCode(e) === "ENOENT" ? "gone" : describe(e))
        )
      )

    // The names like requests at the last listing: the spool is listed again
    // only when it may have changed (unchanged.ts). The requests still there
    // (a job another node holds) are read again each look.
    const clock = yield* Effect.clock
    const looks = makeUnchanged(calls, spool, () => clock.unsafeCurrentTimeMillis())
    let named: ReadonlyArray<Entry> = []
    const cancels = Effect.gen(function*() {
      const listed = yield* Effect.promise(() => looks.listing(() => calls.entries(spool)).catch(() => []))
      if (listed !== null) {
        named = listed.filter((e) => isCancelRequest(e.name))
        yield* sayFolders(named.filter((e) => e.isDirectory).length)
      }
      const found: Array<CancelRequest> = []
      let removed = 0
      let example: { readonly file: string; readonly why: string } | null = null
      for (const entry of named) {
        if (entry.isDirectory) continue
        const file = path.join(spool, entry.name)
        const request = yield* read(file)
        if (Either.isRight(request)) found.push(request.right)
        else if (request.left !== "gone" && (yield* remove(file))) {
          removed++
          example ??= { file, why: request.left }
        }
      }
      if (example !== null) {
        yield* Effect.logWarning("cancel requests not understood; removed").pipe(
          Effect.annotateLogs({ count: removed, first: example.file, reason: example.why })
        )
      }
      return found
    })

    const holders = Effect.promise(async () => {
      const root = runningRoot(spool)
      const held = new Map<string, Array<Holder>>()
      for (const node of await calls.readdir(root).catch(() => [] as Array<string>)) {
        const names = await calls.readdir(path.join(root, node)).catch(() => [] as Array<string>)
        const beside = new Set(names.filter(isHidden))
        for (const claimed of names) {
          if (isHidden(claimed)) continue
          const job = claimedName(claimed)
          held.set(job, [...(held.get(job) ?? []), { node, claimed, ended: beside.has(besideName(claimed, ".json")) }])
        }
      }
      return (name: string): ReadonlyArray<Holder> => held.get(name) ?? []
    })

    return { cancels, done: (request: CancelRequest) => Effect.asVoid(remove(request.file)), holders }
  })

