/**
 * pmjq's command line: `pmjq [options] JOB-SPOOL` (the daemon), `pmjq submit`,
 * `status`, `cancel`, `retry` and `log`, each an @effect/cli command, and what
 * a failure exits with.
 *
 * The first word picks the command here rather than as @effect/cli
 * subcommands, and the words are checked against the command's grammar before
 * @effect/cli parses them (grammar.ts): a mistake is then named as the user
 * wrote it, in one `pmjq:` line and a pointer to --help, like a Unix tool's.
 * `pmjq submit ... -- CMD ARGS` is split at `--` here: the command is the
 * job's, never options of pmjq's.
 */
import { CliConfig, Command, HelpDoc, ValidationError } from "@effect/cli"
import * as Descriptor from "@effect/cli/CommandDescriptor"
import { Cause, Console, Effect, Exit, Logger, LogLevel, Option } from "effect"
import * as fs from "node:fs"
import { DrainFailed, exitStatus, isStartupError, UsageError } from "../errors/errors.js"
import { visible } from "../log/text.js"
import { cancelCommand } from "./cancel.js"
import { completionScript, type Shell } from "./completions.js"
import { daemonCommand } from "./daemon.js"
import { checkWords, closest, describeProblem, type Flag, type Grammar, grammarOf, without } from "./grammar.js"
import { colourFor, type HelpPage, helpText, ungrouped } from "./help.js"
import { holdCommand, releaseCommand } from "./holds.js"
import { logCommand } from "./log.js"
import { pauseCommand, resumeCommand } from "./pause.js"
import { retryCommand } from "./retry.js"
import { statusCommand } from "./status.js"
import { submitCommand } from "./submit.js"

const SUBMIT_USAGE = "pmjq submit [options] JOB-SPOOL FILE | -- CMD [ARG...]"
const STATUS_USAGE = "pmjq status [--json] [--watch] JOB-SPOOL"
const CANCEL_USAGE = "pmjq cancel [--mine] [--wait-for DURATION] JOB-SPOOL NAME..."
const RETRY_USAGE = "pmjq retry [--wait] JOB-SPOOL ENTRY..."
const LOG_USAGE = "pmjq log [-f] JOB-SPOOL NAME"
const PAUSE_USAGE = "pmjq pause [--node ID] [--reason TEXT] JOB-SPOOL"
const RESUME_USAGE = "pmjq resume [--node ID] JOB-SPOOL"

const EXIT_STATUS = [
  "Exit status: 0 done; 1 a drained job did not succeed; 64 bad usage; 66 no such",
  "spool or input; 73 cannot create; 75 try again later; 77 not permitted."
]

const DAEMON_PAGE: HelpPage = {
  usage: [
    "pmjq [options] JOB-SPOOL",
    SUBMIT_USAGE,
    STATUS_USAGE,
    CANCEL_USAGE,
    `${RETRY_USAGE}  ${LOG_USAGE}`,
    "pmjq hold | release JOB-SPOOL NAME...  pmjq pause | resume JOB-SPOOL",
    "pmjq --version | --completions bash|zsh|fish"
  ],
  about: "Run each executable file dropped into JOB-SPOOL, oldest first, once.",
  groups: [
    ["The queue", ["--archive-dir", "--error-dir", "--max-jobs", "--drain", "--timeout", "--poll", "--grace", "--log-format", "--log-level"]],
    ["The gate and hooks", ["--cpu-limit", "--limit-cmd", "--limit-after", "--idle-cmd", "--idle-after", "--on-finish", "--on-finish-timeout"]],
    ["Users and security", ["--run-as-owner", "--allow-users", "--allow-groups", "--keep-env", "--job-nproc", "--max-jobs-per-user"]],
    ["Cluster (many nodes on one spool)", ["--node-id", "--lease", "--orphans", "--max-attempts", "--on-stop", "--spawner-idle"]],
    ["Telemetry (traces: OTEL_EXPORTER_OTLP_ENDPOINT)", ["--metrics-listen", "--metrics-file"]]
  ],
  footer: [
    "Commands:",
    "  submit  queue a script or a command under a unique name",
    "  status  the queue: what waits and why, what runs where, what ended",
    "  cancel  stop queued or running jobs (your own; root: any)",
    "  retry   queue archived jobs again; log: a job's output (-f follows it)",
    "  hold    hold queued jobs, release them; pause, resume: start no new job",
    "",
    ...EXIT_STATUS,
    "See 'pmjq COMMAND --help' and man pmjq."
  ]
}

