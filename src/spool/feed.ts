/**
 * The spool's event stream, and what it does to the pending queue.
 *
 * Three sources: the initial scan, then kernel notifications and a rescan every
 * `poll`, fed into one Stream. A notification names one file and costs one
 * lstat; it never triggers a listing. The listing is the truth: it finds what
 * notifications missed (another machine's writes over NFS, an overflowed
 * inotify queue) and forgets queued names that are gone (claimed by another
 * node, removed by a user).
 */
import { type Duration, Effect, Mailbox, Option, Schedule } from "effect"
import type { SpoolIOError } from "../errors.js"
import { isCancelRequest } from "./layout.js"
import type { Pending } from "./Pending.js"
import { Spool } from "./Spool.js"

export type SpoolEvent =
  | { readonly _tag: "Touched"; readonly name: string }
  | { readonly _tag: "Listed"; readonly names: ReadonlyArray<string> }

const touched = (name: string): SpoolEvent => ({ _tag: "Touched", name })
const listed = (names: ReadonlyArray<string>): SpoolEvent => ({ _tag: "Listed", names })

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
    const rescan = logFailure(spool.list).pipe(
      Effect.flatMap((names) => events.offer(listed(names))),
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

/** The feed of PENDING; `requested` is run for each notification of a request (Requests.ts). */
export const makeFeed = (pending: Pending, requested: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const spool = yield* Spool

    // A notification about a queued name usually means another node on this
    // host claimed it: forgetting it now saves a claim that would fail.
    const look = (name: string) =>
      spool.inspect(name).pipe(
        Effect.flatMap(Option.match({ onNone: () => pending.forget(name), onSome: pending.offer })),
        logFailure,
        Effect.ignore
      )

    // With 100,000 queued, a rescan lists them all; only the names not queued
    // yet cost an lstat, all made in one go (Spool.inspectAll).
    const reconcile = (names: ReadonlyArray<string>) =>
      Effect.zipRight(
        pending.retain(new Set(names)),
        Effect.suspend(() => spool.inspectAll(names.filter((n) => !pending.has(n)))).pipe(
          Effect.flatMap(pending.offerAll),
          logFailure,
          Effect.ignore
        )
      )

    const handle = (event: SpoolEvent) =>
      event._tag === "Listed" ? reconcile(event.names) : isCancelRequest(event.name) ? requested : look(event.name)

    /** One full look at the spool, done before dispatch starts and when a drain runs dry. */
    const scan = logFailure(spool.list).pipe(Effect.flatMap(reconcile), Effect.ignore)

    return { handle, scan, catchUp }
  })
