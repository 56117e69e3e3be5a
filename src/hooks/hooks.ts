/**
 * The seed's idle and limit commands.
 *
 *   --idle-cmd CMD --idle-after D     nothing queued or running for D: run CMD once
 *                                     (e.g. shut an idle cloud node down)
 *   --limit-cmd CMD --limit-after D   jobs waiting, held back by -C or -j for D
 *                                     without a break: run CMD once (e.g. boot more nodes)
 *
 * Each fires once per episode: again only after the state has ended and come
 * back. A sampler on a Schedule looks at the daemon every second; a command
 * runs in its own fiber, so a slow or failing one never holds up dispatch.
 * The HookRunner here also runs --on-finish's commands (hooks/finishHooks.ts).
 */
import { Clock, Context, Deferred, Duration, Effect, FiberId, Layer, Option, Schedule } from "effect"
import * as cp from "node:child_process"
import * as readline from "node:readline"
import { identify, type ProcessId, signalGroupOf } from "../process/proc.js"
import { hookFailed, hookFired } from "../telemetry/metrics.js"

export type Limit = "load" | "max-jobs"

/** What the daemon looks like at one moment. */
export interface Observed {
  readonly queued: number
  readonly running: number
  /**
   * How many jobs have been claimed or have ended so far: a job that starts and
   * ends between two looks is activity all the same.
   */
  readonly activity: number
  /** What holds queued jobs back, if anything does. */
  readonly holding: Limit | null
}

export interface HookSettings {
  readonly spool: string
  readonly node: string
  readonly idleCmd: Option.Option<string>
  readonly idleAfter: Duration.DurationInput
  readonly limitCmd: Option.Option<string>
  readonly limitAfter: Duration.DurationInput
}

/** An episode of a state (idle, held back): since when, and whether its command ran. */
export interface Episode {
  readonly since: number | null
  readonly fired: boolean
}

export const noEpisode: Episode = { since: null, fired: false }

/** One look: the next episode, and whether its command is due now. */
export const step = (episode: Episode, active: boolean, now: number, afterMs: number) => {
  if (!active) return { next: noEpisode, fire: false }
  const since = episode.since ?? now
  const fire = !episode.fired && now - since >= afterMs
  return { next: { since, fired: episode.fired || fire }, fire }
}

/** How a hook command ended: its exit, or why it could not start. */
export type HookEnd =
  | { readonly _tag: "Exited"; readonly exitCode: number | null; readonly signal: NodeJS.Signals | null }
  | { readonly _tag: "NotStarted"; readonly reason: string }

export const hookSucceeded = (end: HookEnd) => end._tag === "Exited" && end.exitCode === 0

/** A hook's process, as the runner follows it. */
interface HookProcess {
  readonly child: cp.ChildProcess | null
  /** Its process group's leader (null when it did not start). */
  readonly leader: ProcessId | null
  /** Completed once it ended and its output is closed, or it could not start. */
  readonly ended: Deferred.Deferred<HookEnd>
  /** Its output lines so far, to log (logged from a fiber, not from Node's callbacks). */
  readonly lines: Array<Effect.Effect<void>>
}

const spawnHook = (hook: string, command: string, env: Readonly<Record<string, string>>): HookProcess => {
  const ended = Deferred.unsafeMake<HookEnd>(FiberId.none)
  const lines: Array<Effect.Effect<void>> = []
  let child: cp.ChildProcess
  try {
    // Its own process group (detached), so that a stop reaches whatever it forked.
    child = cp.spawn("/bin/sh", ["-c", command], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true })
  } catch (e) {
    // Thrown, not emitted: an environment Node refuses (a NUL byte in a value).
    Deferred.unsafeDone(ended, Effect.succeed({ _tag: "NotStarted", reason: e instanceof Error ? e.message : String(e) }))
    return { child: null, leader: null, ended, lines }
  }
  const log = (stream: "stdout" | "stderr") => (line: string) => lines.push(Effect.logInfo(line).pipe(Effect.annotateLogs({ hook, stream })))
  readline.createInterface({ input: child.stdout! }).on("line", log("stdout"))
  readline.createInterface({ input: child.stderr! }).on("line", log("stderr"))
  child.once("error", (e) => Deferred.unsafeDone(ended, Effect.succeed({ _tag: "NotStarted", reason: e.message })))
  child.once("close", (exitCode, signal) => Deferred.unsafeDone(ended, Effect.succeed({ _tag: "Exited", exitCode, signal })))
  return { child, leader: child.pid === undefined ? null : identify(child.pid), ended, lines }
}

/**
 * SIGTERM to the hook's group, SIGKILL after KILL_AFTER to whatever is left
 * (a child that ignores SIGTERM, one its shell left behind). Runs as the
 * caller is interrupted (a timeout, pmjq stopping), in a finalizer.
 */
