/**
 * The Spool service: everything pmjq does to the job-spool directory.
 *
 *   job-spool/NAME                     queued (regular, executable, not hidden)
 *   job-spool/.pmjq/running/NODE/NAME  claimed by NODE; the claim is one rename(2)
 *
 * The rename is atomic on a local filesystem and on NFS/sshfs alike, so when
 * several nodes race for one file exactly one wins and the others see ENOENT:
 * a lost race, not an error.
 */
import { Context, Effect, Layer, Option, Stream } from "effect"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { CannotCreateDirectory, describe, errnoCode, SpoolIOError, SpoolMissing } from "../errors.js"
import { readdir, Syscalls } from "../syscalls.js"
import type { Candidate } from "./Pending.js"

export interface Claim {
  /** The job's name as submitted. */
  readonly name: string
  /** Where the claimed file sits now, in this node's running folder. */
  readonly path: string
  readonly claimedAt: number
}

export interface SpoolSettings {
  readonly spool: string
  readonly node: string
}

export class Spool extends Context.Tag("pmjq/Spool")<
  Spool,
  {
    readonly path: string
    /** Names in the spool that could be jobs (dotfiles are never jobs). */
    readonly list: Effect.Effect<ReadonlyArray<string>, SpoolIOError>
    /** A candidate when NAME is a regular file with an execute bit, else none. */
    readonly inspect: (name: string) => Effect.Effect<Option.Option<Candidate>, SpoolIOError>
    /** Moves NAME into this node's running folder; none when another node (or a user) took it first. */
    readonly claim: (name: string) => Effect.Effect<Option.Option<Claim>, SpoolIOError>
    /** Puts a claimed job back under its name; false (job kept claimed) when a new job took that name. */
    readonly release: (claim: Claim) => Effect.Effect<boolean, SpoolIOError>
    /** The claimed file has left the running folder (archived or discarded): its name is free again. */
    readonly vacated: (claim: Claim) => Effect.Effect<void>
    /** Names the kernel says changed: hints to look at, never the truth (and silent over NFS). */
    readonly notifications: Stream.Stream<string, SpoolIOError>
  }
>() {}

export const STATE_DIR = ".pmjq"
export const runningDir = (spool: string, node: string) => path.join(spool, STATE_DIR, "running", node)

const isHidden = (name: string) => name.startsWith(".")

/** Numbered like GNU backups, so a second same-named claim never replaces the first. */
const claimTarget = (dir: string, name: string, n: number) => path.join(dir, n === 0 ? name : `${name}.~${n}~`)

const io = <A>(operation: string, file: string, run: () => Promise<A>) =>
  Effect.tryPromise({
    try: run,
    catch: (e) => new SpoolIOError({ operation, path: file, reason: describe(e) })
  })

