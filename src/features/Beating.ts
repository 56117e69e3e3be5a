/**
 * The heartbeat says this node is alive, and where its archive is: written at
 * once, then every lease/4 (a lease spans four beats, so one late write does
 * not get a live node taken over), and whenever a spawner starts: its first
 * job waits for a beat that lists it. Its finalizer is the node's last act: the
 * heartbeat and the running folder go once every job has ended and been
 * archived (layers close in reverse order, and this one is built first); with
 * jobs left to the spawners (--on-stop leave), both stay, the spawners beating.
 *
 * Before its first beat it reads the heartbeat a previous pmjq with this node
 * id left (Running.inherited): what recovery adopts its jobs by.
 *
 * A node that has not written its heartbeat for lease/2 (two beats: the
 * spool's mount died, the network is cut) is cut off: other nodes take its
 * jobs over once its last heartbeat is a lease old, and run them again. It
 * kills its jobs at once, so that no job runs twice at the same time, ends
 * (DaemonDone: "cut-off"), and exits for its service manager to start it again
 * (EX_TEMPFAIL).
 */
import { Clock, Deferred, Duration, Effect, HashMap, Layer, Option, Ref, Schedule } from "effect"
import { NodeElsewhere } from "../errors/errors.js"
import { Gate } from "../gate/Gate.js"
import { LoadAverage } from "../gate/LoadAverage.js"
import { SPAWNER_PROTOCOL } from "../spawner/protocol.js"
import { ProcessRunner } from "../job/Runner.js"
import { spawnersOf } from "../record/decode.js"
import { type ProcessId, stillRuns, thisProcess } from "../process/proc.js"
import { Nodes } from "../spool/Nodes.js"
import { DaemonConfig, DaemonDone } from "./Config.js"
import { Running } from "./Running.js"

const known = (spawner: ProcessId): spawner is { readonly pid: number; readonly startTicks: number } => spawner.startTicks !== null

/** This node's heartbeat now. */
export const heartbeatNow = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const runner = yield* ProcessRunner
  const load = yield* LoadAverage
  const gate = yield* Gate
  const running = yield* Running
  // Adopted jobs run under the spawners of the pmjq before: with those
  // listed, this node is not taken for dead while they run. Every process
  // with its start time (proc.ts: ProcessId): a later process with its pid is
  // not it.
  const spawners = [
    ...(yield* runner.helpers),
    ...Option.match(yield* Ref.get(running.inherited), { onNone: () => [], onSome: (hb) => spawnersOf(hb).filter(stillRuns) })
  ].filter((spawner, i, all) => all.findIndex((other) => other.pid === spawner.pid) === i)
  return {
    node: settings.node,
    host: settings.host,
    pid: thisProcess.pid,
    ...(thisProcess.startTicks === null ? {} : { startTicks: thisProcess.startTicks }),
    helpers: spawners.map((spawner) => spawner.pid),
    // One known by pid alone (left by a pmjq before start times were kept):
    // then readers go by `helpers`, as that pmjq's would.
    ...(spawners.every(known) ? { spawners } : {}),
    beatAt: new Date(yield* Clock.currentTimeMillis).toISOString(),
    leaseMs: Duration.toMillis(settings.lease),
    archiveDir: Option.getOrNull(settings.archiveDir),
    errorDir: Option.getOrNull(settings.errorDir),
    running: yield* Ref.get(running.active),
    load: yield* load.oneMinute,
    protocol: SPAWNER_PROTOCOL,
    // What holds the queue back here, for `pmjq status` to say why a job
    // waits: a few numbers a beat, never a write per job.
    maxJobs: settings.maxJobs,
    maxJobsPerUser: Option.getOrNull(settings.maxJobsPerUser),
    cpuLimit: Option.getOrNull(settings.cpuLimit),
    loadEstimate: yield* gate.estimate,
    runAsOwner: settings.policy.runAsOwner,
    jobs: [...HashMap.toEntries(yield* Ref.get(running.pids))].map(([name, { pid, startTicks }]) =>
      startTicks === null ? { name, pid } : { name, pid, startTicks }
    )
  }
})

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const nodes = yield* Nodes
  const runner = yield* ProcessRunner
  const running = yield* Running
  const inherited = yield* nodes.own.pipe(Effect.orElseSucceed(() => Option.none()))
  // This id's heartbeat from another host, fresh: that node is alive there
  // (or its jobs are); beating over it would make it look dead to others.
  for (const hb of Option.toArray(inherited)) {
    const age = (yield* Clock.currentTimeMillis) - Date.parse(hb.beatAt)
    if (hb.host !== settings.host && age <= hb.leaseMs) {
      return yield* new NodeElsewhere({ node: settings.node, host: hb.host, ageSeconds: Math.round(age / 1000) })
    }
  }
  yield* Ref.set(running.inherited, inherited)
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      if (yield* runner.leaving) return
      yield* nodes.leave
    }).pipe(Effect.catchAll((e) => Effect.logWarning("could not clean up").pipe(Effect.annotateLogs({ reason: e.message }))))
  )
  const finished = yield* DaemonDone
  // When the last beat that was written began: the time other nodes date this node by.
  const written = yield* Ref.make(yield* Clock.currentTimeMillis)
  const beatEvery = Duration.toMillis(settings.lease) / 4
  // One beat at a time: the periodic ones and those for a new spawner.
  const oneAtATime = yield* Effect.makeSemaphore(1)
  const beat = Effect.gen(function*() {
    const at = yield* Clock.currentTimeMillis
    const heartbeat = yield* heartbeatNow
    yield* nodes.beat(heartbeat)
    yield* Ref.set(written, at)
    yield* runner.listed(heartbeat.spawners ?? heartbeat.helpers.map((pid) => ({ pid, startTicks: null })))
  }).pipe(
    oneAtATime.withPermits(1),
    Effect.catchAll((e) => Effect.logWarning("heartbeat not written").pipe(Effect.annotateLogs({ reason: e.message })))
  )
  // Watched apart from the beats, which on a dead mount may hang (an NFS hard
  // mount) as well as fail. The jobs are killed first, at once: the stop that
  // follows may hang on the dead mount too.
  const watch = Effect.gen(function*() {
    const silentMs = (yield* Clock.currentTimeMillis) - (yield* Ref.get(written))
    if (silentMs < 2 * beatEvery || (yield* Deferred.isDone(finished))) return
    const killed = yield* runner.killAll
    yield* Effect.logError("cut off from the spool: no heartbeat written for half the lease; its jobs killed, stopping").pipe(
      Effect.annotateLogs({ silentMs, lease: Duration.format(settings.lease), killed })
    )
    yield* Deferred.succeed(finished, "cut-off")
  })
  yield* beat
  yield* beat.pipe(Effect.repeat(Schedule.spaced(Duration.millis(beatEvery))), Effect.forkScoped)
  // A spawner just started gets its first job once a beat lists it (Runner.ts: unlisted).
  yield* runner.unlisted.pipe(Effect.zipRight(beat), Effect.forever, Effect.forkScoped)
  yield* watch.pipe(Effect.repeat(Schedule.spaced(Duration.millis(beatEvery / 2))), Effect.forkScoped)
})

export const Beating = Layer.scopedDiscard(make)
