/**
 * The jobs this node knows are ready, highest priority first, then oldest,
 * kept per owner.
 *
 * One binary heap per owner (the file's uid), each ordered by priority (its
 * `#PMJQ --priority`, directives/directives.ts), then the time a file became ready
 * (its ctime: the rename into the spool or the chmod +x that made it
 * runnable), then by arrival. Offer is O(log n); taking the next job looks
 * at the top of each owner's heap only, O(owners + log n), so dispatch costs
 * the same with 10 or 100,000 files queued, and a user with 10,000 jobs queued
 * costs nothing when only another user's job may start. Only the periodic
 * rescan looks at the whole spool.
 *
 * With `turns` (--max-jobs-per-user), owners take turns: the next job is the
 * oldest of the owner served longest ago. A cap on running jobs alone does not
 * share the queue: a file pmjq refuses ends the moment it is claimed, so a
 * user whose 4,000 oldest files are refused never reaches the cap, and every
 * other user waited behind all of them. Each refusal takes its owner's turn,
 * like a job, and delays only that owner.
 */
import { Effect } from "effect"
import type { Read } from "../directives/directives.js"

export interface Candidate {
  readonly name: string
  /** When the file became ready, in ms since the epoch. */
  readonly readyAt: number
  /**
   * The file's owner when it was found: whose share of the slots it would
   * take (--max-jobs-per-user). A hint for fairness only: what runs, and as
   * whom, is decided on the file as claimed.
   */
  readonly uid: number
  /** -20..20 (directives.ts), higher first; 0 when the file says none. */
  readonly priority?: number
  /** What its head said (directives/directives.ts), when it was read: hints for ordering and waiting, decided again once claimed. */
  readonly read?: Read
  /** Why it is to end dependency-failed without waiting (its dependencies loop), when so. */
  readonly loop?: string
  /** Found in a backlog too large to read at once: its head is read soon after (spool/feed.ts), its claim decides meanwhile. */
  readonly unread?: true
}

/**
 * Whether a job of `owner` may start now; `othersWaiting` says whether another
 * owner has a job queued. Asked once per owner with jobs queued, never per job.
 */
export type Accepts = (owner: number, othersWaiting: boolean) => boolean

const everyone: Accepts = () => true

interface Entry extends Candidate {
  readonly priority: number
  readonly seq: number
  /** The candidate as offered, handed out as it came. */
  readonly offered: Candidate
}

const before = (a: Entry, b: Entry) =>
  a.priority > b.priority || (a.priority === b.priority && (a.readyAt < b.readyAt || (a.readyAt === b.readyAt && a.seq < b.seq)))

const candidate = (e: Entry): Candidate => e.offered

export interface Pending {
  readonly offer: (candidate: Candidate) => Effect.Effect<void>
  /** Offers many at once (a rescan): one effect, not one per candidate. */
  readonly offerAll: (candidates: ReadonlyArray<Candidate>) => Effect.Effect<void>
  /** Waits until something is queued, without taking it. */
  readonly whenNonEmpty: Effect.Effect<void>
  /** The oldest candidate whose owner `accepts`, or undefined at once when there is none. */
  readonly poll: (accepts?: Accepts) => Effect.Effect<Candidate | undefined>
  /**
   * Among the `width` oldest whose owners `accepts`, the one `preference`
   * scores highest (the others stay queued); undefined when there is none.
   * Width 1 is `poll`.
   */
  readonly pollAmong: (width: number, preference: (name: string) => number, accepts?: Accepts) => Effect.Effect<Candidate | undefined>
  /** Drops one name that is gone from the spool. */
  readonly forget: (name: string) => Effect.Effect<void>
  readonly has: (name: string) => boolean
  /** Drops names that are no longer in the spool (claimed elsewhere, removed). */
  readonly retain: (present: ReadonlySet<string>) => Effect.Effect<void>
  readonly size: Effect.Effect<number>
}

/** A binary min-heap of entries, oldest on top. */
const makeHeap = () => {
  const items: Array<Entry> = []

  const push = (entry: Entry) => {
    items.push(entry)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(items[i]!, items[parent]!)) break
      ;[items[i], items[parent]] = [items[parent]!, items[i]!]
      i = parent
    }
  }

  const pop = (): Entry | undefined => {
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    items[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < items.length && before(items[l]!, items[m]!)) m = l
      if (r < items.length && before(items[r]!, items[m]!)) m = r
      if (m === i) break
      ;[items[i], items[m]] = [items[m]!, items[i]!]
      i = m
    }
    return top
  }

  /** Keeps only the entries `keep` says are live. */
  const rebuild = (keep: (entry: Entry) => boolean) => {
    const live = items.filter(keep)
    items.length = 0
    for (const e of live) push(e)
  }

  return { push, pop, rebuild, peek: (): Entry | undefined => items[0], size: () => items.length }
}

/** One owner's queued jobs: a heap that may hold tombstones, and how many are live. */
interface Owner {
  readonly uid: number
  readonly heap: ReturnType<typeof makeHeap>
  live: number
}

