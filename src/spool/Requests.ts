/**
 * Requests users leave in the spool for the nodes: today, `pmjq cancel`'s.
 *
 * A request is a hidden file in the spool (layout.ts: CANCEL_PREFIX), made by
 * the user who asks: its owner is who asks, which no user can forge, and the
 * spool is the one place every user of a shared spool may write. Nothing in it
 * is believed: it must be a regular file with one link, at most 4 KiB, that
 * decodes (decode.ts); anything else is removed with a log line. The nodes
 * decide whether the asker may (features/Cancels.ts).
 */
import { Context, Effect, Either, HashSet, Layer, Ref } from "effect"
import * as path from "node:path"
import { decodeCancelRequest } from "../decode.js"
import { describe, errnoCode } from "../errors.js"
import { type Calls, Syscalls } from "../syscalls.js"
import { claimedName, isCancelRequest, isHidden, runningRoot } from "./layout.js"

export interface CancelRequest {
  readonly file: string
  /** Who asks: the request file's owner. */
  readonly uid: number
  /** The job to cancel, by the name it was submitted under. */
  readonly name: string
}

const MAX_REQUEST = 4096

export class Requests extends Context.Tag("pmjq/Requests")<Requests, {
  /** The well-formed cancel requests in the spool now (the others are removed). */
  readonly cancels: Effect.Effect<ReadonlyArray<CancelRequest>>
  /** A request dealt with: removed. */
  readonly done: (request: CancelRequest) => Effect.Effect<void>
  /** The nodes whose running folders hold a job NAME. */
  readonly heldBy: (name: string) => Effect.Effect<ReadonlyArray<string>>
}>() {}

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
    const remove = (file: string): Effect.Effect<void> => Effect.promise(() => calls.unlink(file).catch(() => undefined))
    // What could not be removed (a folder made under a request's name) is
    // said once, not at every look: a user could fill the log otherwise.
    const said = yield* Ref.make(HashSet.empty<string>())
    const sayOnce = (file: string, why: string) =>
      Effect.flatMap(Ref.modify(said, (s) => [!HashSet.has(s, file), HashSet.add(s, file)] as const), (first) =>
        first ? Effect.logWarning("cancel request not understood; removed").pipe(Effect.annotateLogs({ file, reason: why })) : Effect.void)

    const one = (file: string): Effect.Effect<ReadonlyArray<CancelRequest>> =>
      Effect.promise(() =>
        readRequest(calls, file).catch((e: unknown): Either.Either<CancelRequest, string> =>
          Either.left(errnoCode(e) === "ENOENT" ? "gone" : describe(e))
        )
      ).pipe(
        Effect.flatMap(Either.match({
          onRight: (request) => Effect.succeed([request]),
          onLeft: (why) => (why === "gone" ? Effect.succeed([]) : Effect.as(Effect.zipRight(sayOnce(file, why), remove(file)), []))
        }))
      )

    const cancels = Effect.promise(() => calls.readdir(spool).catch(() => [] as Array<string>)).pipe(
      Effect.flatMap((names) => Effect.forEach(names.filter(isCancelRequest), (name) => one(path.join(spool, name)))),
      Effect.map((found) => found.flat())
    )

    const heldBy = (name: string) =>
      Effect.promise(async () => {
        const root = runningRoot(spool)
        const folders = await calls.readdir(root).catch(() => [] as Array<string>)
        const holders: Array<string> = []
        for (const folder of folders) {
          const inside = await calls.readdir(path.join(root, folder)).catch(() => [] as Array<string>)
          if (inside.some((n) => !isHidden(n) && claimedName(n) === name)) holders.push(folder)
        }
        return holders
      })

    return { cancels, done: (request: CancelRequest) => remove(request.file), heldBy }
  })

export const RequestsLive = ({ spool }: { readonly spool: string }) => Layer.effect(Requests, make(spool))
