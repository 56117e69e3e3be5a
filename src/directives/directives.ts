/**
 * What a job file says it wants: `#PMJQ` lines in its leading comment block,
 * like sbatch's `#SBATCH`.
 *
 *   #!/bin/sh
 *   # build, then test
 *   #PMJQ --after=build-42 --priority=-5
 *   #PMJQ --hold
 *   make test
 *
 * The block is the lines after the `#!` line up to the first one that is
 * neither blank nor a comment. Pure: the text comes from a descriptor of the
 * file (Calls.head), at most HEAD_MAX bytes of it. A directive pmjq does not
 * understand refuses the job, naming its line: never a silent default.
 */
import { Either } from "effect"
import { isJobName } from "../record/decode.js"

export interface Directives {
  /** Runs only once each of these ended `succeeded`. */
  readonly after: ReadonlyArray<string>
  /** Runs once each of these ended, whatever their outcome. */
  readonly afterAny: ReadonlyArray<string>
  /** -20..20, higher first; above 0 only for root's (or pmjq's own user's) files. */
  readonly priority: number
  /** Stays queued until `pmjq release`. */
  readonly hold: boolean
}

export const NO_DIRECTIVES: Directives = { after: [], afterAny: [], priority: 0, hold: false }

/** The most of a job file read for its directives. */
export const HEAD_MAX = 64 * 1024
/** The longest #PMJQ line: a 1 MB one is a mistake or an attack, refused either way. */
export const LINE_MAX = 4096
/** The most dependencies one job may name: each costs a lookup a rescan while it waits. */
export const MAX_DEPENDENCIES = 100
export const PRIORITY_MIN = -20
export const PRIORITY_MAX = 20

/** Why a job's directives were refused: the line (1-based; 0: none could be read) and what is wrong with it. */
export interface DirectiveProblem {
  readonly line: number
  readonly reason: string
}

/** Line 0: the file could not be read for its directives at all. */
export const describeProblem = (p: DirectiveProblem) => (p.line === 0 ? p.reason : `#PMJQ line ${p.line}: ${p.reason}`)

const DIRECTIVE = /^#PMJQ(?:\s|$)/

type Draft = { after: Array<string>; afterAny: Array<string>; priority: number; hold: boolean }

/** One option word (with its value when given as a separate word), applied to DRAFT; a reason when wrong. */
const apply = (draft: Draft, option: string, value: () => string | undefined): string | null => {
  const eq = option.indexOf("=")
  const [key, inline] = eq < 0 ? [option, undefined] : [option.slice(0, eq), option.slice(eq + 1)]
  if (key === "--hold") {
    if (inline !== undefined) return "--hold takes no value"
    draft.hold = true
    return null
  }
  if (key !== "--after" && key !== "--after-any" && key !== "--priority") {
    return key.startsWith("-") ? `unknown directive ${key}` : `unexpected '${key}' (directives are --after, --after-any, --priority, --hold)`
  }
  const given = inline ?? value()
  if (given === undefined || given === "") return `${key} needs a value`
  if (key === "--priority") {
    const n = /^[+-]?\d{1,3}$/.test(given) ? Number(given) : NaN
    if (!(n >= PRIORITY_MIN && n <= PRIORITY_MAX)) return `--priority needs an integer from ${PRIORITY_MIN} to ${PRIORITY_MAX}, not '${given}'`
    draft.priority = n
    return null
  }
  const names = given.split(",")
  const bad = names.find((n) => !isJobName(n))
  if (bad !== undefined) return `${key}: '${bad}' is not a job's name`
  ;(key === "--after" ? draft.after : draft.afterAny).push(...names)
  return draft.after.length + draft.afterAny.length > MAX_DEPENDENCIES ? `more than ${MAX_DEPENDENCIES} dependencies` : null
}

/** The words of one #PMJQ line applied to DRAFT; a reason when one is wrong. */
const applyLine = (draft: Draft, text: string): string | null => {
  const words = text.slice("#PMJQ".length).trim().split(/\s+/).filter((w) => w !== "")
  for (let i = 0; i < words.length; i++) {
    const problem = apply(draft, words[i]!, () => (words[i + 1]?.startsWith("--") === false ? words[++i] : undefined))
    if (problem !== null) return problem
  }
  return null
}

/**
 * The directives in HEAD, the first bytes of a job file; `cut` when the file
 * goes on past them (a line running into the cut was not read whole).
 */
