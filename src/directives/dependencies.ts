/**
 * Whether a job's dependencies (`--after`, `--after-any`: directives/directives.ts)
 * let it run, from facts gathered in the spool (spool/dependencyFacts.ts).
 * Pure: the same facts give the same verdict on every node.
 *
 * A dependency named NAME is, in this order: a job named NAME queued, held or
 * running (its run counts, whatever an older one of that name did); else the
 * last job named NAME to end (its ended note); else not known yet (waited for,
 * as a job dropped later may take the name).
 */
import type { EndedNote } from "../record/decode.js"
import type { Directives } from "./directives.js"

export type Presence = "queued" | "held" | "running"

export interface DependencyFacts {
  readonly presence: ReadonlyMap<string, Presence>
  readonly ended: ReadonlyMap<string, EndedNote>
}

export type Verdict =
  | { readonly _tag: "Ready" }
  /** REASON: what it waits for, as `pmjq status` shows it. */
  | { readonly _tag: "Waiting"; readonly reason: string }
  /** REASON: which job ended how, for its record. */
  | { readonly _tag: "Failed"; readonly reason: string }

export const READY: Verdict = { _tag: "Ready" }

/** Every name D depends on, once each. */
export const dependencyNames = (d: Directives): ReadonlyArray<string> => [...new Set([...d.after, ...d.afterAny])]

/** What D's dependencies say now. A failed one decides at once; else the first still waited for is named. */
export const judgeDependencies = (d: Directives, facts: DependencyFacts): Verdict => {
  let waiting: string | null = null
  const look = (name: string, mustSucceed: boolean): string | null => {
    const present = facts.presence.get(name)
    if (present !== undefined) {
      waiting ??= `after ${name} (${present})`
      return null
    }
    const note = facts.ended.get(name)
    if (note === undefined) {
      waiting ??= `after ${name} (no such job yet)`
      return null
    }
    return mustSucceed && note.outcome !== "succeeded" ? `${name} ended ${note.outcome}` : null
  }
  for (const name of d.after) {
    const failed = look(name, true)
    if (failed !== null) return { _tag: "Failed", reason: `not run: ${failed}` }
  }
  for (const name of d.afterAny) look(name, false)
  return waiting === null ? READY : { _tag: "Waiting", reason: waiting }
}

/**
 * The jobs among WAITING (name → what it waits for) whose dependencies loop
 * back to them, each with the loop as its reason ("dependency loop: a → b →
 * a"): none of them could ever run. Iterative, so a chain of 100,000 costs no
 * stack.
 */
export const loopsAmong = (waiting: ReadonlyMap<string, Directives>): Map<string, string> => {
  const found = new Map<string, string>()
  const state = new Map<string, "open" | "done">()
  const edges = (name: string) => dependencyNames(waiting.get(name)!).filter((dep) => waiting.has(dep))
  for (const start of waiting.keys()) {
    if (state.has(start)) continue
    const path: Array<{ readonly name: string; readonly next: ReadonlyArray<string>; i: number }> = []
    const enter = (name: string) => {
      state.set(name, "open")
      path.push({ name, next: edges(name), i: 0 })
    }
    enter(start)
    while (path.length > 0) {
      const top = path[path.length - 1]!
      if (top.i === top.next.length) {
        state.set(top.name, "done")
        path.pop()
        continue
      }
      const dep = top.next[top.i++]!
      if (state.get(dep) === "open") {
        const cycle = path.slice(path.findIndex((p) => p.name === dep)).map((p) => p.name)
        const reason = `not run: dependency loop: ${[...cycle, dep].join(" → ")}`
        for (const name of cycle) if (!found.has(name)) found.set(name, reason)
      } else if (!state.has(dep)) enter(dep)
    }
  }
  return found
}
