/**
 * `--help` as a Unix tool's: each option with what it takes (`DIR`,
 * `DURATION`, `N`), its default, and its description; the spool named as the
 * required argument it is. @effect/cli's own help says of every option what
 * its parser is ("A user-defined piece of text.", "This setting is
 * optional."): that is taken out of its help document here, nothing added.
 */
import { CliConfig, Command, HelpDoc } from "@effect/cli"
import * as Span from "@effect/cli/HelpDoc/Span"
import { Console } from "effect"

const FILLER = /^(A user-defined piece of text\.|An integer\.|A floating point number\.|A true or false value\.|This setting is optional\.|This setting is optional\. Defaults to: false)$/

const textOf = (span: Span.Span): string =>
  span._tag === "Sequence" ? textOf(span.left) + textOf(span.right) : typeof span.value === "string" ? span.value : textOf(span.value)

/** An option's or argument's name as a man page writes it: `-o, --archive-dir DIR`, `JOB-SPOOL`. */
const term = (span: Span.Span) =>
  Span.strong(textOf(span).replace(/^\((.*)\)$/, "$1").replace(/<([a-z-]+)>/g, (_, name: string) => name.toUpperCase()))

const unfill = (doc: HelpDoc.HelpDoc): HelpDoc.HelpDoc => {
  switch (doc._tag) {
    case "Paragraph": {
      const text = textOf(doc.value)
      if (FILLER.test(text)) return HelpDoc.empty
      const fallback = /^This setting is optional\. Defaults to: (.*)$/.exec(text)
      return fallback === null ? doc : HelpDoc.p(`Default: ${fallback[1]}.`)
    }
    case "DescriptionList":
      return HelpDoc.descriptionList(doc.definitions.map(([span, block]) => [term(span), unfill(block)] as [Span.Span, HelpDoc.HelpDoc]) as [
        [Span.Span, HelpDoc.HelpDoc],
        ...Array<[Span.Span, HelpDoc.HelpDoc]>
      ])
    case "Sequence":
      return HelpDoc.sequence(unfill(doc.left), unfill(doc.right))
    default:
      return doc
  }
}

/** Whether the command line asks for help (then nothing else is run). */
export const wantsHelp = (args: ReadonlyArray<string>) => args.some((a) => a === "--help" || a === "-h")

/** Prints COMMAND's help under a usage line. */
export const printHelp = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>, usage: ReadonlyArray<string>, version: string) =>
  Console.log(
    HelpDoc.toAnsiText(HelpDoc.blocks([
      HelpDoc.p(`pmjq ${version}`),
      HelpDoc.h1("USAGE"),
      ...usage.map((line) => HelpDoc.p(Span.code(line))),
      unfill(Command.getHelp(command, CliConfig.defaultConfig))
    ]))
  )
