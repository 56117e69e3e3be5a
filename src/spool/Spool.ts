/**
 * The Spool service: everything pmjq does to the job-spool directory.
 *
 *   job-spool/NAME                     queued (regular, executable, not hidden)
 *   job-spool/.pmjq/running/NODE/NAME  claimed by NODE; the claim is one rename(2)
 *   job-spool/.pmjq/attempts/NAME      how often a requeued NAME was started
 *
 * (every name, and what counts as a job, is layout.ts's).
 *
 * The rename is atomic on a local filesystem and on NFS/sshfs alike, so when
 * several nodes race for one file exactly one wins and the others see ENOENT:
 * a lost race, not an error.
 *
 * Every filesystem call goes through Syscalls, and time comes from the Clock:
 * the same code runs on an in-memory filesystem in tests (test/memoryfs.ts).
 */
import { Context, Duration, Effect, Layer, Option } from "effect"
import * as path from "node:path"
import { CannotCreateDirectory, describe, errnoCode, NotPermitted, SpoolIOError, SpoolMissing } from "../errors/errors.js"
import { type AttemptNotes, decodeAttemptNotes } from "../record/decode.js"
import { ensureArchiveDir, listOrEmpty, ownDirsBelow, spoolProblem, UntrustedDirectory, verifyOwnDir } from "../filesystem/dirs.js"
import { factsOf, type FileFacts } from "../filesystem/files.js"
import { BESIDE, besideClaim, claimName, isHidden, isJob, notesAside, notesFile, runningDir, runningRoot, stateDir, stateParts } from "./layout.js"
import { makeTrustedReader } from "./quarantine.js"
import { type Calls, type Stat, Syscalls, threadedCalls } from "../filesystem/syscalls.js"
import { makeUnchanged } from "./unchanged.js"
import type { Candidate } from "./Pending.js"
import { HEAD_MAX, mayRaise, PLAIN, type Read, readDirectives } from "../directives/directives.js"
import type { Head } from "../filesystem/files.js"
import type { DependencyFacts, Verdict } from "../directives/dependencies.js"
import { type Dependent, dependencyFacts, judgeDependents } from "./dependencyFacts.js"
import { ENDED_KEPT, pruneEnded } from "./ended.js"
import { type Pause, readPause } from "./pauses.js"

export interface Claim {
  /** The job's name as submitted. */
  readonly name: string
  /** Where the claimed file sits now, in this node's running folder. */
  readonly path: string
  readonly claimedAt: number
  /** 1 for a first run; more when recovery put it back after its node died. */
  readonly attempt: number
  /** Recovery's note about this file in .pmjq/attempts/NAME, removed once it is archived. */
  readonly noteKey: string | null
  /**
   * The claimed file's owner, as the claim's own lstat saw it: who may cancel
   * it. Only pmjq could change it from then on; kept, since the job may
   * delete its own file (-1: not known).
   */
  readonly owner: number
  /** Its directives, read through the claim's own descriptor (directives/directives.ts): what decides whether it runs now. */
  readonly read: Read
  /** The dependency loop the queue found it in, if any (spool/feed.ts): it ends unrun. */
  readonly loop?: string
}

/** What Spool.inspectAll saw. */
export interface Inspected {
  readonly jobs: ReadonlyArray<Candidate>
  readonly others: ReadonlyArray<string>
  /** Of the others, the regular files without an execute bit: their owners are told how to run them (once, spool/feed.ts). */
  readonly notExecutable: ReadonlyArray<string>
}

const unreadHead = (stat: Stat): Head => ({ stat, text: null, cut: false })

// Read only for what may be a job: a regular file, not hidden, with an execute bit.
const worthReading = (name: string) => (s: Stat) => s.isFile() && isJob(name, s)

/**
 * The candidate NAME is, as its descriptor saw it (Calls.head): its owner, when
 * it became ready, and what its directives ask (directives/directives.ts). Hints for
 * ordering and waiting only: what runs is decided on the claimed file.
 */
export const candidateOf = (name: string, s: Stat, head: Head): Candidate => {
  const read = readDirectives(head.text, head.cut, s.uid, mayRaise)
  // A file without directives (most) carries nothing more: 100,000 queued cost no more memory.
  return read === PLAIN
    ? { name, readyAt: s.ctimeMs, uid: s.uid }
    : { name, readyAt: s.ctimeMs, uid: s.uid, priority: read.directives.priority, read }
}

