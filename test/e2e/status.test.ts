/** `pmjq status`: the queue at a glance and why each job waits, as a table and as JSON; it reads the spool only. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { publicBin, records, run, runsHere, start, submit, waitFor, workspace } from "./harness.js"
import { addUsers, asUser, removeUsers, rootMissing, sharedSpool, submitAs } from "./users.js"

const ROOT = path.resolve(import.meta.dirname, "../..")
const me = os.userInfo().username

/** `pmjq status --json SPOOL`, parsed. */
const statusJson = async (spool: string, cwd: string) => {
  const result = await run(["status", "--json", spool], cwd)
  expect(result.code).toBe(0)
  return JSON.parse(result.stdout)
}

/** A job that writes its pid where the test reads it, then runs until RELEASE exists. */
const held = (pidFile: string, release: string) =>
  `echo $$ > "${pidFile}.tmp"; mv "${pidFile}.tmp" "${pidFile}"\nwhile [ ! -e "${release}" ]; do sleep 0.1; done`

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
      for (const line of [/^queued: 2, oldest \S+ \S+ \(queued-1\)$/m, /^running: 1$/m, new RegExp(`^\\s+long\\s+\\S+\\s+n1\\s+${pid}\\s+.*running$`, "m"), /^\s+n1\s+alive\s/m, /^rejected: 1$/m, /^\s+done-fail\s+failed\s+3\s/m]) {
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

  it("-j 1: a job queued behind a running one waits for slots, both by owner; the running job's pid at once; the node runs 1", async () => {
    const t = workspace("status-slots")
    const pidFile = path.join(t.root, "long.pid")
    // The default lease: the next heartbeat is 15 s away, so the pid is found
    // on this host (the child of the node's spawner), not read from a beat.
    const daemon = start(["--node-id", "n1", "-j", "1", "--grace", "1s", "-o", t.archive, t.spool], t.root)
    try {
      // As `pmjq submit -- CMD` makes them: the script execs the command, so no
      // command line names the job's file; its environment does (PMJQ_JOB).
      submit(t.spool, "long", `echo $$ > "${pidFile}.tmp"; mv "${pidFile}.tmp" "${pidFile}"\nexec sleep 600`)
      await waitFor("long running", () => fs.existsSync(pidFile))
      const pid = Number(fs.readFileSync(pidFile, "utf8"))
      await waitFor("its exec", () => fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("sleep\0"))
      submit(t.spool, "waiting", "exit 0")

      const view = await statusJson(t.spool, t.root)
      expect(view.queued).toEqual([{
        name: "waiting", readyAt: expect.any(String), uid: process.getuid!(), user: me, reason: "slots", detail: "slots: -j 1 on n1, 1 running",
        held: false, after: [], afterAny: [], priority: 0
      }])
      expect(view.paused).toEqual({ spool: null, nodes: {} })
      expect(view.running).toEqual([{ name: "long", node: "n1", claimedAt: expect.any(String), forMs: expect.any(Number), pid, state: "running", uid: process.getuid!(), user: me }])
      // The heartbeat's own count may be a beat old; RUNNING is the running folder's.
      expect(view.nodes).toMatchObject([{ node: "n1", alive: true, running: 1, maxJobs: 1, maxJobsPerUser: null, cpuLimit: null, runAsOwner: false }])
      expect(view.nodes[0].loadEstimate).toBeGreaterThanOrEqual(0)

      const table = await run(["status", t.spool], t.root)
      expect(table.code).toBe(0)
      expect(table.stdout).toMatch(/^\s+NAME\s+USER\s+WAITING\s+REASON$/m)
      expect(table.stdout).toMatch(new RegExp(`^\\s+waiting\\s+${me}\\s+\\d+ m?s\\s+slots: -j 1 on n1, 1 running$`, "m"))
      expect(table.stdout).toMatch(new RegExp(`^\\s+long\\s+${me}\\s+n1\\s+${pid}\\s+.*running$`, "m"))
      expect(table.stdout).toMatch(/^\s+n1\s+alive\s+\S+ m?s ago\s+1\s/m)

      // Every key the JSON has is in the README's table of them.
      const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8")
      const section = readme.slice(readme.indexOf("### Looking at the queue"), readme.indexOf("### Cancelling"))
      const keys = new Set([view, view.queued[0], view.running[0], view.nodes[0]].flatMap((o) => Object.keys(o)))
      expect([...keys].filter((key) => !section.includes(`\`${key}\``))).toEqual([])
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("-C: a job the load gate holds says so, with the node's estimate and limit", async () => {
    const t = workspace("status-load")
    const release = path.join(t.root, "release")
    submit(t.spool, "first", held(path.join(t.root, "first.pid"), release))
    submit(t.spool, "second", held(path.join(t.root, "second.pid"), release))
    // -C 0.01: closed at any load; and a job started counts 1 in the estimate, so one at most starts.
    const daemon = start(["--node-id", "n1", "-C", "0.01", "--grace", "1s", "--lease", "4s", "-o", t.archive, t.spool], t.root)
    try {
      let view = await statusJson(t.spool, t.root)
      // Until the first heartbeat is written the node is not known.
      await waitFor("the gate's hold in status", async () => {
        view = await statusJson(t.spool, t.root)
        return view.queued.length > 0 && view.queued.every((q: { reason: string }) => q.reason === "load")
      })
      for (const q of view.queued) expect(q.detail).toMatch(/^load: \d+(\.\d+)? on n1, -C 0\.01$/)
      expect(view.nodes).toMatchObject([{ node: "n1", cpuLimit: 0.01 }])
      expect(view.queued.length + view.running.length).toBe(2)
      const table = await run(["status", t.spool], t.root)
      expect(table.stdout).toMatch(/^\s+(first|second)\s+\S+\s+\d+ m?s\s+load: \S+ on n1, -C 0\.01$/m)
    } finally {
      fs.writeFileSync(release, "")
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("a file that will not run says why: no execute bit (left in the spool), set-uid (rejected when claimed)", async () => {
    const t = workspace("status-refused")
    fs.writeFileSync(path.join(t.spool, "no-x"), "#!/bin/sh\n", { mode: 0o644 })
    fs.writeFileSync(path.join(t.spool, "setuid"), "#!/bin/sh\n", { mode: 0o755 })
    fs.chmodSync(path.join(t.spool, "setuid"), 0o4755)
    submit(t.spool, "fine", "exit 0")
    // No pmjq has run here: no node, but what is wrong with a file is said all the same.
    const view = await statusJson(t.spool, t.root)
    const why = Object.fromEntries(view.queued.map((q: { name: string; reason: string; detail: string }) => [q.name, [q.reason, q.detail]]))
    expect(why).toEqual({
      "no-x": ["refused", "refused: no execute bit; left in the spool until it has one (chmod +x)"],
      setuid: ["refused", "refused: set-uid or set-gid; rejected when claimed, never run, unless the file changes"],
      fine: ["no-node", "no node: no pmjq takes jobs from this spool"]
    })
    // Counted apart: the oldest is the oldest that may run.
    expect((await run(["status", t.spool], t.root)).stdout).toMatch(/^queued: 3 \(2 refused\), oldest \S+ \S+ \(fine\)$/m)
  })

  it("--watch to a pipe: a view a second, no escapes; Ctrl-C (SIGINT) ends it with 0", async () => {
    const t = workspace("status-watch")
    submit(t.spool, "queued-1", "exit 0")
    const watching = start(["status", "--watch", t.spool], t.root)
    const frames = () => watching.output().stdout.match(/^spool .* at \S+$/gm) ?? []
    await waitFor("two frames", () => frames().length >= 2)
    watching.child.kill("SIGINT")
    const { code } = await watching.exited
    expect(code).toBe(0)
    const [first, second] = frames()
    expect(Date.parse(second!.split(" at ")[1]!) - Date.parse(first!.split(" at ")[1]!)).toBeGreaterThanOrEqual(900)
    expect(watching.output().stdout).not.toContain("\u001b")
    expect(watching.output().stdout).toMatch(/^\s+queued-1\s+\S+\s+\d+ m?s\s+no node: /m)
    expect(watching.output().stderr).toBe("")
  })

  it("a missing spool is one line and status 66", async () => {
    const t = workspace("status-missing")
    const result = await run(["status", path.join(t.root, "nope")], t.root)
    expect(result.code).toBe(66)
    expect(result.stderr.trim()).toBe(`pmjq: job spool ${path.join(t.root, "nope")} does not exist or is not a directory`)
  })
})

const QA = "pmjq-qa"
const QB = "pmjq-qb"
describe.runIf(runsHere("status with --max-jobs-per-user between real users", rootMissing))("(as root: creates users) pmjq status and the users' share", () => {
  beforeAll(() => addUsers([QA, QB]))
  afterAll(() => removeUsers([QA, QB]))

  it("-j 3, cap 1: each user's second job waits for the share, though a slot is free; shown by owner", async () => {
    const t = sharedSpool("status-share")
    const release = path.join(t.root, "release")
    const wait = `while [ ! -e "${release}" ]; do sleep 0.1; done`
    for (const [user, name] of [[QA, "qa-1"], [QA, "qa-2"], [QB, "qb-1"], [QB, "qb-2"]] as const) submitAs(user, t.spool, name, wait)
    // The default lease: beats 15 s apart, so the running jobs' pids are found on this host.
    const daemon = start(["--node-id", "n1", "--run-as-owner", "-j", "3", "--max-jobs-per-user", "1", "--grace", "1s", "-o", t.archive, t.spool], t.root)
    try {
      let view = await statusJson(t.spool, t.root)
      await waitFor("one job of each user running", async () => {
        view = await statusJson(t.spool, t.root)
        return view.running.length === 2
      })
      expect(view.running.map((r: { user: string }) => r.user).sort()).toEqual([QA, QB])
      for (const r of view.running) expect(fs.readFileSync(`/proc/${r.pid}/cmdline`, "utf8")).toContain(`/.pmjq/running/n1/${r.name}`)
      expect(view.queued.map((q: { name: string; user: string; reason: string; detail: string }) => [q.name, q.user, q.reason, q.detail])).toEqual([
        ["qa-2", QA, "user-share", `user share: ${QA} runs 1 on n1, --max-jobs-per-user 1, others wait`],
        ["qb-2", QB, "user-share", `user share: ${QB} runs 1 on n1, --max-jobs-per-user 1, others wait`]
      ])
      expect(view.nodes).toMatchObject([{ node: "n1", running: 2, maxJobs: 3, maxJobsPerUser: 1, runAsOwner: true }])
    } finally {
      fs.writeFileSync(release, "")
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("held by pmjq hold and by #PMJQ --hold, paused: said so; a 0700 job's lines are unknown to another user, not guessed", async () => {
    const t = sharedSpool("status-held")
    const bin = publicBin()
    const daemon = start(["--node-id", "n1", "--run-as-owner", "--poll", "1s", "-o", t.archive, t.spool], t.root)
    try {
      await waitFor("the node's heartbeat", () => fs.existsSync(path.join(t.spool, ".pmjq", "nodes", "n1")))
      expect((await run(["pause", "--reason", "disk swap", t.spool], t.root)).code).toBe(0)
      await waitFor("the node paused", () => daemon.output().stderr.includes("claiming nothing new"))
      submitAs(QA, t.spool, "secret", "#!/bin/sh\n#PMJQ --hold\nexit 0\n", 0o700)
      submitAs(QA, t.spool, "parked", "exit 0")
      expect(asUser(QA, [process.execPath, bin, "hold", t.spool, "parked"]).status).toBe(0)
      submitAs(QB, t.spool, "ready", "exit 0")

      const byRoot = await statusJson(t.spool, t.root)
      expect(byRoot.paused).toEqual({ spool: { by: "root", at: expect.any(String), reason: "disk swap" }, nodes: {} })
      expect(byRoot.queued.map((q: { name: string; user: string; reason: string; detail: string; held: boolean | null }) => [q.name, q.user, q.reason, q.detail, q.held])).toEqual([
        ["secret", QA, "held", "held by its #PMJQ --hold: pmjq release to start it", true],
        ["parked", QA, "held", "held by pmjq hold: pmjq release to start it", true],
        ["ready", QB, "paused", `paused: the spool, by root at ${byRoot.paused.spool.at} (disk swap)`, false]
      ])
      const table = await run(["status", t.spool], t.root)
      expect(table.stdout).toMatch(/^paused: the spool, by root at \S+ \(disk swap\)$/m)
      expect(table.stdout).toMatch(/^queued: 3 \(2 held\), oldest \S+ m?s \(ready\)$/m)

      // QB may not open QA's 0700 file: its --hold is not seen, and status says it does not know.
      const byQb = asUser(QB, [process.execPath, bin, "status", "--json", t.spool])
      expect(byQb.status).toBe(0)
      const secret = JSON.parse(byQb.stdout).queued.find((q: { name: string }) => q.name === "secret")
      expect(secret).toMatchObject({ reason: "unknown", held: null, after: null, afterAny: null, priority: null })
      expect(secret.detail).toMatch(/^unknown: its #PMJQ lines cannot be read \(its owner's or root's pmjq status can\); if it has none, paused: /)
    } finally {
      await run(["resume", t.spool], t.root)
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })
})