const stopHook = (hook: string, proc: HookProcess, killAfter: Duration.DurationInput) =>
  Effect.gen(function*() {
    if (proc.child === null || proc.leader === null || (yield* Deferred.isDone(proc.ended))) return
    const { child, leader } = proc
    signalGroupOf(leader, "SIGTERM")
    const exited = Effect.async<void>((resume) => {
      if (child.exitCode !== null || child.signalCode !== null) resume(Effect.void)
      else child.once("exit", () => resume(Effect.void))
    })
    // Only the waits are interruptible (as job/Runner.ts's terminate): the
    // timeout can then cut them short, the caller's pending interruption cannot.
    const termed = yield* exited.pipe(Effect.interruptible, Effect.timeoutOption(killAfter))
    signalGroupOf(leader, "SIGKILL")
    // A process that left the group (setsid) may still hold its output open:
    // not waited for beyond this.
    const closed = yield* Deferred.await(proc.ended).pipe(Effect.interruptible, Effect.timeoutOption(killAfter))
    if (Option.isNone(closed)) {
      child.stdout?.destroy()
      child.stderr?.destroy()
    }
    yield* Effect.logInfo("hook stopped").pipe(Effect.annotateLogs({ hook, signal: Option.isSome(termed) ? "SIGTERM" : "SIGKILL" }))
  })

const logEnd = (hook: string) => (end: HookEnd) =>
  end._tag === "NotStarted"
    ? Effect.logError("hook could not start").pipe(Effect.annotateLogs({ hook, reason: end.reason }))
    : end.exitCode === 0
    ? Effect.logInfo("hook done").pipe(Effect.annotateLogs({ hook }))
    : Effect.logWarning("hook failed").pipe(Effect.annotateLogs({ hook, ...(end.signal !== null ? { signal: end.signal } : { exitCode: end.exitCode ?? "none" }) }))

/**
 * Runs COMMAND with /bin/sh -c, with pmjq's environment plus ENV and stdin
 * from /dev/null; its output goes to pmjq's log, a line at a time. Interrupted,
 * it stops the command's process group (SIGTERM, SIGKILL after KILL_AFTER).
 */
export const runHook = (killAfter: Duration.DurationInput) => (hook: string, command: string, env: Readonly<Record<string, string>>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => spawnHook(hook, command, env)),
    (proc) => Deferred.await(proc.ended),
    (proc) => Effect.zipRight(stopHook(hook, proc, killAfter), Effect.suspend(() => Effect.all(proc.lines.splice(0), { discard: true })))
  ).pipe(Effect.tap(logEnd(hook)))

// A stopped hook's time between SIGTERM and SIGKILL: hooks are meant to be
// quick (a mail, a webhook), and a stop of pmjq waits for this.
const HOOK_KILL_AFTER = "3 seconds"

/** Runs a hook command (runHook); a seam for tests. */
export class HookRunner extends Context.Tag("pmjq/HookRunner")<
  HookRunner,
  { readonly run: (hook: string, command: string, env: Readonly<Record<string, string>>) => Effect.Effect<HookEnd> }
>() {
  static readonly layer = Layer.succeed(HookRunner, { run: runHook(HOOK_KILL_AFTER) })
}

/** Looks at the daemon every second, and runs the commands when due. Runs forever. */
export const watchHooks = (settings: HookSettings, observe: Effect.Effect<Observed>) =>
  Effect.gen(function*() {
    const runner = yield* HookRunner
    const idleAfter = Duration.toMillis(Duration.decode(settings.idleAfter))
    const limitAfter = Duration.toMillis(Duration.decode(settings.limitAfter))
    let idle = noEpisode
    let held = noEpisode
    let activity = 0

    const fire = (hook: "idle" | "limit", command: string, seen: Observed) =>
      Effect.logInfo("hook started").pipe(
        Effect.annotateLogs({ hook, queued: seen.queued, running: seen.running }),
        Effect.zipRight(hookFired(hook)),
        Effect.zipRight(runner.run(hook, command, {
          PMJQ_SPOOL: settings.spool,
          PMJQ_NODE: settings.node,
          PMJQ_QUEUED: String(seen.queued),
          PMJQ_RUNNING: String(seen.running),
          ...(hook === "limit" && seen.holding !== null ? { PMJQ_LIMIT: seen.holding } : {})
        })),
        Effect.flatMap((end) => (hookSucceeded(end) ? Effect.void : hookFailed(hook))),
        Effect.forkScoped
      )

    const look = Effect.gen(function*() {
      const seen = yield* observe
      const now = yield* Clock.currentTimeMillis
      // Sampled once a second, so a short job would be missed between two looks:
      // anything claimed or ended since the last look ends the idle spell, and
      // a new one starts from this look.
      if (seen.activity !== activity) idle = noEpisode
      activity = seen.activity
      const i = step(idle, seen.queued === 0 && seen.running === 0, now, idleAfter)
      const l = step(held, seen.holding !== null, now, limitAfter)
      idle = i.next
      held = l.next
      if (i.fire && Option.isSome(settings.idleCmd)) yield* fire("idle", settings.idleCmd.value, seen)
      if (l.fire && Option.isSome(settings.limitCmd)) yield* fire("limit", settings.limitCmd.value, seen)
    })

    if (Option.isNone(settings.idleCmd) && Option.isNone(settings.limitCmd)) return
    yield* look.pipe(Effect.repeat(Schedule.spaced("1 second")))
  })
