/**
 * `pmjq status JOB-SPOOL [--json] [--watch]`: the queue at a glance, and why
 * each job waits; reads the spool, never changes it.
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, type Duration, Effect, Schedule } from "effect"
import * as path from "node:path"
import { Users } from "../owners/Users.js"
import { escapeJson } from "../log/log.js"
import { visible } from "../log/text.js"
import { requireSpool } from "../spool/Spool.js"
import { describePaused, type SpoolView, viewSpool } from "../spool/view.js"
import { Syscalls } from "../filesystem/syscalls.js"

const ago = (ms: number) =>
  ms < 1000 ? `${ms} ms` : ms < 120_000 ? `${Math.round(ms / 1000)} s` : ms < 7_200_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 3_600_000)} h`

// Every cell is made visible before the widths are measured, so columns line up.
const table = (rawRows: ReadonlyArray<ReadonlyArray<string>>) => {
  const rows = rawRows.map((r) => r.map((cell) => visible(cell)))
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => "  " + r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n")
}

/** How many of each reason: `slots 40, refused 2`. */
const tally = (reasons: ReadonlyArray<string>) =>
  [...reasons.reduce((counts, r) => counts.set(r, (counts.get(r) ?? 0) + 1), new Map<string, number>())].map(([r, n]) => `${visible(r)} ${n}`).join(", ")

export const render = (v: SpoolView): string => {
  const now = Date.parse(v.at)
  const out: Array<string> = [`spool ${visible(v.spool)} at ${v.at}`, ""]
  if (v.untrusted !== null) out.push(`pmjq's state is not shown: ${visible(v.untrusted)} (it is not pmjq's own)`, "")
  const pauses = [
    ...(v.paused.spool === null ? [] : [describePaused(v.paused.spool, null)]),
    ...Object.entries(v.paused.nodes).map(([node, note]) => describePaused(note, node))
  ]
  if (pauses.length > 0) out.push(...pauses.map((p) => `paused: ${visible(p)}`), "")
  // The oldest job that may run: a file that will not, and a held one, are counted apart.
  const oldest = v.queued.find((q) => q.reason !== "refused" && q.reason !== "held")
  const apart = (["refused", "held"] as const).map((r) => [r, v.queued.filter((q) => q.reason === r).length] as const).filter(([, n]) => n > 0)
  out.push(`queued: ${v.queued.length}${apart.length > 0 ? ` (${apart.map(([r, n]) => `${n} ${r}`).join(", ")})` : ""}${oldest === undefined ? "" : `, oldest ${ago(now - Date.parse(oldest.readyAt))} (${visible(oldest.name)})`}`)
  if (v.queued.length > 0) {
    const shown = v.queued.slice(0, 5)
    // PRIO only when a job shown has a priority (#PMJQ --priority); ? when its lines cannot be read.
    const prio = shown.some((q) => q.priority !== 0 && q.priority !== null)
    const row = (cells: ReadonlyArray<string>, priority: string) => (prio ? [...cells.slice(0, 3), priority, cells[3]!] : cells)
    out.push(table([
      row(["NAME", "USER", "WAITING", "REASON"], "PRIO"),
      ...shown.map((q) => row([q.name, q.user, ago(now - Date.parse(q.readyAt)), q.detail], q.priority === null ? "?" : String(q.priority)))
    ]))
  }
  if (v.queued.length > 5) out.push(`  ... and ${v.queued.length - 5} more (${tally(v.queued.slice(5).map((q) => q.reason))})`)
  out.push("", `running: ${v.running.length}`)
  if (v.running.length > 0) {
    out.push(table([["NAME", "USER", "NODE", "PID", "FOR", "STATE"], ...v.running.map((r) => [
      r.name, r.user, r.node, r.pid === null ? "-" : String(r.pid), ago(r.forMs), r.state
    ])]))
  }
  if (v.cancelling.length > 0) {
    out.push("", `cancelling: ${v.cancelling.length}`)
    out.push(table([["NAME", "ASKED BY UID"], ...v.cancelling.map((c) => [c.name, String(c.uid)])]))
  }
  out.push("", `nodes: ${v.nodes.length}`)
  if (v.nodes.length > 0) {
    out.push(table([["NODE", "STATE", "HEARTBEAT", "RUNNING", "LOAD", "HOST", "PID"], ...v.nodes.map((n) => [
      // left: its pmjq stopped with --on-stop leave; its spawners beat for its jobs.
      n.node, n.left === true ? (n.alive ? "left" : "left, stale") : n.alive ? "alive" : "stale", `${ago(n.ageMs)} ago`, String(n.running), n.load.toFixed(2), n.host, String(n.pid)
    ])]))
  }
  out.push("", `finished (latest): ${v.finished.length}`)
  if (v.finished.length > 0) {
    out.push(table([["NAME", "OUTCOME", "EXIT", "ENDED", "NODE"], ...v.finished.map((r) => [
      r.name, r.outcome, r.exitCode !== null ? String(r.exitCode) : r.signal ?? "-", r.endedAt, r.node
    ])]))
  }
  out.push("", `rejected: ${v.rejected.length}`)
  if (v.rejected.length > 0) out.push(table([["NAME", "REASON"], ...v.rejected.map((r) => [r.name, r.reason ?? ""])]))
  return out.join("\n")
}

// What watch(1) and top do: home, then clear, then the frame, in one write.
const REDRAW = "\u001b[H\u001b[2J"

/**
 * FRAME now and then EVERY (a fixed rate: a slow frame does not push the
 * next ones later), until interrupted: Ctrl-C, which exits 0.
 */
export const watchEvery = <E, R>(frame: Effect.Effect<void, E, R>, every: Duration.DurationInput) =>
  Effect.repeat(frame, Schedule.fixed(every))

const show = (dir: string, json: boolean, frame: "once" | "redraw" | "stream") =>
  Effect.gen(function*() {
    const view = yield* viewSpool(dir).pipe(Effect.provide(Syscalls.forDirectories([dir])))
    // JSON.stringify escapes C0 controls; escapeJson the rest (DEL, C1).
    // Watched as JSON: one object a line, for a reader that takes lines.
    if (json) return yield* Console.log(escapeJson(frame === "once" ? JSON.stringify(view, null, 2) : JSON.stringify(view)))
    yield* Console.log(frame === "redraw" ? REDRAW + render(view) : frame === "stream" ? render(view) + "\n" : render(view))
  })

export const statusCommand = Command.make(
  "status",
  {
    spool: Args.text({ name: "job-spool" }).pipe(Args.withDescription("The spool to look at (required).")),
    json: Options.boolean("json").pipe(Options.withDescription("one JSON object (queued, running, nodes, ended, paused...)")),
    watch: Options.boolean("watch").pipe(Options.withDescription("redraw every second until Ctrl-C (a pipe: a view a second)"))
  },
  ({ json, spool, watch }) =>
    Effect.gen(function*() {
      const dir = path.resolve(spool)
      yield* requireSpool(dir)
      if (!watch) return yield* show(dir, json, "once")
      // A terminal is redrawn in place; a pipe or a file gets each view after
      // the last, with no escapes in it (a log of the queue, or `| head`).
      const frame = !json && process.stdout.isTTY === true ? "redraw" : "stream"
      yield* watchEvery(show(dir, json, frame), "1 second")
    }).pipe(Effect.provide(Users.layer))
).pipe(Command.withDescription("Show the queue: what waits and why, what runs where, the nodes, what ended. Reads only."))
