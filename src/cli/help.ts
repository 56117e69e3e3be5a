/**
 * `--help` as a Unix tool's: usage lines, then the options in two columns,
 * grouped, one line each; a screen for pmjq, less for each subcommand. The
 * options and their one-line descriptions are the parser's own (grammar.ts and
 * each option's withDescription); only the grouping and the words around them
 * are written here. The whole story is the man page's.
 */
import { CliConfig, Command, type HelpDoc } from "@effect/cli"
import type * as Span from "@effect/cli/HelpDoc/Span"
import { Option } from "effect"
import { type Flag, grammarOf } from "./grammar.js"

export interface HelpPage {
  readonly usage: ReadonlyArray<string>
  readonly about: string
  /** Titled groups of options, by long name; every option in exactly one. */
  readonly groups: ReadonlyArray<readonly [title: string, longNames: ReadonlyArray<string>]>
  /** Lines after the options. */
  readonly footer: ReadonlyArray<string>
}

const textOf = (span: Span.Span): string =>
  span._tag === "Sequence" ? textOf(span.left) + textOf(span.right) : typeof span.value === "string" ? span.value : textOf(span.value)

// What @effect/cli says of every option's parser, not of the option.
const FILLER = /^(A user-defined piece of text|An integer|A floating point number|A true or false value|One of the following:|This setting is optional|This argument must be repeated)/

/** Each option's and operand's own description, by `--long-name` or `<operand>`. */
const descriptions = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>) => {
  const found = new Map<string, string>()
  const paragraphs = (doc: HelpDoc.HelpDoc): Array<string> =>
    doc._tag === "Paragraph" ? [textOf(doc.value)] : doc._tag === "Sequence" ? [...paragraphs(doc.left), ...paragraphs(doc.right)] : []
  const walk = (doc: HelpDoc.HelpDoc): void => {
    if (doc._tag === "Sequence") return (walk(doc.left), walk(doc.right))
    if (doc._tag !== "DescriptionList") return
    for (const [term, block] of doc.definitions) {
      const key = /--[a-z][a-z-]*|<[a-z-]+>/.exec(textOf(term))?.[0]
      const text = paragraphs(block).find((p) => !FILLER.test(p))
      if (key !== undefined && text !== undefined) found.set(key, text)
    }
  }
  walk(Command.getHelp(command, CliConfig.defaultConfig))
  return found
}

// Descriptions start two columns after the longest term, at most here.
const WIDEST = 32

const termOf = (flag: Flag) => {
  const [first, ...rest] = flag.names
  const names = first!.startsWith("--") ? `    ${first}` : [first, ...rest].join(", ")
  return `  ${names}${flag.value === null ? "" : ` ${flag.value}`}`
}

const row = (column: number) => (term: string, description: string) =>
  term.length + 2 <= column ? `${term.padEnd(column)}${description}` : `${term}  ${description}`

/** Whether to colour what goes to a stream: a terminal, and no one asked for none. */
export const colourFor = (stream: { readonly isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env) =>
  stream.isTTY === true && env.NO_COLOR === undefined && env.TERM !== "dumb"

/** The help text of COMMAND laid out as PAGE; headings bold when COLOUR. */
export const helpText = <Name extends string, R, E, A>(
  command: Command.Command<Name, R, E, A>,
  page: HelpPage,
  colour: boolean,
  /** Options the entry point handles itself, with their descriptions. */
  extra: ReadonlyArray<readonly [Flag, string]> = []
): string => {
  const heading = (title: string) => (colour ? `\x1b[1m${title}\x1b[0m` : title)
  const grammar = grammarOf(command)
  const described = new Map([...descriptions(command), ...extra.map(([flag, text]) => [flag.names.at(-1)!, text] as const)])
  const byLong = new Map([...grammar.flags, ...extra.map(([flag]) => flag)].map((flag) => [flag.names[flag.names.length - 1]!, flag]))
  const grouped = page.groups.flatMap(([, longs]) => longs.flatMap((long) => Option.toArray(Option.fromNullable(byLong.get(long)))))
  const twoColumns = row(Math.min(WIDEST, Math.max(0, ...grouped.map((flag) => termOf(flag).length)) + 2))
  const lines = page.usage.map((line, i) => `${i === 0 ? heading("Usage:") : "      "} ${line}`)
  lines.push("", page.about)
  for (const [title, longNames] of page.groups) {
    lines.push("", heading(`${title}:`))
    for (const long of longNames) {
      const flag = byLong.get(long)
      if (flag !== undefined) lines.push(twoColumns(termOf(flag), described.get(long) ?? ""))
    }
  }
  if (page.footer.length > 0) lines.push("", ...page.footer)
  return lines.join("\n")
}

/** The options of COMMAND no group of PAGE names, or that a group names but COMMAND lacks: both must be empty. */
export const ungrouped = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>, page: HelpPage, extra: ReadonlyArray<readonly [Flag, string]> = []) => {
  const longs = [...grammarOf(command).flags, ...extra.map(([flag]) => flag)].map((flag) => flag.names[flag.names.length - 1]!)
  const grouped = page.groups.flatMap(([, names]) => names)
  return { missing: longs.filter((long) => !grouped.includes(long)), unknown: grouped.filter((long) => !longs.includes(long)) }
}
