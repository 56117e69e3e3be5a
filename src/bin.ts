#!/usr/bin/env node
/** Entry point: wires the CLI to Node and turns failures into sysexits statuses. */
import { Command, ValidationError } from "@effect/cli"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeTerminal from "@effect/platform-node/NodeTerminal"
import { Cause, Console, Effect, Exit, Layer, Option } from "effect"
import { createRequire } from "node:module"
import { daemonCommand } from "./cli/daemon.js"
import { printHelp, wantsHelp } from "./cli/help.js"
import { statusCommand } from "./cli/status.js"
import { submitCommand } from "./cli/submit.js"
import { exitStatus, isStartupError } from "./errors.js"

const { version } = createRequire(import.meta.url)("../package.json") as { version: string }

// `pmjq status|submit ...` are dispatched here rather than as @effect/cli subcommands:
// with subcommands, a mistyped daemon option is reported as "Invalid
// subcommand" instead of naming the option.
// `pmjq submit ... -- CMD ARGS` is split at `--` here: the command is the job's,
// never options of pmjq's.
const tool = process.argv[2]
const dash = process.argv.indexOf("--")
const jobCommand = tool === "submit" && dash > 0 ? process.argv.slice(dash + 1) : []
const subArgv = (argv: ReadonlyArray<string>) => [...argv.slice(0, 2), ...argv.slice(3, tool === "submit" && dash > 0 ? dash : undefined)]
const STATUS = "pmjq status [--json] JOB-SPOOL"
const SUBMIT = ["pmjq submit [--name NAME] [--wait] JOB-SPOOL FILE", "pmjq submit [--name NAME] [--wait] JOB-SPOOL -- CMD [ARGS...]"]
const DAEMON = "pmjq [-C LOAD] [-o DIR] [options] JOB-SPOOL"
const OTHERS = "pmjq --version | --completions bash|zsh|fish | --wizard"
const cli = tool === "status"
  ? (argv: ReadonlyArray<string>) =>
    wantsHelp(subArgv(argv).slice(2)) ? printHelp(statusCommand, [STATUS], version) : Command.run(statusCommand, { name: "pmjq status", version })(subArgv(argv))
  : tool === "submit"
  ? (argv: ReadonlyArray<string>) =>
    wantsHelp(subArgv(argv).slice(2))
      ? printHelp(submitCommand(jobCommand), SUBMIT, version)
      : Command.run(submitCommand(jobCommand), { name: "pmjq submit", version })(subArgv(argv))
  : (argv: ReadonlyArray<string>) =>
    wantsHelp(argv.slice(2)) ? printHelp(daemonCommand, [DAEMON, ...SUBMIT, STATUS, OTHERS], version) : Command.run(daemonCommand, { name: "pmjq", version })(argv)

// Only what @effect/cli needs, imported by subpath: the platform-node barrel
// loads HTTP, workers and more, and every megabyte of pmjq's memory makes each
// fork(2) of a job slower (about 5 ms per 100 MB measured here).
const CliEnvironment = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer, NodeTerminal.layer)

const EX_SOFTWARE = 70

const statusOf = (error: unknown) =>
  ValidationError.isValidationError(error) ? 64 : isStartupError(error) ? exitStatus(error) : EX_SOFTWARE

cli(process.argv).pipe(
  // @effect/cli has already printed its own usage errors; ours get one line.
  Effect.tapError((error) => (ValidationError.isValidationError(error) ? Effect.void : Console.error(`pmjq: ${error.message}`))),
  Effect.tapDefect((defect) => Console.error(`pmjq: internal error: ${Cause.pretty(Cause.die(defect))}`)),
  Effect.provide(CliEnvironment),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    // pmjq installs its own text/json logger (--log-format).
    disablePrettyLogger: true,
    // A stop by signal is interruption: the graceful path, so exit 0.
    teardown: (exit, onExit) => {
      if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return onExit(0)
      onExit(Option.match(Cause.failureOption<unknown>(exit.cause), { onNone: () => EX_SOFTWARE, onSome: statusOf }))
    }
  })
)
