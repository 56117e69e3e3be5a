/**
 * The daemon command: `pmjq [-C cpu-limit] [-o archive-dir] job-spool`, the
 * seed's synopsis, plus the options issue #2 adds.
 */
import { Args, Command, Options } from "@effect/cli"
import { Effect, Option } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { asStartedByShebang } from "../allocator.js"
import { type DaemonSettings, launch } from "../daemon.js"
import { resolveId } from "../job/Users.js"
import { CutOff, NotPermitted, UsageError } from "../errors.js"
import { logLayer } from "../log.js"
import { rejectedDir } from "../spool/layout.js"
import { ensureDirectory, requireSpool, requireTrustedSpool } from "../spool/Spool.js"
import { mayTakeOver, successorId } from "../spool/succession.js"
import { tracesFrom } from "../telemetry/settings.js"
import { check, duration, listenAddress, optionalDuration } from "./options.js"

const SYNOPSIS = "pmjq [-C cpu-limit] [-o archive-dir] job-spool"

const positiveNumber = (n: number) => Number.isFinite(n) && n > 0

export const daemonOptions = {
  // Optional here and checked in the handler: a required root argument would
  // stop subcommands (pmjq status SPOOL) from parsing.
  spool: Args.text({ name: "job-spool" }).pipe(
    Args.withDescription("The directory to watch; jobs are the executable files written into it (required)."),
    Args.optional
  ),
  cpuLimit: Options.float("cpu-limit").pipe(
    Options.withPseudoName("LOAD"),
    Options.withAlias("C"),
    Options.withDescription("Launch no job while the 1-minute load average (estimated, see README) is at or above this."),
    check("cpu-limit", positiveNumber, "a positive number"),
    Options.optional
  ),
  archiveDir: Options.text("archive-dir").pipe(
    Options.withPseudoName("DIR"),
    Options.withAlias("o"),
    Options.withDescription("Archive each executed job here as STAMP_NAME, with .out, .err and .json (created if missing)."),
    Options.optional
  ),
  errorDir: Options.text("error-dir").pipe(
    Options.withPseudoName("DIR"),
    Options.withAlias("e"),
    Options.withDescription("Archive failed jobs here instead of the archive dir (created if missing)."),
    Options.optional
  ),
  maxJobs: Options.integer("max-jobs").pipe(
    Options.withPseudoName("N"),
    Options.withAlias("j"),
    Options.withDescription("Run at most this many jobs at once; 0 means no cap. Default: the number of CPUs."),
    Options.withDefault(os.availableParallelism()),
    check("max-jobs", (n: number) => n >= 0, "0 or more")
  ),
  maxJobsPerUser: Options.integer("max-jobs-per-user").pipe(
    Options.withPseudoName("N"),
    Options.withDescription("No user holds more than this many job slots while another user's job waits (a lone user may use every slot)."),
    check("max-jobs-per-user", (n: number) => n >= 1, "1 or more"),
    Options.optional
  ),
  poll: duration("poll", "2s", "Rescan the spool at least this often (notifications miss other machines' writes)."),
  grace: duration("grace", "30s", "On SIGTERM/SIGINT, let running jobs finish this long before killing them; also a timed-out job's time between SIGTERM and SIGKILL.", "zero allowed"),
  idleCmd: Options.text("idle-cmd").pipe(
    Options.withPseudoName("CMD"),
    Options.withDescription("Run this (with /bin/sh) once nothing has been queued or running for --idle-after; again after the next busy spell."),
    Options.optional
  ),
  idleAfter: duration("idle-after", "10m", "How long the queue must be idle before --idle-cmd runs."),
  limitCmd: Options.text("limit-cmd").pipe(
    Options.withPseudoName("CMD"),
    Options.withDescription("Run this (with /bin/sh) once jobs have waited, held back by -C or -j, for --limit-after without a break."),
    Options.optional
  ),
  limitAfter: duration("limit-after", "1m", "How long jobs must be held back before --limit-cmd runs."),
  runAsOwner: Options.boolean("run-as-owner").pipe(
    Options.withDescription("Run each job as its file's owner, with the owner's groups and HOME (root only).")
  ),
  allowUsers: Options.text("allow-users").pipe(
    Options.withPseudoName("USER,..."),
    Options.withDescription("Run only files owned by these users (comma-separated names or uids); others are rejected."),
    Options.optional
  ),
  allowGroups: Options.text("allow-groups").pipe(
    Options.withPseudoName("GROUP,..."),
    Options.withDescription("Run only files whose owner is in one of these groups (comma-separated names or gids)."),
    Options.optional
  ),
  keepEnv: Options.text("keep-env").pipe(
    Options.withPseudoName("NAME,..."),
    Options.withDescription("With --run-as-owner, jobs get these variables of pmjq's environment too (comma-separated names); besides them, only PATH, HOME, USER, LOGNAME, SHELL, the locale, TZ and PMJQ_*."),
    Options.optional
  ),
  jobNproc: Options.integer("job-nproc").pipe(
    Options.withPseudoName("N"),
    Options.withDescription("With --run-as-owner, each job's user may have at most N processes (RLIMIT_NPROC, by prlimit): one user's fork bomb cannot stop the others' jobs."),
    check("job-nproc", (n: number) => n >= 1, "1 or more"),
    Options.optional
  ),
  timeout: optionalDuration("timeout", "Stop a job that runs longer than this (SIGTERM to its process group, SIGKILL after --grace): outcome timed-out."),
  onStop: Options.choice("on-stop", ["stop", "leave"]).pipe(
    Options.withDefault("stop" as const),
    Options.withDescription("On SIGTERM/SIGINT: stop the running jobs (after --grace), or leave them running for the next pmjq with this --node-id to adopt (restarts and upgrades). Default: stop.")
  ),
  drain: Options.boolean("drain").pipe(
    Options.withDescription("Run what is queued, wait for running jobs, and exit 0 once the spool is empty.")
  ),
  nodeId: Options.text("node-id").pipe(
    Options.withPseudoName("ID"),
    Options.withDescription("This node's name in the spool (default HOST-PID); unique among the nodes sharing it."),
    check("node-id", (id: string) => /^[^/.\s][^/\s]{0,199}$/.test(id), "a name without '/' or spaces, not starting with '.'"),
    Options.optional
  ),
  lease: duration("lease", "60s", "A node on another host whose heartbeat is older than this is dead, and its jobs recovered."),
  orphans: Options.choice("orphans", ["requeue", "fail"]).pipe(
    Options.withDefault("requeue" as const),
    Options.withDescription("Jobs running on a node that died: queue them again (at-least-once), or fail them as interrupted. Default: requeue.")
  ),
  maxAttempts: Options.integer("max-attempts").pipe(
    Options.withPseudoName("N"),
    Options.withDefault(3),
    Options.withDescription("A job whose node died under it this many times goes to the error dir as interrupted. Default: 3."),
    check("max-attempts", (n: number) => n >= 1, "1 or more")
  ),
  metricsListen: Options.text("metrics-listen").pipe(
    Options.withPseudoName("[ADDR:]PORT"),
    Options.withDescription("Serve Prometheus metrics at http://ADDR:PORT/metrics (ADDR defaults to 127.0.0.1: give 0.0.0.0 to be scraped from other hosts)."),
    listenAddress("metrics-listen"),
    Options.optional
  ),
  metricsFile: Options.text("metrics-file").pipe(
    Options.withPseudoName("FILE"),
    Options.withDescription("Write Prometheus metrics to FILE every 5 s, atomically (for node_exporter's textfile collector: a name ending in .prom)."),
    Options.optional
  ),
  logFormat: Options.choice("log-format", ["text", "json"]).pipe(
    Options.withDefault("text" as const),
    Options.withDescription("One log line per job event on stderr, as text or JSON. Default: text.")
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
      drain: options.drain,
      onStop: options.onStop,
      progress: options.drain && process.stderr.isTTY === true,
      lease: options.lease,
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

// Every check before anything is created: a refused start leaves no trace.
const preflight = ({ archiveDir, errorDir, policy, spool }: DaemonSettings) =>
  Effect.gen(function*() {
    yield* requireSpool(spool)
    yield* refuseInsideSpool(spool, "archive-dir", archiveDir)
    yield* refuseInsideSpool(spool, "error-dir", errorDir)
    // As root, a spool a user could take over lets them replace pmjq's own
    // state: refused. Otherwise users can only swap each other's jobs.
    yield* (policy.asRoot ? requireTrustedSpool(spool) : warnIfOpenSpool(spool))
    yield* Effect.forEach([archiveDir, errorDir], Option.match({ onNone: () => Effect.void, onSome: ensureDirectory }))
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
    ? Effect.succeed({ ...settings, node: successorId(settings.spool, settings.host) ?? settings.node })
    : mayTakeOver(settings.spool, settings.host, settings.node)
    ? Effect.succeed(settings)
    : Effect.fail(new UsageError({ reason: `another pmjq has just taken over node ${settings.node}: two processes must not share a --node-id` }))

const run = (options: Parsed) =>
  // Heard from the start, never the default (which kills): the Restart
  // feature acts on the first once the daemon runs.
  Effect.sync(() => void process.on("SIGHUP", () => {})).pipe(
    Effect.zipRight(settingsFrom(options)),
    Effect.tap(preflight),
    Effect.flatMap(succeeding(options)),
    Effect.flatMap((settings) =>
      Effect.flatMap(launch(settings), (ended) =>
        ended === "restart" ? startAgain(settings.node) : ended === "cut-off" ? Effect.fail(new CutOff({ spool: settings.spool })) : Effect.void)
    ),
    Effect.provide(logLayer(options.logFormat))
  )

export const daemonCommand = Command.make("pmjq", daemonOptions, run).pipe(
  Command.withDescription("Watch a job spool and run the executable files that appear in it.")
)
