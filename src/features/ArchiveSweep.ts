/**
 * Every file pmjq places in an archive dir is made under a hidden name, then
 * linked in (job/Archive.ts); a crash between the two leaves the hidden one.
 * Once at startup, in the background (an archive dir may hold 100,000 entries,
 * and dispatch need not wait for its listing), those left an hour are removed
 * from this node's archive, error and rejected dirs. And every hour, the
 * spool's ended notes older than a week (spool/ended.ts): one a name, and a
 * spool sees a new name each submit.
 */
import { Effect, Layer, Option, Schedule } from "effect"
import { Archive } from "../job/Archive.js"
import { Spool } from "../spool/Spool.js"
import { DaemonConfig } from "./Config.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const archive = yield* Archive
  const dirs = new Set([...Option.toArray(settings.archiveDir), ...Option.toArray(settings.errorDir), settings.rejectedDir])
  const sweep = (dir: string) =>
    archive.sweep(dir).pipe(
      Effect.tap((removed) =>
        removed === 0 ? Effect.void : Effect.logInfo("removed what a crash left half placed").pipe(Effect.annotateLogs({ dir, removed }))),
      Effect.catchTag("ArchiveFailed", (e) => Effect.logWarning("archive dir not swept").pipe(Effect.annotateLogs({ dir, reason: e.reason })))
    )
  // Each on its own: one on a hung mount does not hold up the others.
  yield* Effect.forkScoped(Effect.forEach(dirs, sweep, { concurrency: "unbounded", discard: true }))
  const spool = yield* Spool
  const prune = spool.pruneEnded.pipe(
    Effect.tap((removed) => (removed === 0 ? Effect.void : Effect.logInfo("ended notes a week old removed").pipe(Effect.annotateLogs({ removed })))),
    Effect.catchAll((e) => Effect.logWarning("ended notes not pruned").pipe(Effect.annotateLogs({ reason: e.message })))
  )
  yield* Effect.forkScoped(Effect.repeat(prune, Schedule.spaced("1 hour")))
})

export const ArchiveSweep = Layer.scopedDiscard(make)
