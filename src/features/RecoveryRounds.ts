/**
 * Jobs of nodes that died (this node's previous run among them) are settled
 * first, then a round every --poll: a node dies at any time. Each round also
 * counts the other nodes that look alive (Running.peers).
 */
import { Effect, Layer, Ref, Schedule } from "effect"
import { makeRecovery } from "../recovery.js"
import { DaemonConfig } from "./Config.js"
import { Running } from "./Running.js"

const make = Effect.gen(function*() {
  const settings = yield* DaemonConfig
  const { peers } = yield* Running
  const recovery = yield* makeRecovery(settings)
  yield* recovery.own
  yield* Ref.set(peers, yield* recovery.round)
  yield* recovery.round.pipe(Effect.flatMap((n) => Ref.set(peers, n)), Effect.repeat(Schedule.spaced(settings.poll)), Effect.forkScoped)
})

export const RecoveryRounds = Layer.scopedDiscard(make)
