/**
 * The spool's event stream, and what it does to the pending queue.
 *
 * Three sources: the initial scan, then kernel notifications and a rescan every
 * `poll`, fed into one Stream. A notification names one file and costs one
 * lstat; it never triggers a listing. The listing is the truth: it finds what
 * notifications missed (another machine's writes over NFS, an overflowed
 * inotify queue) and forgets queued names that are gone (claimed by another
 * node, removed by a user).
 *
 * A listed name that is not a job (no execute bit, a folder) is remembered,
 * and looked at again only once every NOT_JOBS_AGAIN, a slice of them each
 * rescan: 50,000 such files from one user cost every rescan 50,000 lstats
 * (29 % of a core at --poll 1s). A notification about one forgets it, so a
 * file made executable in place is picked up at once; one made executable
 * on another machine (no notification reaches this one), within a minute.
 */
import { Chunk, Duration, Effect, Mailbox, Option, Queue, Schedule } from "effect"
import type { SpoolIOError } from "../errors/errors.js"
import { isCancelRequest } from "./layout.js"
import { dependencyNames } from "../directives/dependencies.js"
import { LOOKUPS } from "./dependencyFacts.js"
import type { Candidate, Pending } from "./Pending.js"
import { makeWaiting, type WaitingJob } from "./Waiting.js"
import { Spool } from "./Spool.js"

export type SpoolEvent =
  | { readonly _tag: "Touched"; readonly name: string }
  | { readonly _tag: "Listed"; readonly names: ReadonlyArray<string> }
  /** A rescan found the spool's names as they were (spool/unchanged.ts). */
  | { readonly _tag: "Unchanged" }

const touched = (name: string): SpoolEvent => ({ _tag: "Touched", name })
const listed = (names: ReadonlyArray<string>): SpoolEvent => ({ _tag: "Listed", names })
const unchanged: SpoolEvent = { _tag: "Unchanged" }

/**
 * Notifications and periodic rescans, in one Stream fed through a mailbox; the
 * first rescan comes one `poll` after the start. The watch and the rescans run
 * in the caller's scope.
 */
export const spoolEvents = (poll: Duration.DurationInput) =>
  Effect.gen(function*() {
    const spool = yield* Spool
    const events = yield* Mailbox.make<SpoolEvent>()
    yield* spool.watch((name) => void events.unsafeOffer(touched(name))).pipe(
      Effect.tapError((e) => Effect.logWarning("watch failed; polling only until it is back").pipe(Effect.annotateLogs({ reason: e.message }))),
      // Never gives up; meanwhile the rescans alone keep the queue right.
      Effect.retry(Schedule.spaced(poll)),
      Effect.forkScoped
    )
    const rescan = logFailure(spool.listIfChanged).pipe(
      Effect.flatMap((names) => events.offer(Option.match(names, { onNone: () => unchanged, onSome: listed }))),
      Effect.ignore
    )
    yield* Effect.sleep(poll).pipe(Effect.zipRight(rescan), Effect.forever, Effect.forkScoped)
    return Mailbox.toStream(events)
  })

const logFailure = <A>(effect: Effect.Effect<A, SpoolIOError>) =>
  Effect.tapError(effect, (e) => Effect.logWarning("spool not readable").pipe(Effect.annotateLogs({ reason: e.message })))

/**
 * Until the notifications the kernel holds now have been read: what a lost
 * race calls for, since the other nodes' claims are in them. On a local
 * filesystem a claim's calls are synchronous, so picks made without a turn of
 * the event loop come from the same stale queue and are lost too (16 nodes:
 * 2.7 races lost per claim won, 0.35 with this wait). Two immediates, because a
 * lost claim may run in an I/O callback (poll phase), where one immediate runs
 * in this iteration's check phase before any further poll (0.47-0.50); the
 * second, set from the check phase, runs after the next poll phase, where
 * notifications are read. The feed mostly handles them in that callback's
 * microtasks (a direct lstat and a forget each).
 */
const catchUp = Effect.async<void>((resume) => {
  let turn = setImmediate(() => {
    turn = setImmediate(() => resume(Effect.void))
  })
  return Effect.sync(() => clearImmediate(turn))
})