/**
 * NAMES in SPOOL, each looked at through a descriptor (Calls.head: what it
 * is, and a job's first bytes for its directives): the jobs among them, and
 * the names seen not to be jobs (one that cannot be looked at is in neither).
 * One promise for all the calls, not an Effect each: with 100,000 queued at
 * startup the per-name effects cost more than the calls. In chunks, so that
 * on a network filesystem 64 calls overlap.
 */
export const inspectNames = async (
  calls: Calls, spool: string, names: ReadonlyArray<string>,
  /** Told what each name's lstat (and read, HEAD) saw (`pmjq status` says why a file waits); the daemon passes none. */
  seen?: (name: string, stat: Stat, head: Head) => void,
  /** False: an lstat only, each job's head left unread (`unread`), for a backlog too large to read at once. */
  heads = true
): Promise<Inspected> => {
  const jobs: Array<Candidate> = []
  const others: Array<string> = []
  const notExecutable: Array<string> = []
  const other = (name: string, s: Stat) => {
    others.push(name)
    if (s.isFile() && !isHidden(name)) notExecutable.push(name)
  }
  for (let i = 0; i < names.length; i += 64) {
    await Promise.all(names.slice(i, i + 64).map((name) =>
      (heads ? calls.head(path.join(spool, name), HEAD_MAX, worthReading(name)) : calls.lstat(path.join(spool, name)).then(unreadHead)).then(
        (head) => {
          seen?.(name, head.stat, head)
          if (!isJob(name, head.stat)) return other(name, head.stat)
          jobs.push(heads ? candidateOf(name, head.stat, head) : { name, readyAt: head.stat.ctimeMs, uid: head.stat.uid, unread: true })
        },
        () => undefined
      )
    ))
  }
  return { jobs, others, notExecutable }
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
    /** The same, or none when the spool surely holds the same names as at the last listing made here (unchanged.ts). */
    readonly listIfChanged: Effect.Effect<Option.Option<ReadonlyArray<string>>, SpoolIOError>
    /** A candidate when NAME is a regular file with an execute bit, else none. */
    readonly inspect: (name: string) => Effect.Effect<Option.Option<Candidate>, SpoolIOError>
    /**
     * The candidates among NAMES, in one go (a rescan of a large spool), and
     * the names seen not to be jobs; a name that cannot be inspected now is
     * in neither, left for the next rescan.
     */
    readonly inspectAll: (names: ReadonlyArray<string>, heads?: boolean) => Effect.Effect<Inspected, SpoolIOError>
    /** Moves NAME into this node's running folder; none when another node (or a user) took it first. */
    readonly claim: (name: string) => Effect.Effect<Option.Option<Claim>, SpoolIOError>
    /**
     * The claim is on disk: its running folder synced (shared with every
     * claim made meanwhile: Calls.syncDir). Asked for before the job starts:
     * a power cut then never puts a job that ran back in the queue.
     */
    readonly commit: (claim: Claim) => Effect.Effect<void, SpoolIOError>
    /** Puts a claimed job back under its name; false (job kept claimed) when a new job took that name. */
    readonly release: (claim: Claim) => Effect.Effect<boolean, SpoolIOError>
    /** The claimed file has left the running folder (archived or discarded): its name is free again. */
    readonly vacated: (claim: Claim) => Effect.Effect<void>
    /**
     * Puts a file from a dead node's folder back in the spool under NAME, noting
     * that it has been started `attempts` times; false when a job already has that name.
     */
    readonly requeue: (file: string, name: string, attempts: number) => Effect.Effect<boolean, SpoolIOError>
    /** How many times the file at PATH was started before (0 if never), by recovery's notes. */
    readonly startedBefore: (file: string, name: string) => Effect.Effect<number, SpoolIOError>
    /** What the claimed file is (lstat: a symlink is not followed). */
    readonly facts: (claim: Claim) => Effect.Effect<FileFacts, SpoolIOError>
    /**
     * Checks that .pmjq and this node's folders are still pmjq's own (run every
     * recovery round); true when they are. While they are not, nothing is
     * claimed or recovered, and the problem is logged once.
     */
    readonly checkState: Effect.Effect<boolean>
    /** Waits while pmjq's state is not trusted. */
    readonly whenTrusted: Effect.Effect<void>
    /** Removes the ended notes older than ENDED_KEPT (spool/ended.ts); how many. */
    readonly pruneEnded: Effect.Effect<number, SpoolIOError>
    /** Of CANDIDATES, the names whose file changed since it was looked at (its ctime, as a rename or a write sets it), or is gone. */
    readonly changed: (candidates: ReadonlyArray<Candidate>) => Effect.Effect<ReadonlyArray<string>, SpoolIOError>
    /** The facts NAMES are judged on as the dependencies of a job owned by UID (spool/dependencyFacts.ts). */
    readonly dependencies: (names: ReadonlyArray<string>, uid: number) => Effect.Effect<DependencyFacts, SpoolIOError>
    /**
     * The verdicts on waiting JOBS whose dependencies this review looks up
     * (from the FROMth name on: each has its turn); AROUND, the others waiting,
     * count for loops only (spool/dependencyFacts.ts).
     */
    readonly judgeDependents: (
      jobs: ReadonlyArray<Dependent>, from: number, around: ReadonlyArray<Dependent>
    ) => Effect.Effect<ReadonlyMap<string, Verdict>, SpoolIOError>
    /** Whether `pmjq pause` paused the whole spool or this node, and who did (spool/pauses.ts); none when not paused. */
    readonly paused: Effect.Effect<Option.Option<Pause>>
    /**
     * Calls `changed` with each name the kernel says changed: hints to look at,
     * never the truth (and silent over NFS). Runs until the watch fails;
     * interrupt it to stop watching.
     */
    readonly watch: (changed: (name: string) => void) => Effect.Effect<never, SpoolIOError>
  }
