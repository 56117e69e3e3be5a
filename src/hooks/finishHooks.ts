/**
 * --on-finish CMD: told of each job's end once it is written down (its record,
 * and its archive entry when it has one), pmjq runs CMD with /bin/sh -c and the
 * job in PMJQ_* variables (finishEnv). Names are data: they reach CMD only in
 * its environment, never in its text, which is the administrator's.
 *
 * A job's end only queues its hook, and never waits: the hooks run in a few
 * fibers of their own (FINISH_HOOKS_AT_ONCE), each stopped after
 * --on-finish-timeout, the rest wait in a bounded queue, and what finds it full
 * is dropped and counted. A hook's failure is logged and counted, and changes
 * nothing else. At the end of a --drain, pmjq waits for them all (each is
 * bounded by its timeout); at a stop, they get FINISH_HOOKS_GRACE, then the
 * running ones are stopped (hooks.ts: SIGTERM to the group, then SIGKILL) and
 * the queued ones dropped.
 */
import { Duration, Effect, FiberSet, Option, Queue, Ref, type Scope, Stream, SubscriptionRef } from "effect"
import * as fsp from "node:fs/promises"
import { HookRunner, hookSucceeded } from "./hooks.js"
import type { JobRecord } from "../record/record.js"
import { entryFiles } from "../spool/layout.js"
import { hookFailed, hookFired, hooksDroppedBy } from "../telemetry/metrics.js"

export interface FinishHookSettings {
  readonly spool: string
  readonly node: string
  /** --on-finish: run after each job's end; none by default. */
  readonly onFinish: Option.Option<string>
  /** --on-finish-timeout: a hook running longer is stopped and counted as failed. */
  readonly onFinishTimeout: Duration.DurationInput
}

export interface FinishLimits {
  readonly atOnce: number
  readonly queued: number
  readonly grace: Duration.DurationInput
}

export const FINISH_LIMITS: FinishLimits = {
  // A hook mostly waits on the network (a mail, a webhook): four overlap slow
  // ones, and a burst of ends (a drain ends 1,000 trivial jobs a second on two
  // cores) forks no more than four shells at a time beside the jobs.
  atOnce: 4,
  // Hooks that fall this far behind the jobs would only come later and later;
  // a thousand waiting ends take a few hundred KB.
  queued: 1000,
  // At a stop (not the end of a drain), on top of the jobs' --grace: short, as
  // systemd's TimeoutStopSec (90 s) must cover both.
  grace: "5 seconds"
}

/** A job's end, as its hook is told it: its record, and its archive entry (DIR/STAMP_NAME) if it has one. */
export interface JobEnd {
  readonly record: JobRecord
  readonly entry: string | null
}

/** Which of an entry's captured outputs are there (a job that never started has none). */
export interface Outputs {
  readonly stdout: boolean
  readonly stderr: boolean
}

/** The variables a job's hook gets, besides pmjq's environment. Empty when there is nothing to say. */
export const finishEnv = (end: JobEnd, where: { readonly spool: string; readonly node: string }, outputs: Outputs): Record<string, string> => {
  const files = end.entry === null ? null : entryFiles(end.entry)
  return {
    PMJQ_JOB: end.record.name,
    PMJQ_OUTCOME: end.record.outcome,
    PMJQ_EXIT_CODE: end.record.exitCode === null ? "" : String(end.record.exitCode),
    PMJQ_USER: end.record.user,
    PMJQ_SPOOL: where.spool,
    PMJQ_NODE: where.node,
    PMJQ_ENTRY: end.entry ?? "",
    PMJQ_RECORD: files?.record ?? "",
    PMJQ_STDOUT: files !== null && outputs.stdout ? files.stdout : "",
    PMJQ_STDERR: files !== null && outputs.stderr ? files.stderr : ""
  }
}

const present = (file: string) => Effect.promise(() => fsp.lstat(file).then(() => true, () => false))

/** Which outputs ENTRY has in its archive dir. */
export const outputsOnDisk = (entry: string | null): Effect.Effect<Outputs> =>
  entry === null
    ? Effect.succeed({ stdout: false, stderr: false })
    : Effect.all({ stdout: present(entryFiles(entry).stdout), stderr: present(entryFiles(entry).stderr) })

export interface FinishHooksService {
  /** Queues JOB's hook; never waits. */
  readonly fire: (record: JobRecord, entry: string | null) => Effect.Effect<void>
}

export interface FinishSeams {
  /** How pmjq is ending, asked when it closes: a drain waits for every hook, a stop gives them `grace`. */
  readonly ending: Effect.Effect<"drain" | "stop">
  readonly outputs?: (entry: string | null) => Effect.Effect<Outputs>
  readonly limits?: FinishLimits
}

