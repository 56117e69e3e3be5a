/**
 * Jobs of nodes that died (this node's previous run among them) are settled
 * first, then a round every --poll: a node dies at any time. Each round also
 * counts the other nodes that look alive (Running.peers). What this node's
 * previous run left running (--on-stop leave) is adopted (Jobs.adopt).
 */
import { Effect, Layer, Option, Ref, Schedule } from "effect"
import { CannotAdopt } from "../errors.js"
import { SPAWNER_PROTOCOL } from "../job/protocol.js"
import { isAlive, makeRecovery } from "../recovery.js"
import type { LeftoverNames } from "../spool/layout.js"
import { Nodes } from "../spool/Nodes.js"
import { DaemonConfig } from "./Config.js"
import { Jobs } from "./Jobs.js"
import { Running } from "./Running.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const { inherited, peers } = yield* Running
  const jobs = yield* Jobs
  const { ownFolder } = yield* Nodes
  const recovery = yield* makeRecovery(settings)
  // What the pmjq before left running (--on-stop leave) is adopted before
  // dispatch starts; never what this one could not follow (a newer pmjq's).
  const before = yield* Ref.get(inherited)
  if (Option.isSome(before) && before.value.protocol > SPAWNER_PROTOCOL && before.value.helpers.some(isAlive)) {
    return yield* new CannotAdopt({ node: settings.node, protocol: before.value.protocol, ours: SPAWNER_PROTOCOL })
  }
  const adoptable = yield* recovery.own(before)
  const settle = (names: LeftoverNames) => recovery.settleOne(ownFolder, names, settings.node)
  yield* Effect.forEach(adoptable, (job) => jobs.adopt(job, settle), { discard: true })
  yield* Ref.set(peers, yield* recovery.round)
  yield* recovery.round.pipe(Effect.flatMap((n) => Ref.set(peers, n)), Effect.repeat(Schedule.spaced(settings.poll)), Effect.forkScoped)
})

export const RecoveryRounds = Layer.scopedDiscard(make)
