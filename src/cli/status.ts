/** `pmjq status JOB-SPOOL [--json]`: the queue at a glance; reads the spool, never changes it. */
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect } from "effect"
import * as path from "node:path"
import { escapeJson } from "../log.js"
import { visible } from "../text.js"
import { requireSpool } from "../spool/Spool.js"
import { type SpoolView, viewSpool } from "../spool/view.js"
import { Syscalls } from "../syscalls.js"

const ago = (ms: number) =>
  ms < 1000 ? `${ms} ms` : ms < 120_000 ? `${Math.round(ms / 1000)} s` : ms < 7_200_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 3_600_000)} h`

// Every cell is made visible before the widths are measured, so columns line up.
const table = (rawRows: ReadonlyArray<ReadonlyArray<string>>) => {
  const rows = rawRows.map((r) => r.map((cell) => visible(cell)))
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => "  " + r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n")
}

export const render = (v: SpoolView): string => {
  const now = Date.parse(v.at)
  const out: Array<string> = [`spool ${visible(v.spool)} at ${v.at}`, ""]
  if (v.untrusted !== null) out.push(`pmjq's state is not shown: ${visible(v.untrusted)} (it is not pmjq's own)`, "")
  const oldest = v.queued[0]
  out.push(`queued: ${v.queued.length}${oldest === undefined ? "" : `, oldest ${ago(now - Date.parse(oldest.readyAt))} (${visible(oldest.name)})`}`)
  if (v.queued.length > 0) out.push(table([["NAME", "WAITING"], ...v.queued.slice(0, 5).map((q) => [q.name, ago(now - Date.parse(q.readyAt))])]))
  if (v.queued.length > 5) out.push(`  ... and ${v.queued.length - 5} more`)
  out.push("", `running: ${v.running.length}`)
  if (v.running.length > 0) {
    out.push(table([["NAME", "NODE", "PID", "FOR", "STATE"], ...v.running.map((r) => [r.name, r.node, r.pid === null ? "-" : String(r.pid), ago(r.forMs), r.state])]))
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

export const statusCommand = Command.make(
  "status",
  {
    spool: Args.text({ name: "job-spool" }).pipe(Args.withDescription("The spool to look at (required).")),
    json: Options.boolean("json").pipe(Options.withDescription("One JSON object: queued, running, nodes, finished, rejected."))
  },
  ({ json, spool }) =>
    Effect.gen(function*() {
      const dir = path.resolve(spool)
      yield* requireSpool(dir)
      const view = yield* viewSpool(dir).pipe(Effect.provide(Syscalls.forDirectories([dir])))
      // JSON.stringify escapes C0 controls; escapeJson the rest (DEL, C1).
      yield* Console.log(json ? escapeJson(JSON.stringify(view, null, 2)) : render(view))
    })
).pipe(Command.withDescription("Show the queue: queued, running, nodes, the latest finished and rejected jobs. Reads only."))
