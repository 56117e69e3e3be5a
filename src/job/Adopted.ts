/**
 * A job adopted from a pmjq that stopped with --on-stop leave: its process
 * runs under the old pmjq's spawner, which writes its record when it ends.
 * This pmjq cannot wait(2) for it, so it looks every quarter second: for its
 * record, and for its process (by pid and start time, never a later process
 * with its pid). It applies --timeout from the job's real start and `pmjq
 * cancel`, signalling the job's process group, and hands the job to recovery's
 * settling once its end is known: archived as recorded (with the outcome this
 * pmjq gave it, when it stopped it), or, should its process and every spawner
 * it was left to be gone without a record, as a dead node's job.
 */
import { Clock, Deferred, Duration, Effect, Option, Ref } from "effect"
import * as fs from "node:fs"
import { isSameProcess, type ProcessId, signalGroupOf, stillRuns } from "../process/proc.js"
import { type Ending, iso, type JobRecord, judge, type ProcessExit, startedRecord } from "../record/record.js"
import type { LeftoverNames } from "../spool/layout.js"
import { Nodes } from "../spool/Nodes.js"
import { Archive } from "./Archive.js"

export interface AdoptedSettings {
  readonly node: string
  readonly host: string
  readonly timeout: Option.Option<Duration.Duration>
  readonly grace: Duration.DurationInput
}

// Linux's USER_HZ: /proc counts process start times in these.
const TICKS_PER_SECOND = 100


/** A job a leaving pmjq left running under its spawners, for this one to adopt (recovery/recovery.ts: stillRunning). */
export interface Adoptable {
  readonly names: LeftoverNames
  /** Its process; null when the heartbeat did not list it with its start time. */
  readonly process: { readonly pid: number; readonly startTicks: number } | null
  /** The spawners it was left to: while one lives, its record may still come. */
  readonly helpers: ReadonlyArray<ProcessId>
}

/** When the process that started at TICKS started, in ms since the epoch (btime from /proc/stat). */
const startedAtMs = (ticks: number): number | null => {
  try {
    const btime = /^btime (\d+)$/m.exec(fs.readFileSync("/proc/stat", "utf8"))
    return btime === null ? null : Number(btime[1]) * 1000 + (ticks * 1000) / TICKS_PER_SECOND
  } catch {
    return null
  }
}

type Stop =
  | { readonly _tag: "Cancelled"; readonly by: string }
  | { readonly _tag: "TimedOut"; readonly limit: string }
  | { readonly _tag: "Interrupted" }
  | { readonly _tag: "Lost"; readonly why: string }

/**
 * Watches JOB in FOLDER until its end is known, tells it to `finished` (the
 * metrics count it as a job of this run), then `settle`s it (recovery's,
 * which archives a job with a record as recorded). `cancel` is completed by
 * `pmjq cancel`; interruption (pmjq stopping) stops the job unless `leaving`.
 */