export const parseDirectives = (head: string, cut = false): Either.Either<Directives, DirectiveProblem> => {
  const lines = head.split("\n")
  const draft: Draft = { after: [], afterAny: [], priority: 0, hold: false }
  for (let i = lines[0]?.startsWith("#!") ? 1 : 0; i < lines.length; i++) {
    const text = lines[i]!.replace(/\r$/, "")
    if (text.trim() === "") continue
    if (!text.startsWith("#")) break
    if (!DIRECTIVE.test(text)) continue
    const whole = !(cut && i === lines.length - 1)
    if (Buffer.byteLength(text) > LINE_MAX || !whole) return Either.left({ line: i + 1, reason: `longer than ${LINE_MAX} bytes` })
    const problem = applyLine(draft, text)
    if (problem !== null) return Either.left({ line: i + 1, reason: problem })
  }
  return Either.right(draft)
}

/** Whether a job with these directives may start before anything else is known: no hold, no dependency. */
export const isPlain = (d: Directives) => !d.hold && d.after.length === 0 && d.afterAny.length === 0

/** The #PMJQ lines that say D (none for plain directives at priority 0). */
export const directiveLines = (d: Directives): ReadonlyArray<string> => [
  ...(d.after.length > 0 ? [`#PMJQ --after=${d.after.join(",")}`] : []),
  ...(d.afterAny.length > 0 ? [`#PMJQ --after-any=${d.afterAny.join(",")}`] : []),
  ...(d.priority !== 0 ? [`#PMJQ --priority=${d.priority}`] : []),
  ...(d.hold ? ["#PMJQ --hold"] : [])
]

/**
 * TEXT with its #PMJQ lines placed after its #! line (or first, when it has
 * none; then its first line must not be another #!, which the kernel would
 * no longer see).
 */
export const withDirectives = (text: string, lines: ReadonlyArray<string>) => {
  if (lines.length === 0) return text
  if (!text.startsWith("#!")) return [...lines, text].join("\n")
  const end = text.indexOf("\n")
  return end < 0 ? [text, ...lines, ""].join("\n") : [text.slice(0, end), ...lines, text.slice(end + 1)].join("\n")
}

/** TEXT without the `--hold` words of its directive block (what `pmjq release` writes back). */
export const withoutHold = (text: string) => {
  const lines = text.split("\n")
  for (let i = lines[0]?.startsWith("#!") ? 1 : 0; i < lines.length; i++) {
    const line = lines[i]!
    if (line.trim() === "") continue
    if (!line.startsWith("#")) break
    if (!DIRECTIVE.test(line)) continue
    const rest = line.slice("#PMJQ".length).split(/\s+/).filter((w) => w !== "" && w !== "--hold")
    lines[i] = rest.length === 0 ? "#" : `#PMJQ ${rest.join(" ")}`
  }
  return lines.join("\n")
}

/** What a job file's head says, as a candidate carries it (spool/Pending.ts). */
export interface Read {
  readonly directives: Directives
  /** Why the file is to be refused once claimed, when its directives are wrong. */
  readonly problem: DirectiveProblem | null
  /** The priority it asked for, when above what its owner may give (it runs at 0). */
  readonly capped: number | null
}

/** A file that says nothing: most of them, one object for all. */
export const PLAIN: Read = { directives: NO_DIRECTIVES, problem: null, capped: null }

/**
 * The directives of a file owned by UID whose first bytes are TEXT (null: not
 * read, none); PRIVILEGED says whether UID may give a priority above 0 (root,
 * or pmjq's own user, as nice(1) lets only root raise one).
 */
export const readDirectives = (text: string | null, cut: boolean, uid: number, privileged: (uid: number) => boolean): Read => {
  if (text === null || !text.includes("#PMJQ")) return PLAIN
  const parsed = parseDirectives(text, cut)
  if (Either.isLeft(parsed)) return { directives: NO_DIRECTIVES, problem: parsed.left, capped: null }
  const d = parsed.right
  return d.priority > 0 && !privileged(uid)
    ? { directives: { ...d, priority: 0 }, problem: null, capped: d.priority }
    : { directives: d, problem: null, capped: null }
}

/** Root and pmjq's own user may raise a priority. */
export const mayRaise = (uid: number) => uid === 0 || uid === process.getuid?.()
