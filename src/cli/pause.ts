/**
 * `pmjq pause [--node ID] [--reason TEXT] JOB-SPOOL` and `pmjq resume [--node ID] JOB-SPOOL`.
 *
 * A pause is a file in pmjq's own folder (spool/pauses.ts), which only root
 * or pmjq's own user can write: that is who may pause. Every node sharing the
 * spool reads it each --poll; running jobs go on, nothing new is claimed.
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import * as os from "node:os"
import * as path from "node:path"
import { describe, errnoCode, InputMissing, NotPermitted, UsageError } from "../errors/errors.js"
import { UntrustedDirectory } from "../filesystem/dirs.js"
import { removePause, writePause } from "../spool/pauses.js"
import { requireSpool } from "../spool/Spool.js"
import { threadedCalls } from "../filesystem/syscalls.js"
import { visible } from "../log/text.js"

const nodeOption = Options.text("node").pipe(
  Options.withPseudoName("ID"),
  Options.withDescription("only this node (its id, as status shows it)"),
  Options.optional
)

const denied = (verb: string) => (e: unknown) =>
  errnoCode(e) === "ENOENT"
    ? new InputMissing({ what: "pmjq's state of the spool", path: "(.pmjq: no pmjq has used this spool yet)" })
    : errnoCode(e) === "EACCES" || errnoCode(e) === "EPERM" || e instanceof UntrustedDirectory
    ? new NotPermitted({ reason: `only root or pmjq's own user may ${verb} a spool (${describe(e)})` })
    : new UsageError({ reason: `cannot ${verb}: ${describe(e)}` })

const target = (node: Option.Option<string>) => Option.match(node, { onNone: () => "the spool", onSome: (id) => `node ${visible(id)}` })

const checkNode = (node: Option.Option<string>) =>
  Option.isSome(node) && (node.value === "" || node.value.includes("/") || node.value.startsWith("."))
    ? Effect.fail(new UsageError({ reason: `not a node id: ${visible(node.value)}` }))
    : Effect.void

export const pauseCommand = Command.make(
  "pause",
  {
    node: nodeOption,
    reason: Options.text("reason").pipe(Options.withPseudoName("TEXT"), Options.withDescription("why, as status shows it"), Options.optional),
    spool: Args.text({ name: "job-spool" }).pipe(Args.withDescription("The spool to pause (required)."))
  },
  ({ node, reason, spool }) =>
    Effect.gen(function*() {
      const dir = path.resolve(spool)
      yield* requireSpool(dir)
      yield* checkNode(node)
      const by = os.userInfo().username
      yield* Effect.tryPromise({
        try: () => writePause(threadedCalls, dir, Option.getOrNull(node), { by, at: new Date().toISOString(), reason: Option.getOrNull(reason) }),
        catch: denied("pause")
      })
      yield* Console.log(`paused: ${target(node)} (nodes see it within their --poll; running jobs go on)`)
    })
).pipe(Command.withDescription("Pause the spool (or one node): nothing new starts; running jobs go on."))

export const resumeCommand = Command.make(
  "resume",
  {
    node: nodeOption,
    spool: Args.text({ name: "job-spool" }).pipe(Args.withDescription("The spool to resume (required)."))
  },
  ({ node, spool }) =>
    Effect.gen(function*() {
      const dir = path.resolve(spool)
      yield* requireSpool(dir)
      yield* checkNode(node)
      const was = yield* Effect.tryPromise({ try: () => removePause(threadedCalls, dir, Option.getOrNull(node)), catch: denied("resume") })
      yield* Console.log(was ? `resumed: ${target(node)}` : `${target(node)} was not paused`)
    })
).pipe(Command.withDescription("End a pause made by pmjq pause (of the spool, or of one node)."))

export const PAUSE = "pmjq pause [--node ID] [--reason TEXT] JOB-SPOOL"
export const RESUME = "pmjq resume [--node ID] JOB-SPOOL"