const subcommandPage = (usage: string, about: string, longNames: ReadonlyArray<string>, footer: ReadonlyArray<string>): HelpPage => ({
  usage: [usage],
  about,
  groups: longNames.length === 0 ? [] : [["Options", longNames]],
  footer: [...footer, "See man pmjq."]
})

/**
 * A subcommand: its help, its grammar, and how it runs. Made by one generic
 * function so that each keeps its own @effect/cli types inside.
 */
const tool = <Name extends string, R, E, A>(commandFor: (job: ReadonlyArray<string>) => Command.Command<Name, R, E, A>, page: HelpPage) => ({
  page,
  grammar: () => grammarOf(commandFor([])),
  help: () => helpText(commandFor([]), page, colourFor(process.stdout)),
  run: (name: string, words: ReadonlyArray<string>, job: ReadonlyArray<string>, version: string) => {
    const command = commandFor(job)
    const checked = checkWords(withFlags(grammarOf(command), [HELP]), words)
    return checked.given.some((g) => g.name === "--help")
      ? Console.log(helpText(command, page, colourFor(process.stdout)))
      : checked.problem !== null
      ? Effect.fail(new UsageError({ reason: describeProblem(checked.problem) }))
      : parseThenRun(command, name, words, version)
  },
  /** What the tests hold the page to: its text, and options it misses or names wrongly. */
  check: () => ({ text: helpText(commandFor([]), page, false), ...ungrouped(commandFor([]), page) })
})

const TOOLS = {
  submit: tool(submitCommand, subcommandPage(SUBMIT_USAGE, "Queue FILE, or the command after --, as a job under a unique name.", ["--name", "--wait", "--after", "--after-any", "--priority", "--hold"], [
    "With --wait the name goes to stderr, the job's output to stdout and stderr,",
    "and pmjq exits with the job's status: out=$(pmjq submit --wait SPOOL -- CMD).",
    "Exit status: 66 when FILE does not exist."
  ])),
  status: tool(() => statusCommand, subcommandPage(STATUS_USAGE, "Show the queue: what waits and why, what runs where, the nodes, what ended.", ["--json", "--watch"], [])),
  cancel: tool(() => cancelCommand, subcommandPage(CANCEL_USAGE, "Cancel queued or running jobs, named in full or by a unique prefix.", ["--mine", "--wait-for"], [
    "Each line says what became of a job, once it is true.",
    "Exit status: 0 all cancelled; 1 one had ended already, or no such job;",
    "64 an ambiguous prefix (the matches listed); 77 not yours; 75 no node",
    "took the request, or the job did not end, within --wait-for."
  ])),
  retry: tool(() => retryCommand, subcommandPage(RETRY_USAGE, "Queue archived jobs again, each under a fresh name, as their owner.", ["--wait"], [
    "ENTRY is an archive entry, DIR/STAMP_NAME, as status shows it.",
    "Exit status: 66 when an ENTRY does not exist."
  ])),
  log: tool(() => logCommand, subcommandPage(LOG_USAGE, "Print a job's output so far, running or archived.", ["--follow"], [
    "Its stdout to stdout, its stderr to stderr (each as written; the two are",
    "not interleaved as they happened). NAME is your own job's (root: any).",
    "Exit status: 0 found (without -f); with -f, the job's own (as submit's",
    "when it waits: 128+N killed by signal N, 143 cancelled, 1 never ran);",
    "66 no such job queued, running or archived; 77 not yours."
  ])),
  hold: tool(() => holdCommand, subcommandPage("pmjq hold JOB-SPOOL NAME...", "Hold queued jobs: no node starts them until they are released.", [], [
    "A held job is its file renamed .pmjq-held-NAME: every node sees it, and a",
    "restart keeps it. Only a job's owner (or root) may hold or release it.",
    "Exit status: 0 held; 1 a node took it first; 66 not queued; 73 a held job",
    "of that name exists; 77 not yours."
  ])),
  release: tool(() => releaseCommand, subcommandPage("pmjq release JOB-SPOOL NAME...", "Release held jobs (by pmjq hold, or by #PMJQ --hold): they may start.", [], [
    "A job held by its own #PMJQ --hold is written again without it.",
    "Exit status: 0 released; 1 not held; 66 no such job; 73 a job of that",
    "name is queued; 77 not yours."
  ])),
  pause: tool(() => pauseCommand, subcommandPage(PAUSE_USAGE, "Pause the spool, or one node: no new job starts; running jobs go on.", ["--node", "--reason"], [
    "Nodes see a pause at their next rescan, and keep it across restarts.",
    "Only root (or pmjq's own user) may pause. Exit status: 77 not permitted."
  ])),
  resume: tool(() => resumeCommand, subcommandPage(RESUME_USAGE, "End a pause of the spool, or of one node.", ["--node"], [
    "Exit status: 0 resumed, or was not paused; 77 not permitted."
  ]))
} as const

