/**
 * The daemon command: `pmjq [-C cpu-limit] [-o archive-dir] job-spool`, the
 * seed's synopsis, plus the options issue #2 adds.
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { asStartedByShebang } from "../process/allocator.js"
import { verifyFileFolder } from "../filesystem/dirs.js"
import { threadedCalls } from "../filesystem/syscalls.js"
import { type DaemonSettings, launch } from "../daemon.js"
import type { Drained, DaemonEnding } from "../features/Config.js"
import { resolveId } from "../owners/Users.js"
import { CannotCreateDirectory, CannotServeMetrics, CutOff, describe, DrainFailed, errnoCode, NotPermitted, UsageError } from "../errors/errors.js"
import { logLayer } from "../log/log.js"
import { rejectedDir } from "../spool/layout.js"
import { ensureDirectory, requireSpool, requireTrustedSpool } from "../spool/Spool.js"
import { mayTakeOver, successorId } from "../spool/succession.js"
import { tracesFrom } from "../telemetry/settings.js"
import { asInteger, asNumber, check, duration, listenAddress, optionalDuration } from "./options.js"

const SYNOPSIS = "pmjq [-C cpu-limit] [-o archive-dir] job-spool"

const positiveNumber = (n: number) => Number.isFinite(n) && n > 0

// Each description is the one line --help prints (cli/help.ts); the man page
// and the README tell the rest.
export const daemonOptions = {
  // Optional here and checked in the handler, which says what is missing.
  spool: Args.text({ name: "job-spool" }).pipe(Args.withDescription("the directory to watch"), Args.optional),
  cpuLimit: Options.text("cpu-limit").pipe(
    Options.withPseudoName("LOAD"),
    Options.withAlias("C"),
    Options.withDescription("start no job while the load is LOAD or more"),
    asNumber("cpu-limit"),
    check("cpu-limit", positiveNumber, "a positive number"),
    Options.optional
  ),
  archiveDir: Options.text("archive-dir").pipe(
    Options.withPseudoName("DIR"),
    Options.withAlias("o"),
    Options.withDescription("archive each job: STAMP_NAME, .out, .err, .json"),
    Options.optional
  ),
  errorDir: Options.text("error-dir").pipe(
    Options.withPseudoName("DIR"),
    Options.withAlias("e"),
    Options.withDescription("archive the jobs that failed here instead"),
    Options.optional
  ),
  maxJobs: Options.text("max-jobs").pipe(
    Options.withPseudoName("N"),
    Options.withAlias("j"),
    Options.withDescription("run at most N at once (default: CPUs; 0: no cap)"),
    Options.withDefault(String(os.availableParallelism())),
    asInteger("max-jobs"),
    check("max-jobs", (n: number) => n >= 0, "0 or more")
  ),
  maxJobsPerUser: Options.text("max-jobs-per-user").pipe(
    Options.withPseudoName("N"),
    Options.withDescription("at most N slots a user while others wait"),
    asInteger("max-jobs-per-user"),
    check("max-jobs-per-user", (n: number) => n >= 1, "1 or more"),
    Options.optional
  ),
  poll: duration("poll", "2s", "rescan at least this often (default 2s)"),
  grace: duration("grace", "30s", "on SIGTERM, let jobs finish this long (30s)", "zero allowed"),
  idleCmd: Options.text("idle-cmd").pipe(
    Options.withPseudoName("CMD"),
    Options.withDescription("run CMD (sh -c) once idle for --idle-after"),
    Options.optional
  ),
  idleAfter: duration("idle-after", "10m", "idle time before --idle-cmd (default 10m)"),
  limitCmd: Options.text("limit-cmd").pipe(
    Options.withPseudoName("CMD"),
    Options.withDescription("run CMD once -C or -j held jobs --limit-after"),
    Options.optional
  ),
  limitAfter: duration("limit-after", "1m", "held time before --limit-cmd (default 1m)"),
  onFinish: Options.text("on-finish").pipe(
    Options.withPseudoName("CMD"),
    Options.withDescription("run CMD after each job's end (PMJQ_JOB...)"),
    Options.optional
  ),
  onFinishTimeout: duration("on-finish-timeout", "60s", "stop an --on-finish CMD after this (60s)"),
  runAsOwner: Options.boolean("run-as-owner").pipe(Options.withDescription("run each job as its file's owner (root only)")),
  allowUsers: Options.text("allow-users").pipe(
    Options.withPseudoName("USER,..."),
    Options.withDescription("run only files owned by these users"),
    Options.optional
  ),
  allowGroups: Options.text("allow-groups").pipe(
    Options.withPseudoName("GROUP,..."),
    Options.withDescription("run only files whose owner is in these groups"),
    Options.optional
  ),
  keepEnv: Options.text("keep-env").pipe(
    Options.withPseudoName("NAME,..."),
    Options.withDescription("more variables for jobs run as their owner"),
    Options.optional
  ),
  jobNproc: Options.text("job-nproc").pipe(
    Options.withPseudoName("N"),
    Options.withDescription("at most N processes for each job's user"),
    asInteger("job-nproc"),
    check("job-nproc", (n: number) => n >= 1, "1 or more"),
    Options.optional
  ),
  timeout: optionalDuration("timeout", "stop a job that runs longer (timed-out)"),
  onStop: Options.choice("on-stop", ["stop", "leave"]).pipe(
    Options.withDefault("stop" as const),
    Options.withDescription("on SIGTERM: stop jobs, or leave them to adopt")
  ),
  drain: Options.boolean("drain").pipe(Options.withDescription("run what is queued, then exit (1 if one failed)")),
  nodeId: Options.text("node-id").pipe(
    Options.withPseudoName("ID"),
    Options.withDescription("this node's name in the spool (HOST-PID)"),
    check("node-id", (id: string) => /^[^/.\s][^/\s]{0,199}$/.test(id), "a name without '/' or spaces, not starting with '.'"),
    Options.optional
  ),
  lease: duration("lease", "60s", "a node silent this long is dead (60s)"),
  spawnerIdle: duration("spawner-idle", "1m", "let a helper with no job go after this (1m)"),
  orphans: Options.choice("orphans", ["requeue", "fail"]).pipe(
    Options.withDefault("requeue" as const),
    Options.withDescription("a dead node's jobs: run them again, or fail")
  ),
  maxAttempts: Options.text("max-attempts").pipe(
    Options.withPseudoName("N"),
    Options.withDefault("3"),
    Options.withDescription("fail a job whose node died N times (3)"),
    asInteger("max-attempts"),
    check("max-attempts", (n: number) => n >= 1, "1 or more")
  ),
  metricsListen: Options.text("metrics-listen").pipe(
    Options.withPseudoName("[ADDR:]PORT"),
    Options.withDescription("serve Prometheus metrics (ADDR 127.0.0.1)"),
    listenAddress("metrics-listen"),
    Options.optional
  ),
  metricsFile: Options.text("metrics-file").pipe(
    Options.withPseudoName("FILE"),
    Options.withDescription("write Prometheus metrics to FILE every 5 s"),
    Options.optional
  ),
  logFormat: Options.choice("log-format", ["text", "json"]).pipe(
    Options.withDefault("text" as const),
    Options.withDescription("one log line per job event, text or JSON")
  )
}

type Parsed = Command.Command.ParseConfig<typeof daemonOptions>

// Writable by group or others without the sticky bit: any of them can rename
// or delete anyone's job (even replace it between submission and claim).
const warnIfOpenSpool = (spool: string) =>
  Effect.promise(() => fsp.stat(spool).then((s) => s.mode, () => 0)).pipe(
    Effect.flatMap((mode) =>
      (mode & 0o022) !== 0 && (mode & 0o1000) === 0
        ? Effect.logWarning("the spool is writable by group or others without the sticky bit: they can replace each other's jobs (chmod +t it)")
          .pipe(Effect.annotateLogs({ spool }))
        : Effect.void
    )
  )

/**
 * DIR with symlinks resolved as far as it exists (the rest, not made yet, can
 * hold no link); resolved and normalised already.
 */
