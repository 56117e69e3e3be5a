/**
 * The process runner: starts a job file as its own process group and waits for it.
 *
 * A small scoped wrapper over child_process.spawn rather than @effect/platform's
 * Command: a job's output goes straight to files (no pipe through pmjq), and its
 * whole group must be killed with SIGKILL escalation, which Command does not do.
 */
import { Context, Deferred, Duration, Effect, FiberId, Layer, Scope } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import { describe, errnoCode, JobBusy, SpawnFailed } from "../errors.js"

export type Output = { readonly file: string } | "inherit"

export interface ProcessSpec {
  readonly path: string
  readonly cwd: string
  readonly env: Readonly<Record<string, string | undefined>>
  readonly stdout: Output
  readonly stderr: Output
}

export interface ProcessExit {
  readonly exitCode: number | null
  readonly signal: NodeJS.Signals | null
}

export interface RunningProcess {
  readonly pid: number
  /** Resolves when the process exits. */
  readonly exit: Effect.Effect<ProcessExit>
  /** SIGTERM to the group, then SIGKILL after `killAfter`; resolves with the exit. */
  readonly terminate: (killAfter: Duration.DurationInput) => Effect.Effect<ProcessExit>
}

export class ProcessRunner extends Context.Tag("pmjq/ProcessRunner")<
  ProcessRunner,
  {
    /**
     * Starts the process. Closing the scope while it still runs terminates its
     * group, so no child outlives the fiber that started it.
     */
    readonly spawn: (spec: ProcessSpec) => Effect.Effect<RunningProcess, JobBusy | SpawnFailed, Scope.Scope>
  }
>() {
  static readonly Live = Layer.succeed(ProcessRunner, { spawn: (spec) => spawnLive(spec) })
}

/** Default wait between SIGTERM and SIGKILL when a scope closes on a live process. */
const RELEASE_KILL_AFTER = Duration.seconds(5)

// Output files are opened exclusively; an existing one (left by a crash) is
// appended to rather than truncated, so no earlier output is ever destroyed.
const openOutput = (output: Output): number | "inherit" => {
  if (output === "inherit") return "inherit"
  try {
    return fs.openSync(output.file, "wx", 0o644)
  } catch (e) {
    if (errnoCode(e) === "EEXIST") return fs.openSync(output.file, "a")
    throw e
  }
}

const signalGroup = (pid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(-pid, signal)
  } catch {
    // ESRCH: the group is already gone, which is what we wanted.
  }
}

// Node throws some spawn errors (ETXTBSY among them) and emits others
// (ENOENT, EACCES) as an 'error' event; both paths end here.
const spawnError = (file: string, e: unknown): JobBusy | SpawnFailed => {
  const code = errnoCode(e) ?? "EUNKNOWN"
  return code === "ETXTBSY" ? new JobBusy({ path: file }) : new SpawnFailed({ path: file, code, reason: describe(e) })
}

const spawnLive = (spec: ProcessSpec) =>
  Effect.acquireRelease(
    Effect.async<RunningProcess, JobBusy | SpawnFailed>((resume) => {
      const fds: Array<number> = []
      const closeFds = () => fds.splice(0).forEach((fd) => fs.closeSync(fd))
      let child: cp.ChildProcess
      try {
        const stdout = openOutput(spec.stdout)
        if (typeof stdout === "number") fds.push(stdout)
        const stderr = openOutput(spec.stderr)
        if (typeof stderr === "number") fds.push(stderr)
        child = cp.spawn(spec.path, [], {
          cwd: spec.cwd,
          env: spec.env,
          stdio: ["ignore", stdout, stderr],
          // Its own process group: signals reach the job and everything it forked.
          detached: true
        })
      } catch (e) {
        closeFds()
        resume(Effect.fail(spawnError(spec.path, e)))
        return
      }
      const exited = Deferred.unsafeMake<ProcessExit>(FiberId.none)
      child.once("exit", (exitCode, signal) => Deferred.unsafeDone(exited, Effect.succeed({ exitCode, signal })))
      child.once("error", (e) => {
        closeFds()
        resume(Effect.fail(spawnError(spec.path, e)))
      })
      child.once("spawn", () => {
        closeFds()
        const pid = child.pid!
        const exit = Deferred.await(exited)
        const terminate = (killAfter: Duration.DurationInput) =>
          Effect.gen(function*() {
            if (yield* Deferred.isDone(exited)) return yield* exit
            signalGroup(pid, "SIGTERM")
            // This runs when the caller is being interrupted, often in a finalizer.
            // Only the wait is made interruptible, inside the race's own fiber, so the
            // timeout can cancel it; wrapping the whole timeout instead would let the
            // caller's pending interruption cut it short and skip the SIGKILL.
            const done = yield* exit.pipe(Effect.interruptible, Effect.timeoutOption(killAfter))
            if (done._tag === "Some") return done.value
            signalGroup(pid, "SIGKILL")
            return yield* exit
          })
        resume(Effect.succeed({ pid, exit, terminate }))
      })
    }),
    (process) => process.terminate(RELEASE_KILL_AFTER)
  )
