/**
 * Jobs of nodes that died (this node's previous run among them) are settled
 * first, then a round every --poll: a node dies at any time. Each round also
 * counts the other nodes that look alive (Running.peers). What this node's
 * previous run left running (--on-stop leave) is adopted before dispatch
 * starts: watched (job/Adopted.ts) and counted like a job of this run.
 */
import { PLAIN } from "../directives/directives.js"
import { Effect, Fiber, HashMap, Layer, Option, Ref, Schedule } from "effect"
import { spawnersOf } from "../record/decode.js"
import { CannotAdopt } from "../errors/errors.js"
import { type Adoptable, watchAdopted } from "../job/Adopted.js"
import { SPAWNER_PROTOCOL } from "../spawner/protocol.js"
import { makeRecovery } from "../recovery/recovery.js"
import { type ProcessId, stillRuns } from "../process/proc.js"
import { claimedName } from "../spool/layout.js"
import { Nodes } from "../spool/Nodes.js"
import { type Claim } from "../spool/Spool.js"
import { ProcessRunner } from "../job/Runner.js"
import type { JobRecord } from "../record/record.js"
import { jobEnded } from "../telemetry/metrics.js"
import { metricsWanted } from "../telemetry/settings.js"
import { DaemonConfig } from "./Config.js"
import { FinishHooks } from "./FinishHooks.js"
import { Jobs } from "./Jobs.js"
import { recordMade, Running } from "./Running.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const running = yield* Running
  const jobs = yield* Jobs
  const nodes = yield* Nodes
  const runner = yield* ProcessRunner
  // What it archives for a dead node (or an adopted job) is told to --on-finish too.
  const recovery = yield* makeRecovery(settings, (yield* FinishHooks).fire)
  const folder = nodes.ownFolder
  // An adopted job's end counted as any job's, when metrics are exported (a restart in place adopts every running job).
  const metricsEnd = metricsWanted(settings.metrics) ? jobEnded : () => Effect.void
  // An adopted job is this node's as much as one it started: --drain counts it.
  const countEnd = (record: JobRecord) => Effect.zipRight(recordMade(running, record.outcome), metricsEnd(record))

  const adopt = (job: Adoptable) =>
    Effect.uninterruptible(Effect.gen(function*() {
      const claimed = job.names.claim!
      const left = yield* nodes.gather(folder, job.names).pipe(Effect.option)
      const uid = Option.match(left, { onNone: () => -1, onSome: (l) => l.uid ?? -1 })
      const claim: Claim = {
        name: claimedName(claimed),
        path: `${folder}/${claimed}`,
        claimedAt: Option.match(left, { onNone: () => 0, onSome: (l) => l.claimedAt }),
        attempt: 1,
        noteKey: null,
        owner: uid,
        // Running already: what its file asked no longer decides anything.
        read: PLAIN
      }
      // Its -j slot, once one is free (-j may be lower than when it started).
      const slot = yield* Ref.make(false)
      const taking = yield* Effect.fork(Effect.interruptible(jobs.takeSlot).pipe(Effect.onExit((exit) => (exit._tag === "Success" ? Ref.set(slot, true) : Effect.void))))
      const release = Effect.zipRight(Fiber.interrupt(taking), Effect.flatMap(Ref.get(slot), (taken) => (taken ? jobs.freeSlot : Effect.void)))
      const leader: ProcessId | null = job.process
      if (leader !== null) yield* Ref.update(running.pids, HashMap.set(claimed, leader))
      yield* Effect.logInfo("adopted: left running by the pmjq before").pipe(Effect.annotateLogs({ job: claim.name, pid: job.process?.pid ?? "unknown" }))
      const settle = (names: typeof job.names) => recovery.settleOne(folder, names, settings.node)
      yield* jobs.enroll(claim, uid, release, Option.none(), (ended, { cancel }) =>
        watchAdopted(job, folder, settings, cancel, runner.leaving, settle, countEnd).pipe(Effect.ensuring(ended), Effect.annotateLogs({ job: claim.name })))
    }))

  // Never what this pmjq could not follow (jobs left by a newer pmjq's
  // spawners), nor what ran on another host (its pids mean nothing here; a
  // fresh heartbeat there stopped the start, see features/Beating.ts): its jobs are a
  // dead node's.
  const before = Option.filter(yield* Ref.get(running.inherited), (hb) => hb.host === settings.host)
  if (Option.isSome(before) && before.value.protocol > SPAWNER_PROTOCOL && spawnersOf(before.value).some(stillRuns)) {
    return yield* new CannotAdopt({ node: settings.node, protocol: before.value.protocol, ours: SPAWNER_PROTOCOL })
  }
  yield* Effect.forEach(yield* recovery.own(before), adopt, { discard: true })
  yield* Ref.set(running.peers, yield* recovery.round)
  yield* recovery.round.pipe(Effect.flatMap((n) => Ref.set(running.peers, n)), Effect.repeat(Schedule.spaced(settings.poll)), Effect.forkScoped)
})

export const RecoveryRounds = Layer.scopedDiscard(make)
