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
 */
import { Clock, Context, Duration, Effect, Layer, Option, Schedule } from "effect"
import * as cp from "node:child_process"
import * as readline from "node:readline"
import { hookFired } from "./telemetry/metrics.js"

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

/** Runs a hook command with /bin/sh; its output goes to pmjq's log. */
export class HookRunner extends Context.Tag("pmjq/HookRunner")<
  HookRunner,
  { readonly run: (hook: string, command: string, env: Readonly<Record<string, string>>) => Effect.Effect<void> }
>() {
  static readonly Live = Layer.succeed(HookRunner, {
    run: (hook, command, env) =>
      Effect.async<void>((resume) => {
        const child = cp.spawn("/bin/sh", ["-c", command], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
        const lines: Array<Effect.Effect<void>> = []
        const log = (stream: "stdout" | "stderr") => (line: string) =>
          lines.push(Effect.logInfo(line).pipe(Effect.annotateLogs({ hook, stream })))
        readline.createInterface({ input: child.stdout! }).on("line", log("stdout"))
        readline.createInterface({ input: child.stderr! }).on("line", log("stderr"))
        child.once("error", (e) => resume(Effect.logError("hook could not start").pipe(Effect.annotateLogs({ hook, reason: e.message }))))
        child.once("close", (code, signal) =>
          resume(Effect.all(lines, { discard: true }).pipe(Effect.zipRight(
            code === 0
              ? Effect.logInfo("hook done").pipe(Effect.annotateLogs({ hook }))
              : Effect.logWarning("hook failed").pipe(Effect.annotateLogs({ hook, ...(signal !== null ? { signal } : { exitCode: code }) }))
          ))))
        // Interrupted (pmjq stopping): the command is stopped too.
        return Effect.sync(() => void child.kill("SIGTERM"))
      })
  })
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
