/** `pmjq status`: the queue at a glance, as a table and as JSON; it reads the spool only. */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { records, run, start, submit, waitFor, workspace } from "./harness.js"

/** Every path under DIR with its size and mtime: what "unchanged" means here. */
const snapshot = (dir: string): Array<string> =>
  fs.readdirSync(dir, { recursive: true, withFileTypes: true }).map((e) => {
    const p = path.join(e.parentPath, e.name)
    const s = fs.lstatSync(p)
    return `${p} ${s.size} ${s.mtimeMs}`
  }).sort()

describe("pmjq status", () => {
  it("shows queued, running, nodes, the latest finished and rejected jobs; as JSON with stable keys; changes nothing", async () => {
    const t = workspace("status")
    const daemon = start(["--node-id", "n1", "-j", "1", "--grace", "1s", "--lease", "4s", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      submit(t.spool, "done-ok", "exit 0")
      submit(t.spool, "done-fail", "exit 3")
      fs.symlinkSync("/bin/true", path.join(t.spool, "a-link"))
      await waitFor("three done", () => records(t.archive).length + records(t.errors).length === 3)
      submit(t.spool, "long", `echo $$ > "${t.root}/long.tmp"; mv "${t.root}/long.tmp" "${t.root}/long.pid"\nsleep 60`)
      await waitFor("long running", () => fs.existsSync(path.join(t.root, "long.pid")))
      const heartbeat = path.join(t.spool, ".pmjq", "nodes", "n1")
      // Its pid reaches status through the node's next heartbeat (every lease/4).
      await waitFor("heartbeat lists it", () => fs.readFileSync(heartbeat, "utf8").includes('"name":"long"'))
      submit(t.spool, "queued-1", "exit 0")
      submit(t.spool, "queued-2", "exit 0")

      const asJson = await run(["status", "--json", t.spool], t.root)
      expect(asJson.code).toBe(0)
      const view = JSON.parse(asJson.stdout)
      expect(Object.keys(view)).toEqual(expect.arrayContaining(["queued", "running", "nodes", "finished", "rejected"]))
      expect(view.queued.map((q: { name: string }) => q.name)).toEqual(["queued-1", "queued-2"])
      const pid = Number(fs.readFileSync(path.join(t.root, "long.pid"), "utf8"))
      expect(view.running).toMatchObject([{ name: "long", node: "n1", pid, state: "running" }])
      expect(view.nodes).toMatchObject([{ node: "n1", alive: true, pid: daemon.child.pid, archiveDir: t.archive, errorDir: t.errors }])
      expect(view.finished.map((r: { name: string; outcome: string; exitCode: number | null }) => [r.name, r.outcome, r.exitCode]).sort())
        .toEqual([["done-fail", "failed", 3], ["done-ok", "succeeded", 0]])
      expect(view.rejected).toMatchObject([{ name: "a-link", outcome: "rejected", reason: "refused: a symlink (never followed)" }])

      const asTable = await run(["status", t.spool], t.root)
      expect(asTable.code).toBe(0)
      for (const line of [/^queued: 2, oldest \S+ \S+ \(queued-1\)$/m, /^running: 1$/m, new RegExp(`^\\s+long\\s+n1\\s+${pid}\\s+.*running$`, "m"), /^\s+n1\s+alive\s/m, /^rejected: 1$/m, /^\s+done-fail\s+failed\s+3\s/m]) {
        expect(asTable.stdout).toMatch(line)
      }
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)

    // With nothing running, a status leaves every file as it was.
    submit(t.spool, "still-queued", "exit 0")
    const before = snapshot(t.root)
    expect((await run(["status", t.spool], t.root)).code).toBe(0)
    expect((await run(["status", "--json", t.spool], t.root)).code).toBe(0)
    expect(snapshot(t.root)).toEqual(before)
  })

  it("a missing spool is one line and status 66", async () => {
    const t = workspace("status-missing")
    const result = await run(["status", path.join(t.root, "nope")], t.root)
    expect(result.code).toBe(66)
    expect(result.stderr.trim()).toBe(`pmjq: job spool ${path.join(t.root, "nope")} does not exist or is not a directory`)
  })
})
