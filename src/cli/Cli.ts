/**
 * pmjq's command line: `pmjq [options] JOB-SPOOL` (the daemon), `pmjq submit`,
 * `status`, `cancel` and `retry`, each an @effect/cli command, and what a
 * failure exits with.
 *
 * The first word picks the command here rather than as @effect/cli
 * subcommands: with subcommands, a mistyped daemon option is reported as
 * "Invalid subcommand" instead of naming the option. `pmjq submit ... -- CMD
 * ARGS` is split at `--` here: the command is the job's, never options of pmjq's.
 */
import { Command, ValidationError } from "@effect/cli"
import { Cause, Console, Effect, Exit, Option } from "effect"
import { exitStatus, isStartupError } from "../errors.js"
import { CANCEL, cancelCommand } from "./cancel.js"
import { daemonCommand } from "./daemon.js"
import { printHelp, wantsHelp } from "./help.js"
import { statusCommand } from "./status.js"
import { RETRY, retryCommand } from "./retry.js"
import { submitCommand } from "./submit.js"

const STATUS = "pmjq status [--json] JOB-SPOOL"
const SUBMIT = ["pmjq submit [--name NAME] [--wait] JOB-SPOOL FILE", "pmjq submit [--name NAME] [--wait] JOB-SPOOL -- CMD [ARGS...]"]
const DAEMON = "pmjq [-C LOAD] [-o DIR] [options] JOB-SPOOL"
const OTHERS = "pmjq --version | --completions bash|zsh|fish | --wizard"

/** Runs the command ARGV (node, script, words...) names, printing one line for a failure of pmjq's. */
export const run = (argv: ReadonlyArray<string>, version: string) => {
  const [node = "node", script = "pmjq", tool, ...rest] = argv
  const dash = rest.indexOf("--")
  const sub = (words: ReadonlyArray<string>) => [node, script, ...words]
  const simple = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>, usage: string) =>
    wantsHelp(rest) ? printHelp(command, [usage], version) : Command.run(command, { name: `pmjq ${tool}`, version })(sub(rest))
  const command = tool === "status"
    ? simple(statusCommand, STATUS)
    : tool === "cancel"
    ? simple(cancelCommand, CANCEL)
    : tool === "retry"
    ? simple(retryCommand, RETRY)
    : tool === "submit"
    ? ((words: ReadonlyArray<string>, job: ReadonlyArray<string>) =>
      wantsHelp(words)
        ? printHelp(submitCommand(job), SUBMIT, version)
        : Command.run(submitCommand(job), { name: "pmjq submit", version })(sub(words)))(
        dash >= 0 ? rest.slice(0, dash) : rest,
        dash >= 0 ? rest.slice(dash + 1) : []
      )
    : wantsHelp(argv.slice(2))
    ? printHelp(daemonCommand, [DAEMON, ...SUBMIT, STATUS, CANCEL, RETRY, OTHERS], version)
    : Command.run(daemonCommand, { name: "pmjq", version })(argv)
  return command.pipe(
    // @effect/cli has already printed its own usage errors; ours get one line.
    Effect.tapError((error) => (ValidationError.isValidationError(error) ? Effect.void : Console.error(`pmjq: ${error.message}`))),
    Effect.tapDefect((defect) => Console.error(`pmjq: internal error: ${Cause.pretty(Cause.die(defect))}`))
  )
}

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
