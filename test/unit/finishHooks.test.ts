/** --on-finish: the variables a hook gets, its limits (at once, queued, timeout), its failures, its close; the live runner; recovery's ends. */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, type Duration, Effect, Exit, Fiber, HashMap, Layer, Logger, Metric, Option, Ref, Scope, TestClock } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { FINISH_LIMITS, finishEnv, type FinishHookSettings, type FinishLimits, makeFinishHooks } from "../../src/hooks/finishHooks.js"
import { type HookEnd, HookRunner, runHook } from "../../src/hooks/hooks.js"
import { Archive } from "../../src/job/Archive.js"
import { isAlive } from "../../src/process/proc.js"
import type { JobRecord } from "../../src/record/record.js"
import { makeRecovery } from "../../src/recovery/recovery.js"
import { Nodes } from "../../src/spool/Nodes.js"
import { Spool } from "../../src/spool/Spool.js"
import { Syscalls } from "../../src/filesystem/syscalls.js"
import { hooksDropped, hooksFailed, hooksFired } from "../../src/telemetry/metrics.js"

const HOSTILE = `it's a "job" $(touch pwned) \`id\` ; $HOME`

const record = (name: string, over: Partial<JobRecord> = {}): JobRecord => ({
  name, node: "n1", host: "h", pid: 42, user: "ann lee", uid: 1000, inode: 7, attempt: 1,
  claimedAt: "2026-01-02T03:04:05.000Z", startedAt: "2026-01-02T03:04:05.100Z", endedAt: "2026-01-02T03:04:06.000Z",
  durationMs: 900, outcome: "succeeded", exitCode: 0, signal: null, reason: null, ...over
})

const COMMAND = `printf '%s\\n' "$PMJQ_JOB" >> /tmp/hooks.log`

const settings = (over: { readonly onFinishTimeout?: Duration.DurationInput } = {}): FinishHookSettings => ({
  spool: "/srv/spool",
  node: "n1",
  onFinish: Option.some(COMMAND),
  onFinishTimeout: over.onFinishTimeout ?? "60 seconds"
})

/** A counter's value now (metrics are global: tests compare before and after). */
const count = (metric: typeof hooksFired) => Effect.map(Metric.value(Metric.tagged(metric, "hook", "finish")), (s) => s.count)

/** Log lines as `LEVEL message key=value...`. */
const capture = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    const text = Array.isArray(message) ? message.join(" ") : String(message)
    lines.push([logLevel.label, text, ...HashMap.toEntries(annotations).map(([k, v]) => `${k}=${String(v)}`)].join(" "))
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

interface Call {
  readonly command: string
  readonly env: Readonly<Record<string, string>>
  readonly release: Deferred.Deferred<HookEnd>
}

/**
 * A runner whose commands run until the test releases them (with an end),
 * remembering each call, how many ran at once at most, and which were
 * interrupted (stopped).
 */
const heldRunner = Effect.gen(function*() {
  const calls: Array<Call> = []
  const interrupted: Array<string> = []
  const running = yield* Ref.make(0)
  const most = yield* Ref.make(0)
  const service = HookRunner.of({
    run: (_hook, command, env) =>
      Effect.gen(function*() {
        const release = yield* Deferred.make<HookEnd>()
        calls.push({ command, env, release })
        const now = yield* Ref.updateAndGet(running, (n) => n + 1)
        yield* Ref.update(most, (m) => Math.max(m, now))
        return yield* Deferred.await(release).pipe(
          Effect.onInterrupt(() => Effect.sync(() => void interrupted.push(env.PMJQ_JOB!))),
          Effect.ensuring(Ref.update(running, (n) => n - 1))
        )
      })
  })
  const ok: HookEnd = { _tag: "Exited", exitCode: 0, signal: null }
  const releaseAll = (end: HookEnd = ok) => Effect.forEach(calls, (c) => Deferred.succeed(c.release, end), { discard: true })
  return { calls, interrupted, most, layer: Layer.succeed(HookRunner, service), releaseAll }
})

/** Lets the hooks' fibers run until they wait again. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

const noOutputs = () => Effect.succeed({ stdout: false, stderr: false })

/** Hooks in a scope of their own, closed as ENDING says; the test drives them. */
const open = (limits: FinishLimits, ending: "drain" | "stop" = "stop", over: { readonly onFinishTimeout?: Duration.DurationInput } = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const hooks = yield* makeFinishHooks(settings(over), { ending: Effect.succeed(ending), outputs: noOutputs, limits }).pipe(Scope.extend(scope))
    return { hooks, close: Scope.close(scope, Exit.void) }
  })