export const watchAdopted = (
  job: Adoptable,
  folder: string,
  settings: AdoptedSettings,
  cancel: Deferred.Deferred<string>,
  leaving: Effect.Effect<boolean>,
  settle: (names: LeftoverNames) => Effect.Effect<void>,
  finished: (record: JobRecord) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const nodes = yield* Nodes
    const archive = yield* Archive
    const leader = job.process
    const alive = () => leader !== null && isSameProcess(leader.pid, leader.startTicks)
    const deadline = Option.flatMap(settings.timeout, (limit) =>
      leader === null ? Option.none() : Option.map(Option.fromNullable(startedAtMs(leader.startTicks)), (at) => ({ at: at + Duration.toMillis(limit), limit })))

    const stopped = yield* Ref.make<Stop | null>(null)
    const stopIt = (why: Stop) =>
      Effect.gen(function*() {
        if ((yield* Ref.get(stopped)) !== null || leader === null || !alive()) return
        yield* Ref.set(stopped, why)
        yield* Effect.logInfo("stopping an adopted job's process group").pipe(Effect.annotateLogs({ pid: leader.pid, why: why._tag }))
        // It is not our child: we cannot know it is not reaped. Its group is
        // signalled only while its pid is not another process's (proc.ts:
        // signalGroupOf), checked again after the grace: what it forked is
        // killed even once it has ended itself, a group led by a later process
        // with its pid never is.
        signalGroupOf(leader, "SIGTERM")
        yield* Effect.sleep(settings.grace).pipe(Effect.zipRight(Effect.sync(() => signalGroupOf(leader, "SIGKILL"))), Effect.forkDaemon)
      })

    // Its end: its record, or its process and every spawner gone without one.
    // Who is alive is asked first: a spawner writes the record before it
    // exits, so with the spawners gone, the listing after shows the record.
    const look = Effect.gen(function*() {
      const running = alive()
      const watched = job.helpers.some(stillRuns)
      const now = yield* nodes.inventory(folder).pipe(Effect.map((i) => i.leftovers.find((l) => l.claim === job.names.claim)))
      if (now === undefined) return Option.some(Option.none<LeftoverNames>()) // settled already (by another round)
      if (now.hasRecord) return Option.some(Option.some(now))
      if (!running && !watched) return Option.some(Option.some(now))
      if (running && !watched) {
        // Its spawner died under it: nobody could record its end. No job runs
        // unobserved (as with pmjq's own spawners): it is stopped, and ends
        // as interrupted rather than run again after it finished.
        signalGroupOf(leader!, "SIGKILL")
        yield* Ref.set(stopped, { _tag: "Lost", why: "its spawner died while pmjq was away" })
        return Option.some(Option.some(now))
      }
      const asked = yield* Deferred.poll(cancel)
      if (Option.isSome(asked)) yield* stopIt({ _tag: "Cancelled", by: yield* asked.value })
      if (Option.isSome(deadline) && (yield* Clock.currentTimeMillis) >= deadline.value.at) {
        yield* stopIt({ _tag: "TimedOut", limit: Duration.format(deadline.value.limit) })
      }
      return Option.none<Option.Option<LeftoverNames>>()
    }).pipe(Effect.orElseSucceed(() => Option.none<Option.Option<LeftoverNames>>()))

    const untilEnd: Effect.Effect<Option.Option<LeftoverNames>> = Effect.gen(function*() {
      for (;;) {
        const seen = yield* look
        if (Option.isSome(seen)) return seen.value
        yield* Effect.sleep("250 millis")
      }
    })
    const ended = yield* untilEnd.pipe(
      Effect.onInterrupt(() =>
        Effect.gen(function*() {
          if (!(yield* leaving)) yield* stopIt({ _tag: "Interrupted" })
        })
      )
    )
    if (Option.isNone(ended)) return
    // Stopped by this pmjq: its spawner recorded a death by signal (or, its
    // spawner dead, nothing); the outcome is this pmjq's.
    const why = yield* Ref.get(stopped)
    if (why === null && ended.value.hasRecord) {
      // Ended on its own: its spawner's record says how. Read for the count
      // only; settling reads it again, and goes on if this read fails.
      const record = yield* nodes.gather(folder, ended.value).pipe(Effect.map((left) => left.record), Effect.orElseSucceed(() => null))
      if (record !== null) yield* finished(record)
    }
    if (why !== null) {
      const left = yield* nodes.gather(folder, ended.value)
      const now = yield* Clock.currentTimeMillis
      const exit: ProcessExit = left.record === null
        ? { exitCode: null, signal: "SIGKILL", lost: why._tag === "Lost" ? why.why : "its spawner died" }
        : { exitCode: left.record.exitCode, signal: left.record.signal as NodeJS.Signals | null }
      const ending: Ending = why._tag === "Cancelled"
        ? { _tag: "Cancelled", by: why.by, exit }
        : { _tag: "Exited", exit, interrupted: why._tag === "Interrupted", timedOut: why._tag === "TimedOut" ? why.limit : null }
      const started = leader === null ? null : startedAtMs(leader.startTicks)
      const record = left.record === null
        ? startedRecord(
          { name: left.name, node: settings.node, host: settings.host, user: "", uid: left.uid, inode: left.inode, attempt: 1, claimedAt: iso(left.claimedAt) },
          leader?.pid ?? 0,
          started ?? now,
          now,
          ending
        )
        : { ...left.record, ...judge(ending) }
      yield* finished(record)
      yield* archive.settle({
        script: left.file,
        stdout: left.stdout,
        stderr: left.stderr,
        recordFile: left.recordFile,
        record,
        owner: left.uid === null || left.gid === null ? null : { uid: left.uid, gid: left.gid }
      })
    }
    yield* settle(ended.value)
  }).pipe(Effect.catchAll((e) => Effect.logError("adopted job not settled; the next start settles it").pipe(Effect.annotateLogs({ reason: e.message }))))