>() {
  static readonly layer = (settings: SpoolSettings) => Layer.effect(Spool, make(settings))
}

/** A folder pmjq would use that others could change under it: refused, naming it (EX_NOPERM). */
export const refuseUntrusted = (e: UntrustedDirectory) =>
  new NotPermitted({ reason: `${e.message}: pmjq uses only folders that others cannot change (fix the owner or mode, or remove it)` })

/**
 * An archive or error dir: made if missing (mode 0755), then checked as sshd's
 * StrictModes would. At startup, with the threaded calls unless told others.
 */
export const ensureDirectory = (dir: string, calls: Calls = threadedCalls) =>
  Effect.tryPromise({
    try: () => ensureArchiveDir(calls, path.resolve(dir)),
    catch: (e) => (e instanceof UntrustedDirectory ? refuseUntrusted(e) : new CannotCreateDirectory({ path: dir, reason: describe(e) }))
  })

/** Startup check, before anything is created anywhere. */
export const requireSpool = (spool: string, calls: Calls = threadedCalls) =>
  Effect.promise(() => calls.stat(spool).then((s) => s.isDirectory(), () => false)).pipe(
    Effect.filterOrFail((isDirectory) => isDirectory, () => new SpoolMissing({ path: spool })),
    Effect.asVoid
  )

/**
 * As root, the spool itself must be one no user can take over: owned by root
 * or pmjq, sticky when others may write it, reached through directories only
 * root or pmjq can change (dirs.ts: spoolProblem). Otherwise any user could
 * rename pmjq's own .pmjq away and plant theirs, or swap each other's jobs.
 * (Not as root: a warning for an open spool, see cli/daemon.ts.)
 */
export const requireTrustedSpool = (spool: string, calls: Calls = threadedCalls) =>
  Effect.flatMap(Effect.promise(() => spoolProblem(spool, calls)), (problem) =>
    problem === null ? Effect.void : Effect.fail(new NotPermitted({ reason: problem })))

// Component by component below the spool, never creating the spool itself: a
// spool that vanished is SpoolMissing, not a fresh empty directory. The node's
// own folder is made by its first claim, after its first heartbeat: a running
// folder without a heartbeat then means a node that is gone.
// Every level is checked to be pmjq's own: a .pmjq a user made before pmjq
// started (or after the spool was made again) is refused, never used.
const ensureStateDirectory = (calls: Calls, spool: string, node: string) =>
  Effect.tryPromise({
    try: async () => {
      await ownDirsBelow(calls, spool, stateParts.running)
      const mine = await calls.lstat(runningDir(spool, node)).catch(() => null)
      if (mine !== null) await ownDirsBelow(calls, spool, stateParts.node(node))
    },
    catch: (e) =>
      e instanceof UntrustedDirectory
        ? refuseUntrusted(e)
        : errnoCode(e) === "ENOENT"
        ? new SpoolMissing({ path: spool })
        : new CannotCreateDirectory({ path: runningDir(spool, node), reason: describe(e) })
  })

