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
import { Context, Effect, Either, Layer } from "effect"
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
  /** Whether a job NAME is claimed in any node's running folder. */
  readonly heldAnywhere: (name: string) => Effect.Effect<boolean>
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

    const one = (file: string): Effect.Effect<ReadonlyArray<CancelRequest>> =>
      Effect.promise(() =>
        readRequest(calls, file).catch((e: unknown): Either.Either<CancelRequest, string> =>
          Either.left(errnoCode(e) === "ENOENT" ? "gone" : describe(e))
        )
      ).pipe(
        Effect.flatMap(Either.match({
          onRight: (request) => Effect.succeed([request]),
          onLeft: (why) =>
            why === "gone" ? Effect.succeed([]) : Effect.logWarning("cancel request not understood; removed").pipe(
              Effect.annotateLogs({ file, reason: why }),
              Effect.zipRight(remove(file)),
              Effect.as([])
            )
        }))
      )

    const cancels = Effect.promise(() => calls.readdir(spool).catch(() => [] as Array<string>)).pipe(
      Effect.flatMap((names) => Effect.forEach(names.filter(isCancelRequest), (name) => one(path.join(spool, name)))),
      Effect.map((found) => found.flat())
    )

    const heldAnywhere = (name: string) =>
      Effect.promise(async () => {
        const root = runningRoot(spool)
        const folders = await calls.readdir(root).catch(() => [] as Array<string>)
        for (const folder of folders) {
          const inside = await calls.readdir(path.join(root, folder)).catch(() => [] as Array<string>)
          if (inside.some((n) => !isHidden(n) && claimedName(n) === name)) return true
        }
        return false
      })

    return { cancels, done: (request: CancelRequest) => remove(request.file), heldAnywhere }
  })

export const RequestsLive = ({ spool }: { readonly spool: string }) => Layer.effect(Requests, make(spool))