type ToolName = keyof typeof TOOLS
const isTool = (word: string | undefined): word is ToolName => word !== undefined && Object.hasOwn(TOOLS, word)
const TOOL_NAMES = Object.keys(TOOLS) as ReadonlyArray<ToolName>

const LEVELS = ["all", "trace", "debug", "info", "warning", "error", "fatal", "none"] as const

/**
 * --log-level, handled here rather than by @effect/cli (whose built-in is
 * only seen first on the line, and unknown to the parse made here).
 */
const LOG_LEVEL: Flag = { names: ["--log-level"], value: "LEVEL", choices: LEVELS }
const DAEMON_EXTRA = [[LOG_LEVEL, "debug, info (default), warning, error, none"]] as const

// Answered here, before any parse.
const HELP: Flag = { names: ["-h", "--help"], value: null, choices: [] }
const VERSION: Flag = { names: ["--version"], value: null, choices: [] }
const COMPLETIONS: Flag = { names: ["--completions"], value: "SHELL", choices: ["bash", "zsh", "fish"] }

const withFlags = (grammar: Grammar, flags: ReadonlyArray<Flag>): Grammar => ({ ...grammar, flags: [...grammar.flags, ...flags] })

/** The level --log-level asks for (info unless given). */
const logLevelOf = (given: string | null) => {
  const known = LEVELS.find((l) => l === (given ?? "info"))
  return known === undefined
    ? Effect.fail(new UsageError({ reason: `--log-level needs one of ${LEVELS.join("|")}, not ${given}` }))
    : Effect.succeed(LogLevel.fromLiteral(known === "warning" ? "Warning" : (known[0]!.toUpperCase() + known.slice(1)) as LogLevel.Literal))
}

/** The grammar of every command, for the completion scripts. */
export const grammars = () => [
  ["", withFlags(grammarOf(daemonCommand), [LOG_LEVEL])] as const,
  ...TOOL_NAMES.map((name) => [name, TOOLS[name].grammar()] as const)
]

/** The text of a ValidationError of @effect/cli's, on one line, operands named as the usage lines name them. */
const textOfValidation = (error: ValidationError.ValidationError) =>
  "error" in error
    ? HelpDoc.toAnsiText(error.error).replace(/\x1b\[[0-9;]*m/g, "").trim().split(/\s*\n\s*/).join(" ")
      .replace(/^Missing argument <([a-z-]+)>$/, (_, name: string) => `missing ${name.toUpperCase()}`)
    : "cannot parse the command line"

/**
 * Runs COMMAND on WORDS once they passed the grammar and @effect/cli's parse:
 * the parse is made first on its own so that its failure is ours to word.
 */
const parseThenRun = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>, name: string, words: ReadonlyArray<string>, version: string) =>
  Descriptor.parse(command.descriptor, [name, ...words], CliConfig.defaultConfig).pipe(
    Effect.mapError((error) => new UsageError({ reason: textOfValidation(error) })),
    Effect.zipRight(Command.run(command, { name: name === "pmjq" ? "pmjq" : `pmjq ${name}`, version })(["node", "pmjq", ...words]))
  )

const isDirectory = (file: string) => {
  try {
    return fs.statSync(file).isDirectory()
  } catch {
    return false
  }
}

/**
 * The daemon's words: one spool, and a hint when the spool looks like a
 * mistyped command. Told apart before any effect runs; what is wrong is
 * refused before @effect/cli parses.
 */