const make = Effect.fn("Spool.make")(function*({ spool, node }: SpoolSettings) {
  const calls = yield* Syscalls
  const clock = yield* Effect.clock
  const now = () => clock.unsafeCurrentTimeMillis()
  // Operations that read pmjq's notes log what they had to set aside.
  const { io, readOwn, setAside } = makeTrustedReader(spool, calls, now)
  const running = runningDir(spool, node)
  yield* ensureStateDirectory(calls, spool, node)

  // Names are bytes; Node decodes one that is not UTF-8 with U+FFFD, and no
  // call could reach its file: it would lie in the spool, never run and never
  // said. Such a name is given an escaped one (Calls.escapeNames: bad\xffname
  // becomes bad%FFname), and runs under it. Those that cannot be (the
  // escaped name taken) are said in one line when there are new ones; only
  // the ones still there are remembered.
  let unnamed = new Set<string>()
  const named = (names: Array<string>) => {
    if (!names.some((n) => n.includes("\uFFFD") && !isHidden(n))) return Effect.succeed(names)
    return Effect.gen(function*() {
      const escaped = yield* io("escape names", spool, () => calls.escapeNames(spool))
      for (const { name } of escaped.filter((e) => e.failed === null)) {
        yield* Effect.logWarning("a name that is not UTF-8, renamed to one that is").pipe(Effect.annotateLogs({ job: name }))
      }
      const left = escaped.filter((e) => e.failed !== null)
      const fresh = left.filter((e) => !unnamed.has(e.name))
      if (fresh.length > 0) {
        yield* Effect.logWarning("names that are not UTF-8 could not be renamed; left").pipe(
          Effect.annotateLogs({ count: fresh.length, first: fresh[0]!.name, reason: fresh[0]!.failed })
        )
      }
      unnamed = new Set(left.map((e) => e.name))
      return yield* io("list", spool, () => calls.readdir(spool))
    })
  }
  const list = io("list", spool, () => calls.readdir(spool)).pipe(
    Effect.flatMap(named),
    Effect.map((names) => names.filter((n) => !isHidden(n)))
  )
  const rescans = makeUnchanged(calls, spool, now)
  const listIfChanged = io("list", spool, () => rescans.listing(() => calls.readdir(spool))).pipe(
    Effect.flatMap((names) => (names === null ? Effect.succeed(Option.none()) : Effect.map(named(names), Option.some))),
    Effect.map(Option.map((all) => all.filter((n) => !isHidden(n))))
  )

  const inspect = (name: string) =>
    io("inspect", path.join(spool, name), () =>
      calls.head(path.join(spool, name), HEAD_MAX, worthReading(name)).then(
        (head): Option.Option<Candidate> =>
          // Its owner comes free with the fstat: --max-jobs-per-user counts by it.
          isJob(name, head.stat) ? Option.some(candidateOf(name, head.stat, head)) : Option.none(),
        (e: unknown) => (errnoCode(e) === "ENOENT" ? Option.none<Candidate>() : Promise.reject(e))
      ))

  const inspectAll = (names: ReadonlyArray<string>, heads = true) => io("inspect", spool, () => inspectNames(calls, spool, names, undefined, heads))

  // Only this process writes into its running folder (the node id is unique),
  // so what it holds there is known without asking the filesystem; the folder
  // is read once, for anything an earlier process of this id left.
  const held = new Set(yield* io("list", running, () => listOrEmpty(calls, running)))
  // Free when neither the claim's name nor those of the files kept beside it
  // are taken: output and records are only ever created exclusively, and a
  // done mark a crash left must never be taken for a new job's.
  const isFree = (target: string) =>
    !held.has(path.basename(target)) && BESIDE.every((suffix) => !held.has(path.basename(besideClaim(target, suffix))))
  const freeTarget = (name: string) => {
    for (let n = 0;; n++) {
      const target = path.join(running, claimName(name, n))
      if (isFree(target)) return target
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

  const claimedFacts = new Map<string, FileFacts>()

  // Set by checkState; a claim made while it is false would rename a user's
  // file into a folder someone else may control.
  let trusted = true
  const trustedLatch = yield* Effect.makeLatch(true)
  const checkState = Effect.gen(function*() {
    // A folder that is missing is no problem: it is made (and checked) when needed.
    const problem = yield* Effect.promise(async () => {
      try {
        for (const dir of [stateDir(spool), runningRoot(spool), running]) await verifyOwnDir(calls, dir)
        return null
      } catch (e) {
        return e instanceof UntrustedDirectory ? e.message : errnoCode(e) === "ENOENT" ? null : describe(e)
      }
    })
    if (problem === null && !trusted) {
      trusted = true
      yield* trustedLatch.open
      yield* Effect.logInfo("pmjq's state is trusted again; claiming resumes")
    } else if (problem !== null && trusted) {
      trusted = false
      yield* trustedLatch.close
      yield* Effect.logError("pmjq's state in the spool cannot be trusted; claiming stops until it is fixed").pipe(Effect.annotateLogs({ reason: problem }))
    }
    return trusted
  })

  const claim = (name: string) =>
    io("claim", path.join(spool, name), async (): Promise<Option.Option<Claim>> => {
      if (!trusted) return Option.none()
      const target = freeTarget(name)
      // Marked before the rename, so its notification cannot arrive first.
      movedAway.set(name, (movedAway.get(name) ?? 0) + 1)
      const source = path.join(spool, name)
      try {
        await calls.rename(source, target).catch(async (e: unknown) => {
          // Our own folder not made yet (first claim), or gone (taken over while
          // this node seemed dead, removed by hand) while the job is still there.
          if (errnoCode(e) !== "ENOENT" || (await calls.stat(running).then(() => true, () => false))) throw e
          await ownDirsBelow(calls, spool, stateParts.node(node))
          await calls.rename(source, target)
        })
      } catch (e) {
        forgetMove(name)
        if (errnoCode(e) === "ENOENT") return Option.none()
        throw e
      }
      held.add(path.basename(target))
      // Through a descriptor of the claimed file: what it is, and its directives,
      // read once. Claimed, it must end with a record: a head that cannot be
      // read (EIO, EMFILE) refuses it rather than leave it in the folder.
      const head = await calls.head(target, HEAD_MAX, worthReading(name)).catch(async (e: unknown) => ({
        stat: await calls.lstat(target),
        text: null,
        cut: false,
        failed: describe(e)
      }))
      const stat = head.stat
      if (stat.isDirectory()) {
        // A folder swapped in after the name was seen as a file. Folders are
        // left alone, and none may stay in a folder only pmjq writes: it goes
        // back (rename cannot replace a file that took the name meanwhile),
        // else it is set aside.
        held.delete(path.basename(target))
        await calls.rename(target, source).catch(() => setAside(target, "a folder claimed in place of a job"))
        return Option.none()
      }
      claimedFacts.set(target, factsOf(stat))
      const claimedAt = now()
      const notes = await readNotes(name)
      const owner = stat.uid
      const read: Read = "failed" in head
        ? { ...PLAIN, problem: { line: 0, reason: `its first bytes could not be read (${head.failed})` } }
        : readDirectives(head.text, head.cut, owner, mayRaise)
      if (notes === null) return Option.some({ name, path: target, claimedAt, attempt: 1, noteKey: null, owner, read })
      const { key, mtimeMs } = await keyOf(target)
      const note = notes[key]
      return Option.some(
        note !== undefined && note.mtimeMs === mtimeMs
          ? { name, path: target, claimedAt, attempt: note.attempts + 1, noteKey: key, owner, read }
          : { name, path: target, claimedAt, attempt: 1, noteKey: null, owner, read }
      )
    })

  const commit = (claim: Claim) => io("commit claim", claim.path, () => calls.syncDir(path.dirname(claim.path)))

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

  // .pmjq/attempts/NAME: how often each requeued file named NAME was started,
  // keyed by inode (which a rename keeps) and checked against its mtime (which
  // a rename keeps too), so a new file that reuses the inode starts from zero.
  // Read on every claim: one failed open, on the event loop when local. Notes
  // that are not pmjq's, or do not decode, are set aside: the job counts from
  // its first attempt again.
  const readNotes = (name: string): Promise<AttemptNotes | null> => readOwn(notesFile(spool, name), decodeAttemptNotes)
  const keyOf = async (file: string) => {
    const s = await calls.lstat(file)
    return { key: String(s.ino), mtimeMs: s.mtimeMs }
  }
  // Read, change, write aside and rename over: a reader sees old or new notes.
  const updateNotes = async (name: string, change: (notes: AttemptNotes) => AttemptNotes) => {
    const next = change((await readNotes(name)) ?? {})
    if (Object.keys(next).length === 0) return calls.unlink(notesFile(spool, name)).catch(() => undefined)
    await ownDirsBelow(calls, spool, stateParts.attempts)
    const aside = notesAside(spool, process.pid, now())
    await calls.writeNew(aside, JSON.stringify(next), 0o600)
    await calls.rename(aside, notesFile(spool, name))
  }

  const startedBefore = (file: string, name: string) =>
    io("read attempts", file, async () => {
      const notes = await readNotes(name)
      if (notes === null) return 0
      const { key, mtimeMs } = await keyOf(file)
      const note = notes[key]
      return note !== undefined && note.mtimeMs === mtimeMs ? note.attempts : 0
    })

  const requeue = (file: string, name: string, attempts: number) =>
    io("requeue", file, async () => {
      const { key, mtimeMs } = await keyOf(file)
      // Requeued already, by a recovery killed between its link and its unlink:
      // its note is there and the file has its second name (queued, claimed
      // since, or archived). This name is the one left to remove.
      const note = (await readNotes(name))?.[key]
      if (note !== undefined && note.mtimeMs === mtimeMs && (await calls.lstat(file)).nlink > 1) {
        await calls.unlink(file)
        return true
      }
      await updateNotes(name, (notes) => ({ ...notes, [key]: { attempts, mtimeMs } }))
      try {
        await calls.link(file, path.join(spool, name))
      } catch (e) {
        // Not queued after all: the note goes, so the next try counts the same attempt.
        await updateNotes(name, (notes) => Object.fromEntries(Object.entries(notes).filter(([k]) => k !== key)))
        if (errnoCode(e) === "EEXIST") return false
        throw e
      }
      await calls.unlink(file)
      return true
    })

  // A requeued job's note goes with it; a first run has none to remove.
  const failed = (e: unknown) => new SpoolIOError({ operation: "watch", path: spool, reason: describe(e) })

  const vacated = (claim: Claim) =>
    Effect.suspend(() => {
      held.delete(path.basename(claim.path))
      const key = claim.noteKey
      if (key === null) return Effect.void
      return io("forget attempts", claim.path, () =>
        updateNotes(claim.name, (notes) => Object.fromEntries(Object.entries(notes).filter(([k]) => k !== key)))
      ).pipe(Effect.ignore)
    })

  // A plain callback: each event reaches the feed's mailbox synchronously (a
  // Stream per source, merged, cost ~0.8 ms of dispatch latency per event).
  const watch = (changed: (name: string) => void) =>
    Effect.async<never, SpoolIOError>((resume) => {
      let stop: () => void
      try {
        stop = calls.watch(
          spool,
          (name) => {
            if (!isHidden(name) && !forgetMove(name)) changed(name)
          },
          (e) => resume(Effect.fail(failed(e)))
        )
      } catch (e) {
        // The spool vanished or inotify is out of watches: polling still works.
        return resume(Effect.fail(failed(e)))
      }
      return Effect.sync(() => stop())
    })

  // What the claim's own lstat saw: asked once more by the job, right after.
  const facts = (claim: Claim) =>
    io("inspect", claim.path, async () => {
      const known = claimedFacts.get(claim.path)
      claimedFacts.delete(claim.path)
      return known ?? factsOf(await calls.lstat(claim.path))
    })

  const own = process.getuid?.() ?? 0
  const dependencies = (names: ReadonlyArray<string>, uid: number) =>
    io("dependencies", spool, () => dependencyFacts(calls, spool, names, uid, own))
  const changed = (candidates: ReadonlyArray<Candidate>) =>
    io("inspect", spool, async () => {
      const names: Array<string> = []
      for (let i = 0; i < candidates.length; i += 64) {
        await Promise.all(candidates.slice(i, i + 64).map((c) =>
          calls.lstat(path.join(spool, c.name)).then(
            (s) => void (s.ctimeMs !== c.readyAt && names.push(c.name)),
            () => void names.push(c.name)
          )
        ))
      }
      return names
    })
  const prune = io("prune ended notes", spool, () => pruneEnded(calls, spool, now(), Duration.toMillis(ENDED_KEPT)))
  const judge = (jobs: ReadonlyArray<Dependent>, from: number, around: ReadonlyArray<Dependent>) =>
    io("dependencies", spool, () => judgeDependents(calls, spool, jobs, own, from, around))
  const paused = Effect.map(Effect.promise(() => readPause(calls, spool, node, own).catch(() => null)), Option.fromNullable)

  return Spool.of({
    path: spool,
    changed,
    pruneEnded: prune,
    dependencies,
    judgeDependents: judge,
    paused,
    list,
    listIfChanged,
    inspect,
    inspectAll,
    claim,
    commit,
    release,
    vacated,
    requeue,
    startedBefore,
    facts,
    checkState,
    whenTrusted: trustedLatch.await,
    watch
  })
})