const realPrefix = (dir: string): string => {
  const rest: Array<string> = []
  for (let at = dir; ; at = path.dirname(at)) {
    try {
      return path.join(fs.realpathSync(at), ...rest)
    } catch {
      if (path.dirname(at) === at) return dir
      rest.unshift(path.basename(at))
    }
  }
}

const within = (dir: string, parent: string) => {
  const relative = path.relative(parent, dir)
  return relative === "" || (relative !== ".." && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative))
}

/**
 * An archive or error dir that is the spool or inside it turns every archived
 * script into a new job (one ran 150 times in 6 s). Compared as written and
 * with symlinks resolved, so neither `..` nor a link hides it.
 */
const refuseInsideSpool = (spool: string, option: string, dir: Option.Option<string>) =>
  Option.isSome(dir) && (within(dir.value, spool) || within(realPrefix(dir.value), realPrefix(spool)))
    ? Effect.fail(new UsageError({ reason: `--${option} must not be the spool or inside it (${dir.value}): archived jobs would run again` }))
    : Effect.void

/** --keep-env's comma-separated list; a name that cannot be a variable is a usage error. */
const variableNames = (list: string) => {
  const names = list.split(",").map((name) => name.trim()).filter((name) => name !== "")
  const bad = names.find((name) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
  return bad === undefined ? Effect.succeed(names) : Effect.fail(new UsageError({ reason: `--keep-env: not a variable name: ${bad}` }))
}

/** The daemon's settings from its options; nothing is looked at on disk yet. */
const settingsFrom = (options: Parsed) =>
  Effect.gen(function*() {
    if (Option.isNone(options.spool)) {
      return yield* new UsageError({ reason: `missing job-spool; usage: ${SYNOPSIS}` })
    }
    const spool = path.resolve(options.spool.value)
    const archiveDir = Option.map(options.archiveDir, (dir) => path.resolve(dir))
    const errorDir = Option.map(options.errorDir, (dir) => path.resolve(dir))

    const node = Option.getOrElse(options.nodeId, () => `${os.hostname()}-${process.pid}`)
    const asRoot = process.getuid?.() === 0
    if (options.runAsOwner && !asRoot) {
      return yield* new NotPermitted({ reason: "--run-as-owner needs root: only root can run a job as another user" })
    }
    // Jobs run as pmjq: as root, RLIMIT_NPROC is ignored; as a user, it would
    // count pmjq's own processes. Either way it would not do what it says.
    if (Option.isSome(options.jobNproc) && !options.runAsOwner) {
      return yield* new UsageError({ reason: "--job-nproc needs --run-as-owner: it limits the processes of each job's user, and root ignores the limit" })
    }
    const keepEnv = yield* Effect.transposeMapOption(options.keepEnv, variableNames)
    const ids = (database: "passwd" | "group", option: string) => (list: string) =>
      Effect.forEach(list.split(",").filter((x) => x !== ""), (entry) =>
        Effect.flatMap(resolveId(database, entry), Option.match({
          onNone: () => Effect.fail(new UsageError({ reason: `--${option}: no such ${database === "passwd" ? "user" : "group"}: ${entry}` })),
          onSome: Effect.succeed
        })))
    const allowUsers = yield* Effect.transposeMapOption(options.allowUsers, ids("passwd", "allow-users"))
    const allowGroups = yield* Effect.transposeMapOption(options.allowGroups, ids("group", "allow-groups"))
    const settings = {
      spool,
      node,
      host: os.hostname(),
      user: os.userInfo().username,
      workdir: process.cwd(),
      archiveDir,
      errorDir,
      maxJobs: options.maxJobs,
      maxJobsPerUser: options.maxJobsPerUser,
      cpuLimit: options.cpuLimit,
      poll: options.poll,
      grace: options.grace,
      timeout: options.timeout,
      idleCmd: options.idleCmd,
      idleAfter: options.idleAfter,
      limitCmd: options.limitCmd,
      limitAfter: options.limitAfter,
      onFinish: options.onFinish,
      onFinishTimeout: options.onFinishTimeout,
      drain: options.drain,
      onStop: options.onStop,
      progress: options.drain && process.stderr.isTTY === true,
      lease: options.lease,
      spawnerIdle: options.spawnerIdle,
      orphans: options.orphans,
      maxAttempts: options.maxAttempts,
      policy: {
        asRoot,
        runAsOwner: options.runAsOwner,
        allowUsers: Option.match(allowUsers, { onNone: () => null, onSome: (xs) => new Set(xs) }),
        allowGroups: Option.match(allowGroups, { onNone: () => null, onSome: (xs) => new Set(xs) })
      },
      rejectedDir: rejectedDir(spool),
      killAfter: "5 seconds",
      busyFor: "1 minute",
      keepEnv: Option.getOrElse(keepEnv, (): ReadonlyArray<string> => []),
      jobNproc: Option.getOrNull(options.jobNproc),
      metrics: { listen: options.metricsListen, file: Option.map(options.metricsFile, (file) => path.resolve(file)) },
      traces: tracesFrom(process.env)
    } as const satisfies DaemonSettings
    return settings
  })

/**
 * An archive or error dir pmjq could not write to is refused at start, not
 * found out job by job: not permitted (77); a read-only filesystem or any
 * other failure (73).
 */
const requireWritable = (dir: string, option: string) =>
  Effect.try({
    try: () => fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK),
    catch: (e) =>
      errnoCode(e) === "EACCES" || errnoCode(e) === "EPERM"
        ? new NotPermitted({ reason: `cannot write to the ${option === "archive-dir" ? "archive" : "error"} dir ${dir}: ${describe(e)}` })
        : new CannotCreateDirectory({ path: dir, reason: errnoCode(e) === "EROFS" ? `--${option} is on a read-only filesystem` : describe(e) })
  })