describe("the variables a finish hook gets", () => {
  it("carry the job as data, whatever its name holds; empty where there is nothing to say", () => {
    const archived = finishEnv(
      { record: record(HOSTILE, { outcome: "failed", exitCode: 3 }), entry: `/srv/done/20260102T030406.000Z_${HOSTILE}` },
      { spool: "/srv/spool", node: "n1" },
      { stdout: true, stderr: false }
    )
    expect(archived).toEqual({
      PMJQ_JOB: HOSTILE,
      PMJQ_OUTCOME: "failed",
      PMJQ_EXIT_CODE: "3",
      PMJQ_USER: "ann lee",
      PMJQ_SPOOL: "/srv/spool",
      PMJQ_NODE: "n1",
      PMJQ_ENTRY: `/srv/done/20260102T030406.000Z_${HOSTILE}`,
      PMJQ_RECORD: `/srv/done/20260102T030406.000Z_${HOSTILE}.json`,
      PMJQ_STDOUT: `/srv/done/20260102T030406.000Z_${HOSTILE}.out`,
      PMJQ_STDERR: ""
    })
    const deleted = finishEnv({ record: record("x", { outcome: "timed-out", exitCode: null, signal: "SIGTERM" }), entry: null }, { spool: "/s", node: "n" }, {
      stdout: true,
      stderr: true
    })
    expect(deleted).toMatchObject({ PMJQ_OUTCOME: "timed-out", PMJQ_EXIT_CODE: "", PMJQ_ENTRY: "", PMJQ_RECORD: "", PMJQ_STDOUT: "", PMJQ_STDERR: "" })
  })

  it.effect("reach the runner as its environment, under the administrator's command unchanged", () =>
    Effect.gen(function*() {
      const runner = yield* heldRunner
      const { close, hooks } = yield* open(FINISH_LIMITS).pipe(Effect.provide(runner.layer))
      yield* hooks.fire(record(HOSTILE), "/srv/done/E")
      yield* settle
      expect(runner.calls.map((c) => c.command)).toEqual([COMMAND])
      expect(runner.calls[0]!.env).toMatchObject({ PMJQ_JOB: HOSTILE, PMJQ_ENTRY: "/srv/done/E", PMJQ_RECORD: "/srv/done/E.json" })
      yield* runner.releaseAll()
      yield* close
    }))

  it.live("given to /bin/sh, stay data: a name with quotes and $(...) is printed, never run", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-finish-"))
      const out = path.join(dir, "out")
      const env = finishEnv({ record: record(HOSTILE), entry: null }, { spool: dir, node: "n1" }, { stdout: false, stderr: false })
      const end = yield* runHook("1 second")("finish", `cd "$PMJQ_SPOOL" && printf '%s|%s' "$PMJQ_JOB" "$PMJQ_USER" > ${out}`, env)
      expect(end).toEqual({ _tag: "Exited", exitCode: 0, signal: null })
      expect(fs.readFileSync(out, "utf8")).toBe(`${HOSTILE}|ann lee`)
      expect(fs.existsSync(path.join(dir, "pwned"))).toBe(false)
      fs.rmSync(dir, { recursive: true })
    }))
})

describe("finish hooks at once, queued, dropped", () => {
  it.effect("run at most `atOnce` at a time; the others wait their turn and all run", () =>
    Effect.gen(function*() {
      const runner = yield* heldRunner
      const { close, hooks } = yield* open({ ...FINISH_LIMITS, atOnce: 2 }).pipe(Effect.provide(runner.layer))
      for (let i = 0; i < 7; i++) yield* hooks.fire(record(`j${i}`), null)
      yield* settle
      expect(runner.calls.length).toBe(2)
      // Released a batch at a time: two more start each time, never more.
      for (let batch = 0; batch < 4; batch++) {
        yield* runner.releaseAll()
        yield* settle
      }
      expect(runner.calls.map((c) => c.env.PMJQ_JOB)).toEqual(["j0", "j1", "j2", "j3", "j4", "j5", "j6"])
      expect(yield* Ref.get(runner.most)).toBe(2)
      yield* close
    }))

  it.effect("beyond the queue's bound, are dropped without waiting: counted, and said once per spell with how many", () =>
    Effect.gen(function*() {
      const runner = yield* heldRunner
      const log = capture()
      const before = yield* count(hooksDropped)
      const { close, hooks } = yield* open({ ...FINISH_LIMITS, atOnce: 1, queued: 2 }).pipe(Effect.provide(runner.layer))
      yield* hooks.fire(record("running"), null)
      yield* settle
      // One runs, two wait, three find the queue full: fire returns at once all the same.
      for (const name of ["q1", "q2", "d1", "d2", "d3"]) yield* hooks.fire(record(name), null).pipe(Effect.provide(log.layer))
      expect((yield* count(hooksDropped)) - before).toBe(3)
      expect(log.lines.filter((l) => l.includes("dropped"))).toEqual([expect.stringMatching(/^WARN on-finish queue full: commands dropped until it has room (?=.*queued=2)(?=.*running=1)/)])
      // Room again: the next end is queued, and the spell's count said.
      yield* runner.releaseAll()
      yield* settle
      yield* hooks.fire(record("later"), null).pipe(Effect.provide(log.layer))
      expect(log.lines.filter((l) => l.includes("dropped"))).toHaveLength(2)
      expect(log.lines[1]).toMatch(/^WARN on-finish commands dropped: their queue was full dropped=3$/)
      for (let i = 0; i < 4; i++) {
        yield* runner.releaseAll()
        yield* settle
      }
      expect(runner.calls.map((c) => c.env.PMJQ_JOB)).toEqual(["running", "q1", "q2", "later"])
      yield* close
    }))
})

