/**
 * A local user who forks until she holds the pid of a pmjq that left its jobs
 * running (--on-stop leave) must not make them run twice. Here the pid is
 * taken at once, with ns_last_pid, as a user would by forking ~30,000 times.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { exitOf, lines, records, type Running, runsHere, start, submit, waitFor, workspace } from "./harness.js"
import { holdPid, rootMissing } from "./users.js"

interface Beat {
  readonly pid: number
  readonly beatAt: string
  readonly left?: boolean
}

describe.runIf(runsHere("pid reuse", rootMissing))("(as root: takes a pid with ns_last_pid) a pmjq's pid held by another user's process", () => {
  it("the spawners of a pmjq that left go on beating, and the next pmjq adopts its job: it runs once", async () => {
    const t = workspace("pid-reuse")
    const gate = path.join(t.root, "gate")
    const heartbeat = () => JSON.parse(fs.readFileSync(path.join(t.spool, ".pmjq/nodes/p1"), "utf8")) as Beat
    // Beats every 2 s (a quarter of the lease).
    const first = start(["--node-id", "p1", "--on-stop", "leave", "--lease", "8s", "-o", t.archive, t.spool], t.root)
    submit(t.spool, "long", `echo $$ >> ${t.ledger}; while [ ! -e ${gate} ]; do sleep 0.05; done; echo done`)
    await waitFor("the job started", () => lines(t.ledger).length === 1 && /INFO started job=long/.test(first.output().stderr))
    const pid = first.child.pid!
    first.child.kill("SIGTERM")
    expect(await exitOf(first)).toBe(0)
    let holder: Awaited<ReturnType<typeof holdPid>> | null = null
    let next: Running | null = null
    try {
      holder = await holdPid(pid, "nobody")
      const heldAt = Date.now()
      expect(heartbeat()).toMatchObject({ pid, left: true })
      // A beat begun while the pid was the user's: the spawners did not take
      // her process for pmjq (before, they stopped beating, and once the
      // lease ran out the job was run again beside the first run).
      await waitFor("a beat after the pid was taken", () => Date.parse(heartbeat().beatAt) > heldAt)
      // The next pmjq with its id takes the node over (its pmjq is gone,
      // whoever holds the pid) and adopts the job instead of running it again.
      next = start(["--node-id", "p1", "--lease", "8s", "-o", t.archive, t.spool], t.root)
      const adopter = next
      await waitFor("the job adopted", () => /adopted: left running by the pmjq before job=long/.test(adopter.output().stderr))
      fs.writeFileSync(gate, "")
      await waitFor("the job archived", () => records(t.archive).length === 1)
      expect(records(t.archive)).toMatchObject([{ name: "long", outcome: "succeeded", attempt: 1 }])
      expect(lines(t.ledger)).toHaveLength(1)
    } finally {
      fs.writeFileSync(gate, "")
      holder?.kill("SIGKILL")
      next?.child.kill("SIGTERM")
    }
    if (next !== null) expect(await exitOf(next)).toBe(0)
  })
})