/**
 * --metrics-listen and --metrics-file, tried before anything is made: a port
 * taken or a folder refused is found while the spool is as it was (the
 * exporter binds and checks again when it starts; a port taken in between
 * is still refused, only after .pmjq is made).
 */
const metricsPossible = (metrics: DaemonSettings["metrics"]) =>
  Effect.gen(function*() {
    for (const file of Option.toArray(metrics.file)) {
      yield* Effect.tryPromise({
        try: () => verifyFileFolder(threadedCalls, path.dirname(file)),
        catch: (e) => new CannotServeMetrics({ reason: `--metrics-file ${file}: ${describe(e)}` })
      })
    }
    for (const { host, port } of Option.toArray(metrics.listen)) {
      yield* Effect.async<void, CannotServeMetrics>((resume) => {
        const probe = net.createServer()
        probe.once("error", (e) => resume(Effect.fail(new CannotServeMetrics({ reason: `--metrics-listen ${host}:${port}: ${describe(e)}` }))))
        probe.listen({ host, port }, () => probe.close(() => resume(Effect.void)))
      })
    }
  })

// Every check before anything is created: a refused start leaves no trace.
const preflight = ({ archiveDir, errorDir, metrics, policy, spool }: DaemonSettings) =>
  Effect.gen(function*() {
    yield* requireSpool(spool)
    yield* refuseInsideSpool(spool, "archive-dir", archiveDir)
    yield* refuseInsideSpool(spool, "error-dir", errorDir)
    // As root, a spool a user could take over lets them replace pmjq's own
    // state: refused. Otherwise users can only swap each other's jobs.
    yield* (policy.asRoot ? requireTrustedSpool(spool) : warnIfOpenSpool(spool))
    yield* metricsPossible(metrics)
    const dirs = [[archiveDir, "archive-dir"], [errorDir, "error-dir"]] as const
    // Those there already are checked before either is made.
    for (const [dir, option] of dirs) if (Option.isSome(dir) && fs.existsSync(dir.value)) yield* requireWritable(dir.value, option)
    for (const [dir, option] of dirs) if (Option.isSome(dir)) yield* Effect.zipRight(ensureDirectory(dir.value), requireWritable(dir.value, option))
  })