describe("a finish hook that fails or runs too long", () => {
  it.effect("is stopped after --on-finish-timeout, logged with its job, counted as failed; the next one runs", () =>
    Effect.gen(function*() {
      const runner = yield* heldRunner
      const log = capture()
      const failed = yield* count(hooksFailed)
      const { close, hooks } = yield* open({ ...FINISH_LIMITS, atOnce: 1 }, "stop", { onFinishTimeout: "10 seconds" }).pipe(
        Effect.provide(Layer.merge(runner.layer, log.layer))
      )
      yield* hooks.fire(record("slow"), null)
      yield* hooks.fire(record("next"), null)
      yield* settle
      yield* TestClock.adjust("9 seconds")
      expect(runner.interrupted).toEqual([])
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(runner.interrupted).toEqual(["slow"])
      expect(log.lines).toContainEqual(expect.stringMatching(/^WARN hook timed out; its process group was stopped (?=.*hook=finish)(?=.*timeout=10s)(?=.*job=slow)/))
      expect((yield* count(hooksFailed)) - failed).toBe(1)
      expect(runner.calls.map((c) => c.env.PMJQ_JOB)).toEqual(["slow", "next"])
      yield* runner.releaseAll()
      yield* close
    }))

  it.effect("exiting non-zero: counted as failed, and fire went on as if nothing happened", () =>
    Effect.gen(function*() {
      const runner = yield* heldRunner
      const failed = yield* count(hooksFailed)
      const fired = yield* count(hooksFired)
      const { close, hooks } = yield* open(FINISH_LIMITS).pipe(Effect.provide(runner.layer))
      const exit = yield* Effect.exit(hooks.fire(record("j"), "/srv/done/E"))
      expect(Exit.isSuccess(exit)).toBe(true)
      yield* settle
      yield* runner.releaseAll({ _tag: "Exited", exitCode: 3, signal: null })
      yield* settle
      expect((yield* count(hooksFailed)) - failed).toBe(1)
      expect((yield* count(hooksFired)) - fired).toBe(1)
      yield* close
    }))

  it.live("live: a failure is logged as a warning with the job and its exit status, its output a line each", () =>
    Effect.gen(function*() {
      const log = capture()
      const end = yield* runHook("1 second")("finish", "echo 'no mail server' >&2; exit 3", {}).pipe(
        Effect.annotateLogs({ job: "j 1" }),
        Effect.provide(log.layer)
      )
      expect(end).toEqual({ _tag: "Exited", exitCode: 3, signal: null })
      expect(log.lines).toEqual([
        expect.stringMatching(/^INFO no mail server (?=.*hook=finish)(?=.*stream=stderr)(?=.*job=j 1)/),
        expect.stringMatching(/^WARN hook failed (?=.*hook=finish)(?=.*exitCode=3)(?=.*job=j 1)/)
      ])
    }))

  it.live("live: a timed-out hook's whole process group is stopped, SIGKILL for what ignores SIGTERM", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-finish-"))
      const pids = path.join(dir, "pids")
      // The shell and its child ignore SIGTERM: only the SIGKILL after the wait ends them.
      const command = `trap '' TERM; sleep 60 & echo $$ $! > ${pids}; wait`
      const run = runHook("300 millis")("finish", command, {})
      const fiber = yield* Effect.fork(run)
      while (!fs.existsSync(pids) || fs.readFileSync(pids, "utf8").trim().split(" ").length < 2) yield* Effect.sleep("20 millis")
      const [shell, child] = fs.readFileSync(pids, "utf8").trim().split(" ").map(Number)
      const started = Date.now()
      yield* Fiber.interrupt(fiber)
      expect(Date.now() - started).toBeGreaterThanOrEqual(250)
      expect(isAlive(shell!)).toBe(false)
      expect(isAlive(child!)).toBe(false)
      fs.rmSync(dir, { recursive: true })
    }))
})

