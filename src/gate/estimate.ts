/**
 * The rule behind `-C`.
 *
 * The 1-minute load average is an exponentially damped mean with a 60 s time
 * constant: a CPU-bound job started at t0 shows in it as 1 - e^-(t - t0)/60, so a
 * gate that only reads the average sees an idle machine for the first seconds and
 * launches the whole queue at once. We add back, for each job we started that is
 * still running, the part the average has not caught up with yet at the time of
 * the sample: e^-(sampledAt - t0)/60, or all of it for a job started after the
 * sample. For CPU-bound jobs the estimate is then the load they will settle at;
 * for jobs that mostly sleep the correction fades within a few minutes, so the gate
 * errs on the side of holding, never on the side of a burst.
 *
 * The kernel folds runnable tasks into the average only every 5 s and a tick
 * (LOAD_FREQ), so a sample describes the machine as it was up to that long
 * before; the correction is dated a full 6 s back, so that neither the kernel's
 * jitter nor rounding at exactly the limit can tip the gate open.
 *
 * The rule is conservative the other way too: a job that just ended still shows
 * in the average for a minute, and the gate counts it. Short CPU-bound jobs at
 * `-C N` therefore run somewhat fewer than N at a time, never more.
 */
export const LOAD_TIME_CONSTANT_MS = 60_000
export const KERNEL_LOAD_PERIOD_MS = 6_000

export interface LoadSample {
  readonly oneMinute: number
  readonly sampledAt: number
}

export const estimateLoad = (sample: LoadSample, startedAt: Iterable<number>): number => {
  let unseen = 0
  for (const t0 of startedAt) {
    const seenSince = sample.sampledAt - KERNEL_LOAD_PERIOD_MS
    unseen += t0 >= seenSince ? 1 : Math.exp(-(seenSince - t0) / LOAD_TIME_CONSTANT_MS)
  }
  return sample.oneMinute + unseen
}

/** A job may start only while the estimate is below the limit: `-C 2` settles at two CPU-bound jobs. */
export const gateIsOpen = (limit: number, estimate: number): boolean => estimate < limit