/**
 * After a SIGHUP: pmjq again, as it was started (a new installed version is
 * what runs), under this node id, to adopt the jobs this one left running.
 * Node has no execve(2): the new process is started, and this one exits.
 */
const startAgain = (node: string) =>
  Effect.gen(function*() {
    const [script, ...args] = process.argv.slice(1)
    const named = args.some((a) => a === "--node-id" || a.startsWith("--node-id="))
    const child = cp.spawn(process.execPath, [...process.execArgv, script!, ...(named ? [] : ["--node-id", node]), ...args], {
      env: asStartedByShebang(),
      stdio: "inherit"
    })
    child.unref()
    yield* Effect.logInfo("restarted in place").pipe(Effect.annotateLogs({ pid: child.pid ?? "none", node }))
  })

// Without --node-id, once the spool passed its checks: the id of the run
// before on this host, when it left jobs running for its successor
// (spool/succession.ts); else HOST-PID.
const succeeding = (options: Parsed) => (settings: DaemonSettings) =>
  Option.isNone(options.nodeId)
    ? Effect.promise(() => successorId(threadedCalls, settings.spool, settings.host)).pipe(Effect.map((node) => ({ ...settings, node: node ?? settings.node })))
    : Effect.promise(() => mayTakeOver(threadedCalls, settings.spool, settings.host, settings.node)).pipe(
      Effect.filterOrFail((may) => may, () => new UsageError({ reason: `another pmjq has just taken over node ${settings.node}: two processes must not share a --node-id` })),
      Effect.as(settings)
    )

