/**
 * What a command accepts, read off its @effect/cli definition
 * (`Command.getUsage`): its options, whether each takes a value, and its
 * operands. The one source for the check of a command line's words, the help
 * and the shell completions, so none of them can name an option the parser
 * does not know.
 *
 * The words are checked here before @effect/cli parses them because its
 * parser, given a word it does not know, blames another (`pmjq --bogus SPOOL`
 * said "Received unknown argument: 'SPOOL'").
 */
import { Command, type Usage } from "@effect/cli"
import { Option } from "effect"

export interface Flag {
  /** Short name first when there is one: `-o`, `--archive-dir`. */
  readonly names: ReadonlyArray<string>
  /** What it takes (`DIR`, `N`), null for a switch. */
  readonly value: string | null
  /** The values a choice accepts (`stop`, `leave`), else empty. */
  readonly choices: ReadonlyArray<string>
}

export interface Operand {
  /** As usage lines write it: `JOB-SPOOL`. */
  readonly name: string
  readonly optional: boolean
  readonly repeated: boolean
}

export interface Grammar {
  readonly flags: ReadonlyArray<Flag>
  readonly operands: ReadonlyArray<Operand>
}

const isFlagName = (name: string) => name.startsWith("-")

export const grammarOf = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>): Grammar => {
  const flags: Array<Flag> = []
  const operands: Array<Operand> = []
  const walk = (usage: Usage.Usage, optional: boolean, repeated: boolean): void => {
    switch (usage._tag) {
      case "Concat":
      case "Alternation":
        walk(usage.left, optional, repeated)
        return walk(usage.right, optional, repeated)
      case "Optional":
        return walk(usage.usage, true, repeated)
      case "Repeated":
        // Zero or more here: Usage tells `Args.repeated` and `Args.atLeast(1)`
        // apart nowhere, so the parser itself says when one is missing.
        return walk(usage.usage, true, true)
      case "Named": {
        const [first] = usage.names
        if (first === undefined) return
        if (isFlagName(first)) {
          const value = Option.getOrNull(usage.acceptedValues)
          const choices = value !== null && value.includes(" | ") ? value.split(" | ") : []
          flags.push({ names: [...usage.names].sort((a, b) => a.length - b.length), value: choices.length > 0 ? choices.join("|") : value, choices })
        } else if (first.startsWith("<")) {
          operands.push({ name: first.slice(1, -1).toUpperCase(), optional, repeated })
        }
        // else: the command's own name.
        return
      }
      default:
        return
    }
  }
  walk(Command.getUsage(command), false, false)
  return { flags, operands }
}

/** What is wrong with a command line's words, before any value is parsed. */
export type Problem =
  | { readonly _tag: "UnknownOption"; readonly word: string; readonly like: string | null }
  | { readonly _tag: "NoValue"; readonly flag: string; readonly value: string }
  | { readonly _tag: "ValueGiven"; readonly flag: string }
  | { readonly _tag: "MissingOperand"; readonly operand: string }
  | { readonly _tag: "ExtraOperands"; readonly operands: ReadonlyArray<string> }

/** Edit distance, for "did you mean": short words only, so quadratic is fine. */
export const distance = (a: string, b: string): number => {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    row = next
  }
  return row[b.length]!
}

/** The one of CANDIDATES WORD was most likely meant to be, if any is close. */
export const closest = (word: string, candidates: ReadonlyArray<string>): string | null => {
  const ranked = candidates
    .map((candidate) => ({ candidate, d: distance(word, candidate) }))
    .filter(({ candidate, d }) => d <= Math.max(1, Math.min(2, Math.floor(candidate.length / 3))))
    .sort((a, b) => a.d - b.d)
  return ranked[0]?.candidate ?? null
}

// A word starting with '-' is an option unless it is a number (-C takes a
// load; a negative one is refused by its own check, with its own message).
const looksLikeOption = (word: string) => word.length > 1 && word.startsWith("-") && !/^-\d/.test(word)