// mkdir -p that retries each component once: mkdir("/proc/x") says ENOENT
// while /proc exists, and Node's recursive mkdir loops on that forever. A
// daemon must fail at startup, not hang. With `parents` false it creates DIR
// only, and an existing DIR must be a directory.
const mkdirs = async (dir: string, parents = true): Promise<void> => {
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

export const ensureDirectory = (dir: string) =>
  Effect.tryPromise({
    try: () => mkdirs(path.resolve(dir)),
    catch: (e) => new CannotCreateDirectory({ path: dir, reason: describe(e) })
  })

/** Startup check, before anything is created anywhere. */
export const requireSpool = (spool: string) =>
  Effect.promise(() => fsp.stat(spool).then((s) => s.isDirectory(), () => false)).pipe(
    Effect.filterOrFail((isDirectory) => isDirectory, () => new SpoolMissing({ path: spool })),
    Effect.asVoid
  )

// Component by component below the spool, never creating the spool itself: a
// spool that vanished is SpoolMissing, not a fresh empty directory.
const ensureStateDirectory = (spool: string, node: string) =>
  Effect.tryPromise({
    try: async () => {
      let dir = spool
      for (const part of [STATE_DIR, "running", node]) {
        dir = path.join(dir, part)
        await mkdirs(dir, false)
      }
    },
    catch: (e) =>
      errnoCode(e) === "ENOENT"
        ? new SpoolMissing({ path: spool })
        : new CannotCreateDirectory({ path: runningDir(spool, node), reason: describe(e) })
  })

const make = Effect.fn("Spool.make")(function*({ spool, node }: SpoolSettings) {
  const calls = yield* Syscalls
  const running = runningDir(spool, node)
  yield* ensureStateDirectory(spool, node)

  const list = io("list", spool, () => readdir(spool)).pipe(
    Effect.map((names) => names.filter((n) => !isHidden(n)))
  )

  const inspect = (name: string) =>
    io("inspect", path.join(spool, name), () =>
      calls.lstat(path.join(spool, name)).then(
        (s): Option.Option<Candidate> =>
          s.isFile() && (s.mode & 0o111) !== 0 ? Option.some({ name, readyAt: s.ctimeMs }) : Option.none(),
        (e: unknown) => (errnoCode(e) === "ENOENT" ? Option.none<Candidate>() : Promise.reject(e))
      ))

  // Only this process writes into its running folder (the node id is unique),
  // so what it holds there is known without asking the filesystem; the folder
  // is read once, for anything an earlier process of this id left.
  const held = new Set(yield* io("list", running, () => fsp.readdir(running)))
  const freeTarget = (name: string) => {
    for (let n = 0;; n++) {
      const target = claimTarget(running, name, n)
      if (!held.has(path.basename(target))) return target
    }
  }

  // Each claim's rename makes the kernel report its name once more; that event
  // says nothing new, so it is dropped here instead of costing an lstat and a
  // pass through the feed. An event lost to an inotify overflow leaves a mark
  // that swallows a later one; the periodic rescan covers that, as it covers
  // every lost event.
  const movedAway = new Map<string, number>()
  const forgetMove = (name: string) => {
    const n = movedAway.get(name) ?? 0
    if (n <= 1) movedAway.delete(name)
    else movedAway.set(name, n - 1)
    return n > 0
  }

  const claim = (name: string) =>
    io("claim", path.join(spool, name), async (): Promise<Option.Option<Claim>> => {
      const target = freeTarget(name)
      // Marked before the rename, so its notification cannot arrive first.
      movedAway.set(name, (movedAway.get(name) ?? 0) + 1)
      try {
        await calls.rename(path.join(spool, name), target)
      } catch (e) {
        forgetMove(name)
        if (errnoCode(e) === "ENOENT") return Option.none()
        throw e
      }
      held.add(path.basename(target))
      return Option.some({ name, path: target, claimedAt: Date.now() })
    })

  // link(2) fails with EEXIST instead of replacing, which rename(2) would do.
  const release = (claim: Claim) =>
    io("release", claim.path, async () => {
      try {
        await calls.link(claim.path, path.join(spool, claim.name))
      } catch (e) {
        if (errnoCode(e) === "EEXIST") return false
        throw e
      }
      await calls.unlink(claim.path)
      held.delete(path.basename(claim.path))
      return true
    })

  const vacated = (claim: Claim) => Effect.sync(() => void held.delete(path.basename(claim.path)))

  const notifications = Stream.async<string, SpoolIOError>((emit) => {
    const failed = (e: unknown) => new SpoolIOError({ operation: "watch", path: spool, reason: describe(e) })
    let watcher: fs.FSWatcher
    try {
      watcher = fs.watch(spool, { persistent: false }, (_event, filename) => {
        if (filename !== null && !isHidden(filename) && !forgetMove(filename)) void emit.single(filename)
      })
    } catch (e) {
      // The spool vanished or inotify is out of watches: polling still works.
      void emit.fail(failed(e))
      return Effect.void
    }
    watcher.on("error", (e) => void emit.fail(failed(e)))
    return Effect.sync(() => watcher.close())
  }, "unbounded")

  return Spool.of({ path: spool, list, inspect, claim, release, vacated, notifications })
})

export const SpoolLive = (settings: SpoolSettings) => Layer.effect(Spool, make(settings))