/** --drain's last line, on stderr whatever it is: `drain: 41 jobs in 12.3 s: 40 succeeded, 1 failed (see DIR)`. */
export const drainSummary = (drained: Drained, settings: Pick<DaemonSettings, "archiveDir" | "errorDir" | "spool">) => {
  const jobs = drained.succeeded + drained.failed
  const where = Option.getOrElse(Option.orElse(settings.errorDir, () => settings.archiveDir), () => `pmjq status ${settings.spool}`)
  return `drain: ${jobs} ${jobs === 1 ? "job" : "jobs"} in ${(drained.elapsedMs / 1000).toFixed(1)} s: ${drained.succeeded} succeeded, ${drained.failed} failed` +
    (drained.failed > 0 ? ` (see ${where})` : "")
}

/** What follows the daemon's own end: a restart in place, a cut-off's status, a drain's last line and status. */
const afterEnd = (ended: DaemonEnding, settings: DaemonSettings, logFormat: "text" | "json"): Effect.Effect<void, CutOff | DrainFailed> =>
  ended === "restart"
    ? startAgain(settings.node)
    : ended === "cut-off"
    ? Effect.fail(new CutOff({ spool: settings.spool }))
    : Effect.zipRight(
      // With --log-format json, stderr stays one JSON object a line.
      logFormat === "json"
        ? Effect.logInfo(drainSummary(ended, settings)).pipe(Effect.annotateLogs({ succeeded: ended.succeeded, failed: ended.failed, elapsedMs: ended.elapsedMs }))
        : Console.error(drainSummary(ended, settings)),
      ended.failed > 0 ? Effect.fail(new DrainFailed({ failed: ended.failed })) : Effect.void
    )

const run = (options: Parsed) =>
  // Heard from the start, never the default (which kills): the Restart
  // feature acts on the first once the daemon runs.
  Effect.sync(() => void process.on("SIGHUP", () => {})).pipe(
    Effect.zipRight(settingsFrom(options)),
    Effect.tap(preflight),
    Effect.flatMap(succeeding(options)),
    Effect.flatMap((settings) => Effect.flatMap(launch(settings), (ended) => afterEnd(ended, settings, options.logFormat))),
    Effect.provide(logLayer(options.logFormat))
  )

export const daemonCommand = Command.make("pmjq", daemonOptions, run).pipe(
  Command.withDescription("Run each executable file dropped into JOB-SPOOL, oldest first, once.")
)
