/**
 * What the features share about the jobs of this node, as Refs: the running
 * processes (what -j and --max-jobs-per-user count), their pids (for the
 * heartbeat), claims won and lost, jobs finished, and how many other nodes
 * look alive (which makes the dispatcher prefer some jobs over others), and
 * each claimed job with the way to cancel it.
 */


/**
 * A job claimed by this node: its claim; `cancel`, completed with who cancels
 * it; and the fiber to interrupt then, while it waits for its process.
 */
export interface HeldJob {
  readonly claim: Claim
  readonly cancel: Deferred.Deferred<string>
  readonly waiting: Ref.Ref<Option.Option<Fiber.RuntimeFiber<unknown, unknown>>>
}
import { Context, type Deferred, Effect, type Fiber, HashMap, Layer, Option, Ref } from "effect"
import type { Heartbeat } from "../record/decode.js"
import type { ProcessId } from "../process/proc.js"
import type { Claim } from "../spool/Spool.js"

export class Running extends Context.Tag("pmjq/Running")<Running, {
  /** Claimed jobs whose process has not ended yet: what -j counts. */
  readonly processes: Ref.Ref<number>
  /** The same by owner (the uid the queue knew each job by): what --max-jobs-per-user counts; 0 for an owner seen whose jobs ended. */
  readonly byOwner: Ref.Ref<HashMap.HashMap<number, number>>
  /** Jobs being run or archived (their fibers). */
  readonly active: Ref.Ref<number>
  /** Running jobs' processes by claimed name, for the heartbeat (and so pmjq status, and adoption). */
  readonly pids: Ref.Ref<HashMap.HashMap<string, ProcessId>>
  /** A SIGHUP asked for a restart in place: the stop leaves the jobs running, whatever --on-stop says. */
  readonly restarting: Ref.Ref<boolean>
  /** This node's heartbeat as the previous pmjq with its id left it (read before the first beat). */
  readonly inherited: Ref.Ref<Option.Option<Heartbeat>>
  readonly won: Ref.Ref<number>
  readonly lost: Ref.Ref<number>
  readonly finished: Ref.Ref<number>
  /** Of the finished jobs, by their record: what --drain's last line and exit status tell. */
  readonly succeeded: Ref.Ref<number>
  readonly failed: Ref.Ref<number>
  /** Other nodes that looked alive at the last recovery round. */
  readonly peers: Ref.Ref<number>
  /** Claimed jobs by claimed file name, until archived. */
  readonly held: Ref.Ref<HashMap.HashMap<string, HeldJob>>
}>() {
  static readonly layer = Layer.effect(
    Running,
    Effect.all({
      processes: Ref.make(0),
      byOwner: Ref.make(HashMap.empty<number, number>()),
      active: Ref.make(0),
      pids: Ref.make(HashMap.empty<string, ProcessId>()),
      restarting: Ref.make(false),
      inherited: Ref.make(Option.none<Heartbeat>()),
      won: Ref.make(0),
      lost: Ref.make(0),
      finished: Ref.make(0),
      succeeded: Ref.make(0),
      failed: Ref.make(0),
      peers: Ref.make(0),
      held: Ref.make(HashMap.empty<string, HeldJob>())
    })
  )
}

// A user whose jobs all ended stays, at 0: the metrics keep a series for each
// user seen, however short their jobs were (one per user, not per job).
const countOwner = (by: 1 | -1) => (uid: number) => (counts: HashMap.HashMap<number, number>) =>
  HashMap.set(counts, uid, Option.getOrElse(HashMap.get(counts, uid), () => 0) + by)

/** A job's process started (its owner's uid as the queue knew it). */
export const processStarted = (running: Running["Type"], uid: number) =>
  Effect.zipRight(Ref.update(running.processes, (n) => n + 1), Ref.update(running.byOwner, countOwner(1)(uid)))

/** A job's process ended (or never started). */
export const processEnded = (running: Running["Type"], uid: number) =>
  Effect.zipRight(Ref.update(running.processes, (n) => n - 1), Ref.update(running.byOwner, countOwner(-1)(uid)))

/** A job of this node has its record: counted as succeeded or not, for --drain's last line and status. */
export const recordMade = (running: Running["Type"], outcome: string) =>
  Ref.update(outcome === "succeeded" ? running.succeeded : running.failed, (n) => n + 1)
