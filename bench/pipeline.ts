/**
 * The dispatch pipeline's own cost per job: the real daemon on in-memory fakes
 * (no filesystem, no processes), so what is left is pmjq's per-job overhead.
 * `node --import tsx bench/pipeline.ts [jobs]`
 */
import { Effect, Layer, Logger, LogLevel, Option } from "effect"
import { daemon } from "../src/daemon.js"
import { Gate } from "../src/gate/Gate.js"
import { Archive } from "../src/job/Archive.js"
import { RefusalsKept } from "../src/job/RefusalsKept.js"
import { ProcessRunner } from "../src/job/Runner.js"
import { logLayer } from "../src/log/log.js"
import { Spool } from "../src/spool/Spool.js"
import { HookRunner } from "../src/hooks/hooks.js"
import { Users } from "../src/owners/Users.js"
import { Nodes } from "../src/spool/Nodes.js"
import { daemonSettings, fakeArchive, fakeHooks, fakeLoad, fakeNodes, fakeRefusals, fakeRequests, fakeRunner, fakeSpool, fakeUsers } from "../test/fakes.js"
import { Requests } from "../src/spool/Requests.js"

const jobs = Number(process.argv[2] ?? 20_000)
const logged = process.argv.includes("--log")

const program = Effect.gen(function*() {
  const spool = yield* fakeSpool
  const runner = yield* fakeRunner
  const archive = yield* fakeArchive
  const load = yield* fakeLoad
  for (let i = 0; i < jobs; i++) spool.files.set(`j${i}`, { readyAt: i, executable: true })
  const live = Layer.mergeAll(
    Layer.succeed(Spool, spool.service),
    Layer.succeed(ProcessRunner, runner.service),
    Layer.succeed(Archive, archive.service),
    Layer.succeed(Nodes, (yield* fakeNodes).service),
    Layer.succeed(HookRunner, (yield* fakeHooks).service),
    Layer.succeed(Users, fakeUsers),
    Layer.succeed(Requests, (yield* fakeRequests()).service),
    Layer.succeed(RefusalsKept, (yield* fakeRefusals).service),
    Gate.layer({ cpuLimit: Option.none(), sampleEvery: "1 second" }),
    load.layer
  ).pipe(Layer.provide(load.layer))
  const started = performance.now()
  const cpu = process.cpuUsage()
  yield* daemon(daemonSettings({ drain: true, maxJobs: 8 })).pipe(Effect.scoped, Effect.provide(live))
  const used = process.cpuUsage(cpu)
  const ms = performance.now() - started
  if (archive.stored.length !== jobs) throw new Error(`stored ${archive.stored.length} of ${jobs}`)
  console.log(`${jobs} jobs: ${(ms * 1000 / jobs).toFixed(1)} µs/job wall, ${((used.user + used.system) / jobs).toFixed(1)} µs/job CPU${logged ? " (logging to /dev/null)" : ""}`)
})

Effect.runPromise(program.pipe(
  logged ? Effect.provide(logLayer("text")) : Logger.withMinimumLogLevel(LogLevel.None)
))