describe("finish hooks when pmjq closes", () => {
  it.effect("at a stop: those running get the grace, then are stopped; those queued are dropped and counted", () =>
    Effect.gen(function*() {
      const runner = yield* heldRunner
      const dropped = yield* count(hooksDropped)
      const { close, hooks } = yield* open({ atOnce: 1, queued: 10, grace: "5 seconds" }, "stop").pipe(Effect.provide(runner.layer))
      for (const name of ["a", "b", "c"]) yield* hooks.fire(record(name), null)
      yield* settle
      const closing = yield* Effect.fork(close)
      yield* settle
      yield* TestClock.adjust("4 seconds")
      expect(runner.interrupted).toEqual([])
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      expect(runner.interrupted).toEqual(["a"])
      expect(runner.calls.map((c) => c.env.PMJQ_JOB)).toEqual(["a"])
      expect((yield* count(hooksDropped)) - dropped).toBe(2)
    }))

  it.effect("at the end of a drain: every hook queued still runs, however long the queue", () =>
    Effect.gen(function*() {
      const runner = yield* heldRunner
      const { close, hooks } = yield* open({ atOnce: 1, queued: 10, grace: "5 seconds" }, "drain").pipe(Effect.provide(runner.layer))
      for (const name of ["a", "b", "c"]) yield* hooks.fire(record(name), null)
      yield* settle
      const closing = yield* Effect.fork(close)
      // Far past a stop's grace (5 s), short of each hook's timeout (60 s).
      yield* TestClock.adjust("30 seconds")
      for (let i = 0; i < 3; i++) {
        yield* runner.releaseAll()
        yield* settle
      }
      yield* Fiber.join(closing)
      expect(runner.calls.map((c) => c.env.PMJQ_JOB)).toEqual(["a", "b", "c"])
      expect(runner.interrupted).toEqual([])
    }))

  it.effect("without --on-finish: nothing runs, nothing is forked", () =>
    Effect.gen(function*() {
      const runner = yield* heldRunner
      const hooks = yield* makeFinishHooks({ ...settings(), onFinish: Option.none() }, { ending: Effect.succeed("stop") }).pipe(
        Effect.provide(runner.layer),
        Effect.scoped
      )
      yield* hooks.fire(record("j"), null)
      expect(runner.calls).toEqual([])
    }))
})

describe("ends recovery settles for a dead node", () => {
  const deadPid = () => Number(cp.spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" }).stdout.trim())

  it.live("are told to --on-finish: archived as recorded, or given up as interrupted; a job queued again is not", () =>
    Effect.gen(function*() {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-finish-recovery-"))
      const spool = path.join(root, "spool")
      const archive = path.join(root, "archive")
      const nodes = path.join(spool, ".pmjq", "nodes")
      const folder = path.join(spool, ".pmjq", "running", "ghost")
      fs.mkdirSync(nodes, { recursive: true, mode: 0o755 })
      fs.mkdirSync(folder, { recursive: true, mode: 0o755 })
      fs.writeFileSync(path.join(nodes, "ghost"), JSON.stringify({ node: "ghost", host: os.hostname(), pid: deadPid(), helpers: [], beatAt: new Date().toISOString(), leaseMs: 60_000 }))
      const script = (name: string) => fs.writeFileSync(path.join(folder, name), "#!/bin/sh\n", { mode: 0o755 })
      // Ended before its node died.
      script("done")
      fs.writeFileSync(path.join(folder, ".done.json"), JSON.stringify(record("done", { node: "ghost", host: os.hostname(), outcome: "failed", exitCode: 2 })))
      // Died on its last attempt (--max-attempts 1): interrupted.
      script("cut")
      const told: Array<readonly [string, string, string | null]> = []
      const recovery = yield* makeRecovery(
        {
          node: "n1", host: os.hostname(), lease: "60 seconds", orphans: "requeue", maxAttempts: 1,
          archiveDir: Option.some(archive), errorDir: Option.none(), rejectedDir: path.join(spool, ".pmjq", "rejected")
        },
        (r, entry) => Effect.sync(() => void told.push([r.name, r.outcome, entry === null ? null : path.basename(entry)]))
      ).pipe(
        Effect.provide(Layer.mergeAll(Nodes.layer({ spool, node: "n1" }), Spool.layer({ spool, node: "n1" }), Archive.withoutNotes).pipe(Layer.provide(Syscalls.Direct)))
      )
      yield* recovery.round
      expect([...told].sort()).toEqual([
        ["cut", "interrupted", expect.stringMatching(/_cut$/)],
        ["done", "failed", "20260102T030406.000Z_done"]
      ])
      fs.rmSync(root, { recursive: true })
    }))
})
