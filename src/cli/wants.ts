/**
 * What `pmjq submit` lets a job ask for: --after, --after-any, --priority and
 * --hold, checked here and written into the job as `#PMJQ` lines
 * (directives/directives.ts), so that a submitted job and a dropped one are the same
 * thing on disk.
 */
import { Options } from "@effect/cli"
import { Effect, Option } from "effect"
import * as fs from "node:fs"
import { isJobName } from "../record/decode.js"
import { InputMissing, NotPermitted, UsageError } from "../errors/errors.js"
import type { Directives } from "../directives/directives.js"
import { MAX_DEPENDENCIES, PRIORITY_MAX, PRIORITY_MIN } from "../directives/directives.js"
import { dependencyFacts } from "../spool/dependencyFacts.js"
import { stateDir } from "../spool/layout.js"
import { threadedCalls } from "../filesystem/syscalls.js"
import { visible } from "../log/text.js"

const names = (long: string, description: string) =>
  Options.text(long).pipe(Options.withPseudoName("NAME"), Options.withDescription(description), Options.repeated)

export const wantsOptions = {
  after: names("after", "start only once job NAME succeeded (NAME,NAME... too)"),
  afterAny: names("after-any", "start once job NAME ended, however it ended"),
  priority: Options.integer("priority").pipe(
    Options.withPseudoName("N"),
    Options.withDescription("-20..20, higher first (above 0: root only)"),
    Options.optional
  ),
  hold: Options.boolean("hold").pipe(Options.withDescription("queue it held: it waits for pmjq release"))
}

export interface Wants {
  readonly after: ReadonlyArray<string>
  readonly afterAny: ReadonlyArray<string>
  readonly priority: Option.Option<number>
  readonly hold: boolean
}

const split = (given: ReadonlyArray<string>) => given.flatMap((g) => g.split(","))

// Root, or the user pmjq runs as (the owner of the spool's .pmjq), may raise a priority.
const mayRaise = (spool: string, me: number) => {
  if (me === 0) return true
  try {
    return fs.lstatSync(stateDir(spool)).uid === me
  } catch {
    return false
  }
}

/**
 * WANTS as directives, checked: names that are jobs' names, each queued,
 * held, running or ended on SPOOL (66 otherwise: a typo would wait for ever);
 * a priority in range, above 0 only for root (77).
 */
export const checkWants = (spool: string, wants: Wants) =>
  Effect.gen(function*() {
    const after = split(wants.after)
    const afterAny = split(wants.afterAny)
    // A name a #PMJQ line could not carry (a blank or a comma splits it) is refused here, not when the job is claimed.
    const bad = [...after, ...afterAny].find((n) => !isJobName(n) || /[\s,]/.test(n))
    if (bad !== undefined) return yield* new UsageError({ reason: `not a job's name: ${visible(bad)}` })
    if (after.length + afterAny.length > MAX_DEPENDENCIES) return yield* new UsageError({ reason: `at most ${MAX_DEPENDENCIES} dependencies` })
    const priority = Option.getOrElse(wants.priority, () => 0)
    if (priority < PRIORITY_MIN || priority > PRIORITY_MAX) {
      return yield* new UsageError({ reason: `--priority needs an integer from ${PRIORITY_MIN} to ${PRIORITY_MAX}, not ${priority}` })
    }
    if (priority > 0 && !mayRaise(spool, process.getuid?.() ?? 0)) {
      return yield* new NotPermitted({ reason: "only root may give a priority above 0 (like nice)" })
    }
    const all = [...new Set([...after, ...afterAny])]
    if (all.length > 0) {
      // The caller's own jobs only: the job will be the caller's, and depends on no one else's.
      const pmjq = fs.lstatSync(stateDir(spool), { throwIfNoEntry: false })?.uid ?? 0
      const facts = yield* Effect.promise(() => dependencyFacts(threadedCalls, spool, all, process.getuid?.() ?? 0, pmjq))
      const unknown = all.find((n) => !facts.presence.has(n) && !facts.ended.has(n))
      if (unknown !== undefined) {
        return yield* new InputMissing({ what: "job", path: `${visible(unknown)} (none of yours is queued, held, running or ended on this spool)` })
      }
    }
    const directives: Directives = { after, afterAny, priority, hold: wants.hold }
    return directives
  })