const daemon = (words: ReadonlyArray<string>, version: string) => {
  const checked = checkWords(withFlags(grammarOf(daemonCommand), [LOG_LEVEL, HELP, VERSION, COMPLETIONS]), words)
  const asked = (name: string) => checked.given.find((g) => g.name === name)
  const refuse = (reason: string) => Effect.fail(new UsageError({ reason }))
  if (asked("--help") !== undefined) return Console.log(helpText(daemonCommand, DAEMON_PAGE, colourFor(process.stdout), DAEMON_EXTRA))
  if (asked("--version") !== undefined) return Console.log(`pmjq ${version}`)
  const shell = asked("--completions")?.value
  if (shell !== undefined) {
    return shell === "bash" || shell === "zsh" || shell === "fish"
      ? Console.log(completionScript(shell satisfies Shell, grammars()).trimEnd())
      : refuse(`--completions needs one of bash|zsh|fish, not ${shell}`)
  }
  const spool = checked.operands[0]
  const like = spool !== undefined && !isDirectory(spool) ? closest(spool, TOOL_NAMES) : null
  if (like !== null) return refuse(`no such spool: ${spool} (did you mean 'pmjq ${like}'?)`)
  if (checked.problem !== null) {
    return refuse(
      checked.problem._tag === "ExtraOperands"
        ? `one JOB-SPOOL per pmjq, not ${checked.operands.length}: start a pmjq for each spool`
        : describeProblem(checked.problem)
    )
  }
  if (spool === undefined) return refuse("missing JOB-SPOOL")
  const rest = without(words, checked, "--log-level")
  return Effect.flatMap(logLevelOf(asked("--log-level")?.value ?? null), (level) =>
    parseThenRun(daemonCommand, "pmjq", rest, version).pipe(Logger.withMinimumLogLevel(level)))
}

const subcommand = (name: ToolName, rest: ReadonlyArray<string>, version: string) => {
  const dash = name === "submit" ? rest.indexOf("--") : -1
  const words = dash >= 0 ? rest.slice(0, dash) : rest
  const job = dash >= 0 ? rest.slice(dash + 1) : []
  return TOOLS[name].run(name, words, job, version)
}

/** Runs the command ARGV (node, script, words...) names, printing one line for a failure of pmjq's. */
export const run = (argv: ReadonlyArray<string>, version: string) => {
  const words = argv.slice(2)
  const [first, ...rest] = words
  const named = isTool(first) ? first : null
  type Either = ReturnType<typeof subcommand> | ReturnType<typeof daemon>
  type Any = Effect.Effect<void, Effect.Effect.Error<Either>, Effect.Effect.Context<Either>>
  // Typed at the thunk: Effect.suspend infers from one member of a union only.
  const command: Any = named !== null
    ? Effect.suspend((): Any => subcommand(named, rest, version))
    : Effect.suspend((): Any => daemon(words, version))
  const help = named === null ? "pmjq --help" : `pmjq ${named} --help`
  return command.pipe(
    Effect.tapError((error) =>
      error instanceof DrainFailed
        ? Effect.void // its summary line said it
        : ValidationError.isValidationError(error) || error instanceof UsageError
        ? Console.error(`pmjq: ${visible(ValidationError.isValidationError(error) ? textOfValidation(error) : error.message)}\nTry '${help}' for more information.`)
        : Console.error(`pmjq: ${visible(error.message)}`)
    ),
    Effect.tapDefect((defect) => Console.error(`pmjq: internal error: ${Cause.pretty(Cause.die(defect))}`))
  )
}

/** Every help page as printed to a pipe, with what its groups miss or name wrongly: the tests hold them to their size and to the parser. */
export const helpChecks = () => [
  { name: "pmjq", text: helpText(daemonCommand, DAEMON_PAGE, false, DAEMON_EXTRA), ...ungrouped(daemonCommand, DAEMON_PAGE, DAEMON_EXTRA) },
  ...TOOL_NAMES.map((name) => ({ name: `pmjq ${name}`, ...TOOLS[name].check() }))
]

const EX_SOFTWARE = 70

/**
 * The exit status for how pmjq ended: 0 when it succeeded or was stopped by a
 * signal (the graceful path), sysexits(3) for a usage or startup error, 70 for
 * anything else.
 */
export const exitCode = (exit: Exit.Exit<unknown, unknown>): number =>
  Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)
    ? 0
    : Option.match(Cause.failureOption(exit.cause), {
      onNone: () => EX_SOFTWARE,
      onSome: (error) => ValidationError.isValidationError(error) ? 64 : isStartupError(error) ? exitStatus(error) : EX_SOFTWARE
    })
