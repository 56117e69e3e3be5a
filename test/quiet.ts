/**
 * When the daemon under test has done all a step could cause: every fiber it
 * forked waits (on the test clock, a queue, another fiber) and none ran for a
 * whole turn of the event loop. Tests wait for that, not for a number of
 * scheduler yields that happens to be enough on one machine.
 */
import { Effect, Supervisor } from "effect"

/** Counts every time a fiber of the watched effect starts, runs or ends. */
class Activity extends Supervisor.AbstractSupervisor<number> {
  private steps = 0
  readonly value = Effect.sync(() => this.steps)
  override onStart() {
    this.steps++
  }
  override onResume() {
    this.steps++
  }
  override onEnd() {
    this.steps++
  }
}

/**
 * A turn of the event loop through its timers phase, where Effect's scheduler
 * resumes fibers that yielded past its budget of microtasks (setTimeout 0);
 * immediates and I/O callbacks a fiber waits on run on the way.
 */
const turn = Effect.async<void>((resume) => {
  const timer = setTimeout(() => resume(Effect.void), 0)
  return Effect.sync(() => clearTimeout(timer))
})

/** Turns a fiber gets to run before `settle` says it never stops. */
const MAX_TURNS = 100_000

export const makeQuiet = () => {
  const activity = new Activity()
  /** Runs EFFECT with every fiber it forks watched. */
  const watch = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.supervised(effect, activity)
  /** Waits until no watched fiber ran for two whole turns of the event loop. */
  const settle = Effect.gen(function*() {
    let quietTurns = 0
    for (let turns = 0; quietTurns < 2; turns++) {
      if (turns === MAX_TURNS) return yield* Effect.dieMessage(`the daemon's fibers never came to rest in ${MAX_TURNS} turns`)
      const before = yield* activity.value
      yield* turn
      quietTurns = (yield* activity.value) === before ? quietTurns + 1 : 0
    }
  })
  return { watch, settle }
}