export interface Given {
  readonly name: string
  readonly value: string | null
  /** The index of the option's word, and how many words it takes (2 with a separate value). */
  readonly at: number
  readonly width: 1 | 2
}

/** What the words of a command line are, as the grammar tells them apart. */
export interface Checked {
  /** The words that are neither options nor their values, in order. */
  readonly operands: ReadonlyArray<string>
  /** The options given (by long name), each with its value (null for a switch) and where it is in the words. */
  readonly given: ReadonlyArray<Given>
  /** The first thing wrong, or null. */
  readonly problem: Problem | null
}

/**
 * Checks WORDS against GRAMMAR. A `--` ends the options: what follows is
 * operands only (a job named `-x` can be named). Words are told apart as the
 * parser will: `--idle-cmd --version` is an option and its value, never a
 * request for the version.
 */
export const checkWords = (grammar: Grammar, words: ReadonlyArray<string>): Checked => {
  const byName = new Map(grammar.flags.flatMap((flag) => flag.names.map((name) => [name, flag] as const)))
  const operands: Array<string> = []
  const given: Array<Given> = []
  const done = (problem: Problem | null): Checked => ({ operands, given, problem })
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!
    if (word === "--") {
      operands.push(...words.slice(i + 1))
      break
    }
    if (!looksLikeOption(word)) {
      operands.push(word)
      continue
    }
    const equals = word.startsWith("--") ? word.indexOf("=") : -1
    const name = equals > 0 ? word.slice(0, equals) : word
    const flag = byName.get(name)
    if (flag === undefined) return done({ _tag: "UnknownOption", word: name, like: closest(name, [...byName.keys()].filter((n) => n.startsWith("--"))) })
    if (flag.value === null) {
      if (equals > 0) return done({ _tag: "ValueGiven", flag: name })
      given.push({ name: flag.names.at(-1)!, value: null, at: i, width: 1 })
      continue
    }
    if (equals > 0) {
      given.push({ name: flag.names.at(-1)!, value: word.slice(equals + 1), at: i, width: 1 })
      continue
    }
    const next = words[i + 1]
    if (next === undefined || byName.has(next.split("=")[0]!)) return done({ _tag: "NoValue", flag: name, value: flag.value })
    given.push({ name: flag.names.at(-1)!, value: next, at: i, width: 2 })
    i++
  }
  const required = grammar.operands.filter((o) => !o.optional)
  if (operands.length < required.length) return done({ _tag: "MissingOperand", operand: required[operands.length]!.name })
  if (!grammar.operands.some((o) => o.repeated) && operands.length > grammar.operands.length) {
    return done({ _tag: "ExtraOperands", operands: operands.slice(grammar.operands.length) })
  }
  return done(null)
}

const article = (value: string) =>
  (value.length === 1 ? /^[AEFHILMNORSX]/ : /^[AEIOU]/).test(value) ? `an ${value}` : `a ${value}`

/** WORDS without the options named NAME (and their values). */
export const without = (words: ReadonlyArray<string>, checked: Checked, name: string) => {
  const dropped = new Set(checked.given.filter((g) => g.name === name).flatMap((g) => (g.width === 2 ? [g.at, g.at + 1] : [g.at])))
  return words.filter((_, i) => !dropped.has(i))
}

/** One line saying what is wrong, without the `pmjq:` it is printed after. */
export const describeProblem = (problem: Problem): string => {
  switch (problem._tag) {
    case "UnknownOption":
      return `unknown option ${problem.word}${problem.like === null ? "" : ` (did you mean ${problem.like}?)`}`
    case "NoValue":
      return problem.value.includes("|") ? `${problem.flag} needs one of ${problem.value}` : `${problem.flag} needs ${article(problem.value)}`
    case "ValueGiven":
      return `${problem.flag} takes no value`
    case "MissingOperand":
      return `missing ${problem.operand}`
    case "ExtraOperands":
      return `unexpected ${problem.operands.length === 1 ? "word" : "words"}: ${problem.operands.join(" ")}`
  }
}
