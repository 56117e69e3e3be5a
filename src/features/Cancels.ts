/**
 * `pmjq cancel`: each node looks at the spool's cancel requests (spool/Requests.ts)
 * every --poll, and at once when the kernel tells of a new one. A request is
 * for the node that can act on it:
 *
 *   the job runs here       its cancel is completed: its process group gets
 *                           SIGTERM, SIGKILL after --grace (job/Job.ts)
 *   the job is queued       whoever claims it first archives it as cancelled,
 *                           never run (a node that loses the claim leaves the
 *                           request to the winner)
 *   another node holds it   left for that node
 *   nowhere                 it ended already: the request is removed
 *
 * Only the job file's owner, root, or pmjq's own user may cancel a job; a
 * request by anyone else is removed, the job untouched, and logged.
 */
import { Context, Deferred, Effect, Fiber, HashMap, Layer, Option, Ref } from "effect"
import * as path from "node:path"
import { Users } from "../owners/Users.js"
import { type CancelRequest, type Holder, Requests } from "../spool/Requests.js"
import { Spool } from "../spool/Spool.js"
import { DaemonConfig } from "./Config.js"
import { JobQueue } from "./JobQueue.js"
import { Jobs } from "./Jobs.js"
import { Running } from "./Running.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const requests = yield* Requests
  const spool = yield* Spool
  const users = yield* Users
  const jobs = yield* Jobs
  const running = yield* Running
  const { pending, requested } = yield* JobQueue
  const self = process.getuid?.() ?? 0
  const mayCancel = (asker: number, owner: number) => asker === owner || asker === 0 || asker === self
  const nameOf = (uid: number) =>
    Effect.map(users.account(uid), Option.match({ onNone: () => `uid ${uid}`, onSome: (account) => account.name }))

  const refused = (request: CancelRequest, owner: number) =>
    Effect.logWarning("cancel refused: the job is not the asker's").pipe(
      Effect.annotateLogs({ job: request.name, asker: request.uid, owner }),
      Effect.zipRight(requests.done(request))
    )

  /** A request no job here answers: refused (the job of that name is another's), or nothing to cancel. */
  interface Unanswered {
    readonly request: CancelRequest
    /** The owner of the job of that name looked at; null when there was none. */
    readonly owner: number | null
    /** This node's claims of that name looked at (another user's, enrolled). */
    readonly seen: ReadonlySet<string>
  }

  // Several jobs may share a name (a claim's copies .~N~, one per node, a
  // queued one): the asker's are cancelled, the others never, and another
  // user's job of that name must not make the asker's request be dropped.
  const handle = (request: CancelRequest) =>
    Effect.gen(function*() {
      const here = [...HashMap.values(yield* Ref.get(running.held))].filter((held) => held.claim.name === request.name)
      let theirs = 0
      for (const held of here) {
        // The claimed file's owner, as claimed (the job may have deleted the file since).
        if (!mayCancel(request.uid, held.claim.owner)) continue
        theirs++
        yield* Deferred.succeed(held.cancel, yield* nameOf(request.uid))
        const waiting = yield* Ref.get(held.waiting)
        if (Option.isSome(waiting)) yield* Fiber.interruptFork(waiting.value)
      }
      if (theirs > 0) return yield* Effect.as(requests.done(request), Option.none<Unanswered>())
      const queued = yield* spool.inspect(request.name).pipe(Effect.orElseSucceed(() => Option.none()))
      if (Option.isSome(queued) && mayCancel(request.uid, queued.value.uid)) {
        yield* pending.forget(request.name)
        // Claimed elsewhere first: that node answers the request now.
        if (yield* jobs.launch(queued.value, Effect.void, yield* nameOf(request.uid))) yield* requests.done(request)
        return Option.none<Unanswered>()
      }
      const owner = Option.isSome(queued) ? queued.value.uid : here.length > 0 ? -1 : null
      return Option.some<Unanswered>({ request, owner, seen: new Set(here.map((held) => path.basename(held.claim.path))) })
    })

  /**
   * Whether a request no job here answered waits for the next round: a node
   * holds a job of that name (another node decides; one of this node's own,
   * claimed after its look and not enrolled yet, or enrolled since, is looked
   * at again). CLAIMS are listed after every look at the queue: a job found
   * gone from it because a node claimed it is in a running folder by then.
   * A claim with its record beside it ended (its archival is being retried):
   * nothing to cancel there.
   */
  const waits = (claims: ReadonlyArray<Holder>, { seen }: Unanswered) =>
    claims.some((c) => c.node !== settings.node || (!c.ended && !seen.has(c.claimed)))

  // A round at least a second after the last: a user making and removing
  // request files in a loop gets one look a second, not one per file.
  const round = Effect.gen(function*() {
    const found = yield* requests.cancels
    if (found.length === 0) return
    const unanswered = (yield* Effect.forEach(found, handle)).flatMap(Option.toArray)
    if (unanswered.length === 0) return
    // The running folders, listed once for the whole look, after it.
    const holders = yield* requests.holders
    yield* Effect.forEach(unanswered, (u) => {
      if (waits(holders(u.request.name), u)) return Effect.void
      if (u.owner !== null) return refused(u.request, u.owner)
      return Effect.logDebug("nothing to cancel: not queued, not running").pipe(
        Effect.annotateLogs({ job: u.request.name }),
        Effect.zipRight(requests.done(u.request))
      )
    }, { discard: true })
  })
  // Requests left while no node ran are dealt with before dispatch starts
  // (the Dispatcher waits for `ready`): a cancelled job never runs. The first
  // look lists the spool while the feed lists it too (on the thread pool).
  const ready = yield* Deferred.make<void>()
  yield* Effect.gen(function*() {
    yield* requested.close
    yield* round
    yield* Deferred.succeed(ready, undefined)
    yield* Effect.raceFirst(Effect.sleep(settings.poll), Effect.zipRight(Effect.sleep("1 second"), requested.await))
  }).pipe(Effect.forever, Effect.forkScoped)
  return { ready: Deferred.await(ready) }
})

export class Cancels extends Context.Tag("pmjq/Cancels")<Cancels, { readonly ready: Effect.Effect<void> }>() {
  static readonly layer = Layer.scoped(Cancels, make)
}