// A name is the user's text: shell-quoted in the advice (safe to paste), and
// the job= field is the logger's, escaped. At most TOLD_EACH_LOOK lines a
// look, then one for the rest: a user making 5,000 such files at once costs
// the log a dozen lines, not 5,000.
const TOLD_EACH_LOOK = 10
const pastable = (name: string) => {
  const path = name.startsWith("-") ? `./${name}` : name
  return /^[A-Za-z0-9._+,@%:/-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`
}
const tellNotExecutable = (names: ReadonlyArray<string>) =>
  Effect.zipRight(
    Effect.forEach(names.slice(0, TOLD_EACH_LOOK), (name) =>
      Effect.logWarning(`not executable: chmod +x ${pastable(name)} to run it`).pipe(Effect.annotateLogs({ job: name })), { discard: true }),
    names.length > TOLD_EACH_LOOK
      ? Effect.logWarning(`not executable: ${names.length - TOLD_EACH_LOOK} more files (chmod +x each to run it)`)
      : Effect.void
  )

/**
 * The most names whose heads (their directives) are read in the look that
 * finds them. A startup with 100,000 queued reads them after queueing them
 * (readBacklog): reading first took the first job from 1.6 to 3.3 s. Until its
 * head is read, a job is queued at priority 0, and its claim decides.
 */
export const READ_AT_ONCE = 1000
const BACKLOG_CHUNK = 256

const dependentOf = (w: WaitingJob) => ({ name: w.candidate.name, uid: w.candidate.uid, directives: w.directives })

/** How long a listed name that is not a job may go without a look (one --poll, when longer). */
export const NOT_JOBS_AGAIN = Duration.minutes(1)

/** The feed of PENDING, rescanned every POLL; `requested` is run for each notification of a request (Requests.ts). */
export const makeFeed = (pending: Pending, requested: Effect.Effect<void>, poll: Duration.DurationInput) =>
  Effect.gen(function*() {
    const spool = yield* Spool
    const waiting = makeWaiting()

    // Where the next review starts among the names to look up (each has its turn, spool/dependencyFacts.ts: LOOKUPS).
    let turn = 0

    // Judges the jobs waiting on dependencies again (ONLY: those of them; all
    // by default); those free to go, or doomed, join the queue.
    const review = (only?: (w: WaitingJob) => boolean) =>
      Effect.suspend(() => {
        // The per-job path: each job's end asks, and mostly nothing waits.
        if (waiting.size() === 0) return Effect.void
        const all = waiting.onDependencies()
        const jobs = only === undefined ? all : all.filter(only)
        if (jobs.length === 0) return Effect.void
        // Only the names of those judged are looked up; a loop is found among all that wait.
        const around = only === undefined ? [] : all.filter((w) => !only(w)).map(dependentOf)
        return spool.judgeDependents(jobs.map(dependentOf), turn, around).pipe(
          Effect.flatMap((verdicts) => {
            turn += LOOKUPS
            const go: Array<Candidate> = []
            for (const w of jobs) {
              const verdict = verdicts.get(w.candidate.name)
              if (verdict === undefined) continue
              waiting.judged(w.candidate.name, verdict)
              if (verdict._tag === "Ready") go.push(w.candidate)
              else if (verdict._tag === "Failed") go.push({ ...w.candidate, loop: verdict.reason })
            }
            return pending.offerAll(go)
          }),
          logFailure,
          Effect.ignore
        )
      })

    // The names of a backlog queued before their heads were read (more than
    // READ_AT_ONCE in one look): read after, a chunk at a time, by readBacklog.
    const unread = yield* Queue.unbounded<string>()
    const readBacklog = Effect.gen(function*() {
      const names = (yield* Queue.takeBetween(unread, 1, BACKLOG_CHUNK)).pipe(Chunk.filter((name) => pending.has(name)))
      if (names.length === 0) return
      const { jobs } = yield* spool.inspectAll(Chunk.toReadonlyArray(names), true)
      // A job that says something leaves the queue and comes back as it says (its priority, or waiting).
      const saying = jobs.filter((job) => job.read !== undefined && pending.has(job.name))
      yield* Effect.forEach(saying, (job) => pending.forget(job.name), { discard: true })
      yield* admit(saying)
      if (saying.some((job) => waiting.has(job.name))) yield* review()
      // Dispatch goes on between chunks: the first job of a large backlog does not wait for every head.
      yield* Effect.yieldNow()
    }).pipe(logFailure, Effect.ignore, Effect.forever)

    // Names whose capped priority was said: once each while the name stays (a user touching the file must not fill the log).
    const capped = new Set<string>()

    // Jobs whose directives keep them waiting go there, the others to the queue.
    const admit = (jobs: ReadonlyArray<Candidate>) =>
      Effect.gen(function*() {
        const ready: Array<Candidate> = []
        for (const job of jobs) {
          if (job.read?.capped != null && !capped.has(job.name)) {
            capped.add(job.name)
            yield* Effect.logWarning(`priority ${job.read.capped} capped at 0: only root may raise one`).pipe(Effect.annotateLogs({ job: job.name, uid: job.uid }))
          }
          if (!waiting.admit(job)) ready.push(job)
        }
        yield* pending.offerAll(ready)
      })
    // Listed names that are not jobs, each with the rescan (modulo `slices`)
    // that looks at it again; names gone from the listing are dropped.
    const slices = Math.max(1, Math.ceil(Duration.toMillis(NOT_JOBS_AGAIN) / Duration.toMillis(poll)))
    const notJobs = new Map<string, number>()
    // Files without an execute bit whose owner was told so: once each, while the name stays.
    const told = new Set<string>()
    let rescans = 0
    let dealt = 0

    // A notification about a queued name usually means another node on this
    // host claimed it: forgetting it now saves a claim that would fail.
    const look = (name: string) =>
      Effect.suspend(() => {
        notJobs.delete(name)
        return spool.inspect(name)
      }).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.zipRight(Effect.sync(() => waiting.forget(name)), pending.forget(name)),
          onSome: (job) => Effect.zipRight(admit([job]), waiting.has(job.name) ? review((w) => w.candidate.name === job.name) : Effect.void)
        })),
        logFailure,
        Effect.ignore
      )

    // LOOKED inspected: the jobs among them queued, the others remembered
    // (not a name that could not be looked at: gone, or failing now).
    const inspect = (looked: ReadonlyArray<string>) =>
      spool.inspectAll(looked, looked.length <= READ_AT_ONCE).pipe(
        Effect.tap(({ jobs, notExecutable, others }) => {
          for (const job of jobs) {
            notJobs.delete(job.name)
            told.delete(job.name)
          }
          for (const name of others) if (!notJobs.has(name)) notJobs.set(name, dealt++ % slices)
          const untold = notExecutable.filter((name) => !told.has(name))
          for (const name of untold) told.add(name)
          return tellNotExecutable(untold)
        }),
        Effect.flatMap(({ jobs }) =>
          Effect.zipRight(admit(jobs), Queue.offerAll(unread, jobs.flatMap((job) => (job.unread === true ? [job.name] : []))))
        ),
        Effect.zipRight(review()),
        logFailure,
        Effect.ignore
      )

    // With 100,000 queued, a rescan lists them all; only the names not queued
    // yet (and not known as non-jobs, but for this rescan's slice) cost an
    // lstat, all made in one go (Spool.inspectAll).
    const reconcile = (names: ReadonlyArray<string>) =>
      Effect.suspend(() => {
        const present = new Set(names)
        waiting.retain(present)
        for (const name of notJobs.keys()) if (!present.has(name)) notJobs.delete(name)
        for (const name of told) if (!present.has(name)) told.delete(name)
        for (const name of capped) if (!present.has(name)) capped.delete(name)
        const slice = rescans++ % slices
        // A waiting job is looked at again only when its file changed (an
        // lstat): thousands waiting cost a rescan an lstat each, not a read.
        const fresh = names.filter((n) => !pending.has(n) && !waiting.has(n) && (notJobs.get(n) ?? slice) === slice)
        return Effect.zipRight(
          pending.retain(present),
          waiting.size() === 0 ? inspect(fresh) : spool.changed(waiting.all().map((w) => w.candidate)).pipe(
            Effect.orElseSucceed((): ReadonlyArray<string> => []),
            Effect.flatMap((changed) => inspect([...fresh, ...changed.filter((n) => present.has(n))]))
          )
        )
      })

    // The same names as at the last listing: only this rescan's slice of the
    // non-jobs is looked at again (one made executable in place elsewhere).
    // The jobs waiting on dependencies are judged again: one may have ended on another node.
    const recheck = Effect.suspend(() => {
      const slice = rescans++ % slices
      return inspect([...notJobs].flatMap(([name, at]) => (at === slice ? [name] : [])))
    })

    const handle = (event: SpoolEvent) =>
      event._tag === "Listed"
        ? reconcile(event.names)
        : event._tag === "Unchanged"
        ? recheck
        : isCancelRequest(event.name)
        ? requested
        : look(event.name)

    /** One full look at the spool, done before dispatch starts and when a drain runs dry. */
    const scan = logFailure(spool.list).pipe(Effect.flatMap(reconcile), Effect.ignore)

    return {
      handle, scan, catchUp, waiting,
      /** Reads the heads of a backlog's jobs queued unread (run it forked, for the daemon's life). */
      readBacklog,
      /** The jobs waiting on dependencies judged again now. */
      review: review(),
      /** Job NAME of this node ended (its ended note written): the jobs after it are judged at once. */
      ended: (name: string) => review((w) => dependencyNames(w.directives).includes(name))
    }
  })