/** The hooks of SETTINGS, until the scope closes (see the header for how a close treats them). */
export const makeFinishHooks = (settings: FinishHookSettings, seams: FinishSeams): Effect.Effect<FinishHooksService, never, HookRunner | Scope.Scope> =>
  Effect.gen(function*() {
    if (Option.isNone(settings.onFinish)) return { fire: () => Effect.void }
    const command = settings.onFinish.value
    const runner = yield* HookRunner
    const limits = seams.limits ?? FINISH_LIMITS
    const outputs = seams.outputs ?? outputsOnDisk
    const queue = yield* Queue.dropping<JobEnd>(limits.queued)
    // Queued or running: what a close waits for.
    const outstanding = yield* SubscriptionRef.make(0)
    // Dropped since the queue last had room: said once such a spell is over.
    const dropped = yield* Ref.make(0)
    const sayDropped = Effect.flatMap(Ref.getAndSet(dropped, 0), (n) =>
      n === 0 ? Effect.void : Effect.logWarning("on-finish commands dropped: their queue was full").pipe(Effect.annotateLogs({ dropped: n })))

    const runOne = (end: JobEnd) =>
      Effect.gen(function*() {
        const env = finishEnv(end, settings, yield* outputs(end.entry))
        yield* hookFired("finish")
        const result = yield* runner.run("finish", command, env).pipe(Effect.timeoutOption(settings.onFinishTimeout))
        if (Option.isNone(result)) {
          yield* Effect.logWarning("hook timed out; its process group was stopped").pipe(
            Effect.annotateLogs({ hook: "finish", timeout: Duration.format(settings.onFinishTimeout) })
          )
        }
        if (Option.isNone(result) || !hookSucceeded(result.value)) yield* hookFailed("finish")
      }).pipe(Effect.annotateLogs({ job: end.record.name }), Effect.ensuring(SubscriptionRef.update(outstanding, (n) => n - 1)))

    const workers = yield* FiberSet.make()
    for (let i = 0; i < limits.atOnce; i++) yield* FiberSet.run(workers, Effect.forever(Effect.flatMap(Queue.take(queue), runOne)))

    // Added after the FiberSet: runs before it interrupts the workers.
    yield* Effect.addFinalizer(() => close(queue, outstanding, limits, seams.ending).pipe(Effect.zipRight(sayDropped)))

    const fire = (record: JobRecord, entry: string | null) =>
      Effect.uninterruptible(Effect.gen(function*() {
        yield* SubscriptionRef.update(outstanding, (n) => n + 1)
        if (yield* Queue.offer(queue, { record, entry })) return yield* sayDropped
        yield* SubscriptionRef.update(outstanding, (n) => n - 1)
        yield* hooksDroppedBy(1)
        if ((yield* Ref.updateAndGet(dropped, (n) => n + 1)) === 1) {
          yield* Effect.logWarning("on-finish queue full: commands dropped until it has room").pipe(
            Effect.annotateLogs({ queued: limits.queued, running: limits.atOnce })
          )
        }
      }))
    return { fire }
  })

/**
 * At a close: waits for the hooks queued and running (all of them at the end of
 * a drain, `grace` at a stop), then drops what is still queued, leaving the
 * running ones to be interrupted (stopped) with their fibers.
 */
const close = (
  queue: Queue.Queue<JobEnd>,
  outstanding: SubscriptionRef.SubscriptionRef<number>,
  limits: FinishLimits,
  ending: Effect.Effect<"drain" | "stop">
) =>
  Effect.gen(function*() {
    if ((yield* SubscriptionRef.get(outstanding)) === 0) return
    const allDone = outstanding.changes.pipe(Stream.takeUntil((n) => n === 0), Stream.runDrain)
    // Finalizers run uninterruptibly: a drain's wait ends when the hooks do;
    // a stop's is made interruptible inside the timeout's own fiber (as
    // job/Runner.ts's terminate), so that the timeout can cut it short.
    const done = (yield* ending) === "drain"
      ? yield* Effect.asSome(allDone)
      : yield* allDone.pipe(Effect.interruptible, Effect.timeoutOption(limits.grace))
    if (Option.isSome(done)) return
    const left = (yield* Queue.takeAll(queue)).length
    const running = (yield* SubscriptionRef.get(outstanding)) - left
    yield* hooksDroppedBy(left)
    yield* Effect.logWarning("pmjq stopping: on-finish commands stopped, and those queued dropped").pipe(
      Effect.annotateLogs({ running, dropped: left })
    )
  })