export const makePending = (options: { readonly turns: boolean } = { turns: false }) => Effect.gen(function*() {
  // The live entry of each queued name. A heap entry that is not the live
  // entry of its name (forgotten, taken, or offered again since) is a tombstone,
  // skipped when it reaches the top; identity, not the name, decides, so a name
  // that comes back under another owner is never counted as the old one's.
  const queued = new Map<string, Entry>()
  // Only owners with live jobs: an owner whose last job goes takes its
  // tombstones with it, so `owners.size` is how many users are waiting.
  const owners = new Map<number, Owner>()
  const available = yield* Effect.makeLatch(false)
  let seq = 0
  // With turns: when each owner was last served (one entry per uid ever seen).
  const served = new Map<number, number>()
  let turn = 0
  const lastServed = (owner: Owner) => (options.turns ? served.get(owner.uid) ?? -1 : 0)

  const isLive = (entry: Entry) => queued.get(entry.name) === entry

  const ownerOf = (uid: number) => {
    let owner = owners.get(uid)
    if (owner === undefined) {
      owner = { uid, heap: makeHeap(), live: 0 }
      owners.set(uid, owner)
    }
    return owner
  }

  /** Takes a live entry out of the queue (its heap entry, if still there, becomes a tombstone). */
  const drop = (entry: Entry) => {
    queued.delete(entry.name)
    const owner = owners.get(entry.uid)
    if (owner !== undefined && --owner.live === 0) owners.delete(entry.uid)
  }

  /** The owner's oldest live entry, tombstones above it cleared away; undefined if its heap is empty. */
  const topOf = (owner: Owner) => {
    for (let top = owner.heap.peek(); top !== undefined; top = owner.heap.peek()) {
      if (isLive(top)) return top
      owner.heap.pop()
    }
    return undefined
  }

  const acceptedOwners = (accepts: Accepts) => {
    const othersWaiting = owners.size > 1
    return [...owners].filter(([uid]) => accepts(uid, othersWaiting)).map(([, owner]) => owner)
  }

  /** Of these owners, the one whose top is oldest (with turns: of those served longest ago). */
  const oldestAmong = (among: ReadonlyArray<Owner>) => {
    let best: { owner: Owner; top: Entry } | undefined
    for (const owner of among) {
      const top = topOf(owner)
      if (top === undefined) continue
      if (best === undefined) {
        best = { owner, top }
        continue
      }
      const [mine, theirs] = [lastServed(owner), lastServed(best.owner)]
      if (mine < theirs || (mine === theirs && before(top, best.top))) best = { owner, top }
    }
    return best
  }

  /** ENTRY leaves the queue to run (or be refused): its owner's turn is taken. */
  const take = (entry: Entry) => {
    drop(entry)
    if (options.turns) served.set(entry.uid, turn++)
    return candidate(entry)
  }

  /** Queues C unless its name is queued; true when it was added. */
  const add = (c: Candidate) => {
    if (queued.has(c.name)) return false
    const entry: Entry = { name: c.name, readyAt: c.readyAt, uid: c.uid, priority: c.priority ?? 0, seq: seq++, offered: c }
    queued.set(c.name, entry)
    const owner = ownerOf(c.uid)
    owner.heap.push(entry)
    owner.live++
    return true
  }

  const offer = (c: Candidate) => Effect.suspend(() => (add(c) ? available.open : Effect.void))

  const offerAll = (candidates: ReadonlyArray<Candidate>) =>
    Effect.suspend(() => {
      let added = false
      for (const c of candidates) added = add(c) || added
      return added ? available.open : Effect.void
    })

  const poll = (accepts: Accepts = everyone) =>
    Effect.sync(() => {
      const best = oldestAmong(acceptedOwners(accepts))
      if (best === undefined) return undefined
      best.owner.heap.pop()
      return take(best.top)
    })

  // The `width` oldest are taken off their heaps (a merge over the accepted
  // owners' tops), one is chosen, and the rest go back where they were.
  const pollAmong = (width: number, preference: (name: string) => number, accepts: Accepts = everyone) =>
    Effect.sync(() => {
      const among = acceptedOwners(accepts)
      const oldest: Array<{ owner: Owner; top: Entry }> = []
      while (oldest.length < width) {
        const best = oldestAmong(among)
        if (best === undefined) break
        best.owner.heap.pop()
        oldest.push(best)
      }
      if (oldest.length === 0) return undefined
      // The preference chooses among the first priority only: a lower one never goes first.
      let chosen = 0
      for (let i = 1; i < oldest.length; i++) {
        if (oldest[i]!.top.priority === oldest[0]!.top.priority && preference(oldest[i]!.top.name) > preference(oldest[chosen]!.top.name)) chosen = i
      }
      oldest.forEach(({ owner, top }, i) => i !== chosen && owner.heap.push(top))
      return take(oldest[chosen]!.top)
    })

  const whenNonEmpty: Effect.Effect<void> = Effect.suspend(() =>
    queued.size > 0 ? Effect.void : available.close.pipe(Effect.zipRight(available.await), Effect.zipRight(whenNonEmpty))
  )

  const retain = (present: ReadonlySet<string>) =>
    Effect.sync(() => {
      for (const [name, entry] of queued) if (!present.has(name)) drop(entry)
      // Rebuild only when tombstones dominate, so memory follows the live queue.
      for (const owner of owners.values()) {
        if (owner.heap.size() > 1024 && owner.heap.size() > 2 * owner.live) owner.heap.rebuild(isLive)
      }
    })

  const forget = (name: string) =>
    Effect.sync(() => {
      const entry = queued.get(name)
      if (entry !== undefined) drop(entry)
    })

  return {
    offer,
    offerAll,
    whenNonEmpty,
    poll,
    pollAmong,
    forget,
    has: (name: string) => queued.has(name),
    retain,
    size: Effect.sync(() => queued.size)
  } satisfies Pending
})
