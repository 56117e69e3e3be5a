/**
 * The jobs this node knows are ready, oldest first.
 *
 * A binary heap ordered by the time each file became ready (its ctime: the
 * rename into the spool or the chmod +x that made it runnable), then by arrival.
 * Offer, take and forget are O(log n) and O(1), so dispatch costs the same with
 * 10 or 100,000 files queued; only the periodic rescan looks at the whole spool.
 */
import { Effect } from "effect"

export interface Candidate {
  readonly name: string
  /** When the file became ready, in ms since the epoch. */
  readonly readyAt: number
}

interface Entry extends Candidate {
  readonly seq: number
}

const before = (a: Entry, b: Entry) => a.readyAt < b.readyAt || (a.readyAt === b.readyAt && a.seq < b.seq)

export interface Pending {
  readonly offer: (candidate: Candidate) => Effect.Effect<void>
  /** Waits until something is queued, without taking it. */
  readonly whenNonEmpty: Effect.Effect<void>
  /** The oldest candidate, or undefined at once when there is none. */
  readonly poll: Effect.Effect<Candidate | undefined>
  /**
   * Among the `width` oldest, the one `preference` scores highest (the others
   * stay queued); undefined when there is none. Width 1 is `poll`.
   */
  readonly pollAmong: (width: number, preference: (name: string) => number) => Effect.Effect<Candidate | undefined>
  /** Drops one name that is gone from the spool. */
  readonly forget: (name: string) => Effect.Effect<void>
  readonly has: (name: string) => boolean
  /** Drops names that are no longer in the spool (claimed elsewhere, removed). */
  readonly retain: (present: ReadonlySet<string>) => Effect.Effect<void>
  readonly size: Effect.Effect<number>
}

export const makePending = Effect.gen(function*() {
  const heap: Array<Entry> = []
  // Names currently in the heap; a retained-away name stays in the heap as a
  // tombstone and is skipped when it reaches the top.
  const queued = new Set<string>()
  const available = yield* Effect.makeLatch(false)
  let seq = 0

  const push = (entry: Entry) => {
    heap.push(entry)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(heap[i]!, heap[parent]!)) break
      ;[heap[i], heap[parent]] = [heap[parent]!, heap[i]!]
      i = parent
    }
  }

  const pop = (): Entry | undefined => {
    const top = heap[0]
    const last = heap.pop()
    if (top === undefined || last === undefined || heap.length === 0) return top
    heap[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < heap.length && before(heap[l]!, heap[m]!)) m = l
      if (r < heap.length && before(heap[r]!, heap[m]!)) m = r
      if (m === i) break
      ;[heap[i], heap[m]] = [heap[m]!, heap[i]!]
      i = m
    }
    return top
  }

  const pollNow = (): Candidate | undefined => {
    for (let entry = pop(); entry !== undefined; entry = pop()) {
      if (queued.delete(entry.name)) return { name: entry.name, readyAt: entry.readyAt }
    }
    return undefined
  }

  const offer = (candidate: Candidate) =>
    Effect.suspend(() => {
      if (queued.has(candidate.name)) return Effect.void
      queued.add(candidate.name)
      push({ ...candidate, seq: seq++ })
      return available.open
    })

  const poll = Effect.sync(pollNow)

  const pollAmong = (width: number, preference: (name: string) => number) =>
    Effect.sync(() => {
      const oldest: Array<Entry> = []
      for (let entry = pop(); entry !== undefined && oldest.length < width; entry = oldest.length < width ? pop() : undefined) {
        if (queued.has(entry.name)) oldest.push(entry)
      }
      if (oldest.length === 0) return undefined
      let best = 0
      for (let i = 1; i < oldest.length; i++) if (preference(oldest[i]!.name) > preference(oldest[best]!.name)) best = i
      const [chosen] = oldest.splice(best, 1)
      for (const entry of oldest) push(entry)
      queued.delete(chosen!.name)
      return { name: chosen!.name, readyAt: chosen!.readyAt }
    })

  const whenNonEmpty: Effect.Effect<void> = Effect.suspend(() =>
    queued.size > 0 ? Effect.void : available.close.pipe(Effect.zipRight(available.await), Effect.zipRight(whenNonEmpty))
  )

  const retain = (present: ReadonlySet<string>) =>
    Effect.sync(() => {
      for (const name of queued) if (!present.has(name)) queued.delete(name)
      // Rebuild only when tombstones dominate, so memory follows the live queue.
      if (heap.length > 1024 && heap.length > 2 * queued.size) {
        const live = heap.filter((e) => queued.has(e.name))
        heap.length = 0
        for (const e of live) push(e)
      }
    })

  return {
    offer,
    whenNonEmpty,
    poll,
    pollAmong,
    forget: (name: string) => Effect.sync(() => void queued.delete(name)),
    has: (name: string) => queued.has(name),
    retain,
    size: Effect.sync(() => queued.size)
  } satisfies Pending
})
