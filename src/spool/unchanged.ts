/**
 * Whether a folder may have other names than at its last listing, asked with
 * one stat(2) instead of a listing: listing the spool every --poll cost 45 ms
 * of CPU per 50,000 names here, whatever the names were.
 *
 * A folder's mtime changes with every name made, removed or renamed in it.
 * The stat is made before the listing, so a change after it gives a later
 * mtime; except within the same clock tick as the change before (the kernel
 * stamps with a coarse clock), so an mtime less than a second old is not
 * believed. A listing is made anyway once a minute: on a network filesystem
 * the attributes may be cached, and the clocks are another machine's.
 */
import type { Calls } from "../filesystem/syscalls.js"

/** The longest a folder goes without a listing. */
const LIST_EVERY_MS = 60_000
/** How old an mtime must be to be believed. */
const SETTLED_MS = 1_000

interface Stamp {
  readonly ino: number
  readonly mtimeMs: number
  readonly ctimeMs: number
  readonly listedAt: number
  readonly settled: boolean
}

/**
 * NOW is the wall clock (what mtimes are in); ELAPSED a monotonic one, for
 * the minute between listings (a clock stepped back must not stretch it).
 */
export const makeUnchanged = (calls: Calls, dir: string, now: () => number, elapsed: () => number = () => performance.now()) => {
  let last: Stamp | null = null
  return {
    /**
     * LIST's names, or null when DIR surely holds the same names as at the
     * last listing (made through here).
     */
    listing: async <A>(list: () => Promise<A>): Promise<A | null> => {
      const at = now()
      const since = elapsed()
      const stat = await calls.stat(dir)
      if (
        last !== null && last.settled && since - last.listedAt < LIST_EVERY_MS &&
        stat.ino === last.ino && stat.mtimeMs === last.mtimeMs && stat.ctimeMs === last.ctimeMs
      ) return null
      const names = await list()
      last = { ino: stat.ino, mtimeMs: stat.mtimeMs, ctimeMs: stat.ctimeMs, listedAt: since, settled: at - stat.mtimeMs >= SETTLED_MS }
      return names
    }
  }
}
