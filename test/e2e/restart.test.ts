/** --on-stop leave: jobs outlive pmjq (a stop, a SIGKILL) and the next pmjq with the node id adopts them. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { identify, stillRuns } from "../../src/process/proc.js"
import { entries, exitOf, isAlive, lines, records, run, signalIfSame, start, submit, waitFor, workspace } from "./harness.js"


const flagged = (ledger: string, name: string, flag: string, end: string) =>
  `echo ${name} >> ${ledger}; while [ ! -e ${flag} ]; do sleep 0.05; done; ${end}`

describe("--on-stop leave", () => {
  it("a job ending while no pmjq runs and one running across two restarts: each archived once, with its real status and output", async () => {
    const t = workspace("leave")
    const [flagA, flagB] = [path.join(t.root, "a"), path.join(t.root, "b")]
    const folder = path.join(t.spool, ".pmjq/running/r1")
    const pmjq = () => start(["--node-id", "r1", "--on-stop", "leave", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    const first = pmjq()
    submit(t.spool, "a", flagged(t.ledger, "a", flagA, "echo out-a; exit 3"))
    submit(t.spool, "b", flagged(t.ledger, "b", flagB, "echo out-b"))
    await waitFor("both jobs started", () => lines(t.ledger).length === 2)
    // pmjq has heard their pids (a job it has not yet heard of is still kept, but by its spawners alone).
    await waitFor("both pids known", () => (first.output().stderr.match(/INFO started job=/g) ?? []).length === 2)
    first.child.kill("SIGTERM")
    expect(await exitOf(first)).toBe(0)
    expect(first.output().stderr).toMatch(/leaving: running jobs go on under the spawners/)
    // No pmjq runs: a ends, and its spawner records it.
    fs.writeFileSync(flagA, "")
    await waitFor("a's record", () => entries(folder).includes(".a.json"))
    const second = pmjq()
    await waitFor("a archived", () => records(t.errors).length === 1)
    expect(records(t.errors)).toMatchObject([{ name: "a", outcome: "failed", exitCode: 3 }])
    expect(fs.readFileSync(path.join(t.errors, `${records(t.errors)[0].entry}.out`), "utf8")).toBe("out-a\n")
    await waitFor("b adopted", () => /adopted: left running by the pmjq before job=b/.test(second.output().stderr))
    second.child.kill("SIGTERM")
    expect(await exitOf(second)).toBe(0)
    // Its last heartbeat hands the adopted job on, with its process.
    expect(JSON.parse(fs.readFileSync(path.join(t.spool, ".pmjq/nodes/r1"), "utf8"))).toMatchObject({ left: true, jobs: [{ name: "b", pid: expect.any(Number), startTicks: expect.any(Number) }] })
    const third = pmjq()
    try {
      await waitFor("b adopted again", () => /adopted: left running by the pmjq before job=b/.test(third.output().stderr))
      fs.writeFileSync(flagB, "")
      await waitFor("b archived", () => records(t.archive).length === 1)
      expect(records(t.archive)).toMatchObject([{ name: "b", outcome: "succeeded", exitCode: 0, attempt: 1 }])
      expect(fs.readFileSync(path.join(t.archive, `${records(t.archive)[0].entry}.out`), "utf8")).toBe("out-b\n")
      // Each ran once: no second start, no second entry.
      expect([...lines(t.ledger)].sort()).toEqual(["a", "b"])
      expect(records(t.errors)).toHaveLength(1)
      await waitFor("the folder emptied", () => entries(folder).filter((n) => !n.endsWith(".tmp")).length === 0)
    } finally {
      third.child.kill("SIGTERM")
      // Whatever happened, no job waits for ever.
      for (const flag of [flagA, flagB]) fs.writeFileSync(flag, "")
    }
    expect(await exitOf(third)).toBe(0)
  })

  it("a --drain that adopts a job counts it: one left running fails, the drain says so and exits 1", async () => {
    const t = workspace("leave-drain")
    const flag = path.join(t.root, "flag")
    const first = start(["--node-id", "d1", "--on-stop", "leave", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    submit(t.spool, "left", flagged(t.ledger, "left", flag, "exit 3"))
    await waitFor("its pid known", () => /INFO started job=left/.test(first.output().stderr))
    first.child.kill("SIGTERM")
    expect(await exitOf(first)).toBe(0)
    const drain = start(["--node-id", "d1", "--drain", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      await waitFor("adopted", () => /adopted: left running by the pmjq before job=left/.test(drain.output().stderr))
    } finally {
      fs.writeFileSync(flag, "")
    }
    expect(await exitOf(drain)).toBe(1)
    expect(drain.output().stderr.trimEnd().split("\n").at(-1)).toMatch(new RegExp(`^drain: 1 job in \\d+\\.\\d s: 0 succeeded, 1 failed \\(see ${t.errors}\\)$`))
    expect(records(t.errors)).toMatchObject([{ name: "left", outcome: "failed", exitCode: 3 }])
  })

  it("after a SIGKILL its jobs run on, its heartbeat kept fresh: another node does not requeue them while their spawner lives", async () => {
    const t = workspace("leave-kill")
    const flag = path.join(t.root, "flag")
    const heartbeat = path.join(t.spool, ".pmjq/nodes/k1")
    const killed = start(["--node-id", "k1", "--on-stop", "leave", "--lease", "3s", "-o", t.archive, t.spool], t.root)
    submit(t.spool, "long", flagged(t.ledger, "long", flag, "echo finished"))
    await waitFor("the job started", () => lines(t.ledger).length === 1)
    killed.child.kill("SIGKILL")
    await exitOf(killed)
    // Its spawner beats for it: the heartbeat's time moves on although pmjq is gone.
    const beatAt = () => Date.parse(JSON.parse(fs.readFileSync(heartbeat, "utf8")).beatAt)
    const before = beatAt()
    await waitFor("a fresh beat", () => beatAt() > before)
    expect(JSON.parse(fs.readFileSync(heartbeat, "utf8")).left).toBe(true)
    // Leases of 3 s, not 1: with 1, a node cuts itself off (no beat written
    // for half its lease) whenever a loaded machine holds it up for half a
    // second, the likely end of a CI run where k2 never archived the job.
    const other = start(["--node-id", "k2", "--lease", "3s", "--poll", "1s", "-o", t.archive, t.spool], t.root)
    try {
      // Six of its recovery rounds, and two of its leases, go by.
      await waitFor("k2 watching", () => /watching/.test(other.output().stderr))
      const until = Date.now() + 6000
      await waitFor("6 s", () => Date.now() > until)
      expect(lines(t.ledger)).toEqual(["long"])
      expect(fs.readdirSync(t.spool).filter((n) => !n.startsWith("."))).toEqual([])
      expect(other.output().stderr).not.toMatch(/node dead/)
      // It ends: its spawner records it and exits; k1 is dead now, and k2 archives it as recorded.
      fs.writeFileSync(flag, "")
      await waitFor("archived", () => records(t.archive).length === 1, 60_000)
      expect(records(t.archive)).toMatchObject([{ name: "long", node: "k1", outcome: "succeeded" }])
      expect(lines(t.ledger)).toEqual(["long"])
    } finally {
      // Kept for whoever looks into a failure.
      fs.writeFileSync(path.join(t.root, "log-k2"), other.output().stderr)
      other.child.kill("SIGTERM")
      fs.writeFileSync(flag, "")
    }
    expect((await other.exited).code).toBe(0)
  })

  it("without --node-id, the next pmjq on this host takes the id of the run that left, and adopts its job (its end counted in the metrics)", async () => {
    const t = workspace("leave-default")
    const flag = path.join(t.root, "flag")
    const first = start(["--on-stop", "leave", "-o", t.archive, t.spool], t.root)
    submit(t.spool, "long", flagged(t.ledger, "long", flag, "echo out"))
    await waitFor("the job started", () => /INFO started job=long/.test(first.output().stderr))
    first.child.kill("SIGTERM")
    expect(await exitOf(first)).toBe(0)
    const id = /node=(\S+)/.exec(first.output().stderr)![1]!
    const prom = path.join(t.root, "pmjq.prom")
    const second = start(["--on-stop", "leave", "-o", t.archive, "--metrics-file", prom, t.spool], t.root)
    try {
      await waitFor("adopted", () => /adopted: left running by the pmjq before job=long/.test(second.output().stderr))
      await waitFor("watching", () => /INFO watching/.test(second.output().stderr))
      expect(second.output().stderr).toContain(`watching node=${id} `)
      fs.writeFileSync(flag, "")
      await waitFor("archived", () => records(t.archive).length === 1)
      expect(records(t.archive)).toMatchObject([{ name: "long", outcome: "succeeded", node: id }])
      expect(lines(t.ledger)).toEqual(["long"])
      // Written every 5 s.
      await waitFor("the adopted job counted", () => /^pmjq_jobs_finished_total\{outcome="succeeded"\} 1$/m.test(fs.readFileSync(prom, "utf8")))
    } finally {
      second.child.kill("SIGTERM")
      fs.writeFileSync(flag, "")
    }
    expect(await exitOf(second)).toBe(0)
  })

  it("jobs left by a pmjq whose spawners speak a newer protocol are refused clearly (75), never settled as a dead node's", async () => {
    const t = workspace("leave-newer")
    // Makes pmjq's state folders, as a first run would.
    expect((await run(["--node-id", "p1", "--drain", t.spool], t.root)).code).toBe(0)
    submit(path.join(t.spool, ".pmjq/running"), "p1-placeholder", "true")
    fs.mkdirSync(path.join(t.spool, ".pmjq/running/p1"), { mode: 0o755 })
    fs.renameSync(path.join(t.spool, ".pmjq/running/p1-placeholder"), path.join(t.spool, ".pmjq/running/p1/job"))
    // Its spawner (this test process stands for it) still runs.
    fs.writeFileSync(path.join(t.spool, ".pmjq/nodes/p1"), JSON.stringify({
      node: "p1", host: os.hostname(), pid: 2 ** 22 + 1, helpers: [process.pid], beatAt: new Date().toISOString(), leaseMs: 60_000,
      jobs: [{ name: "job", pid: process.pid }], left: true, protocol: 99
    }))
    const refused = await run(["--node-id", "p1", "-o", t.archive, t.spool], t.root)
    expect(refused.code).toBe(75)
    expect(refused.stderr).toMatch(/^pmjq: node p1's running jobs were left by a pmjq whose spawners speak protocol 99; this pmjq speaks 1 and cannot adopt them/m)
    expect(fs.existsSync(path.join(t.spool, ".pmjq/running/p1/job"))).toBe(true)
    expect(entries(t.spool).filter((n) => !n.startsWith("."))).toEqual([])
  })

  it("an adopted job whose spawner died is stopped and recorded as interrupted, never run again", async () => {
    const t = workspace("leave-orphan")
    const first = start(["--node-id", "o1", "--on-stop", "leave", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    submit(t.spool, "long", `echo $$ >> ${t.ledger}; sleep 600`)
    await waitFor("its pid known", () => /INFO started job=long/.test(first.output().stderr))
    first.child.kill("SIGTERM")
    expect(await exitOf(first)).toBe(0)
    // Only the spawners still there: one with no job left at once, and its
    // pid may be another test's process by now.
    const left = JSON.parse(fs.readFileSync(path.join(t.spool, ".pmjq/nodes/o1"), "utf8")) as { spawners: Array<{ pid: number; startTicks: number }> }
    for (const spawner of left.spawners) signalIfSame(spawner, "SIGKILL")
    const jobPid = Number(lines(t.ledger)[0])
    expect(isAlive(jobPid)).toBe(true)
    const job = identify(jobPid)
    const second = start(["--node-id", "o1", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      await waitFor("recorded", () => records(t.errors).length === 1)
      expect(records(t.errors)).toMatchObject([{ name: "long", outcome: "interrupted", reason: "its spawner died while pmjq was away" }])
      await waitFor("the job stopped", () => !stillRuns(job))
      expect(lines(t.ledger)).toHaveLength(1)
      expect(entries(t.spool).filter((n) => !n.startsWith("."))).toEqual([])
    } finally {
      second.child.kill("SIGTERM")
      signalIfSame(job, "SIGKILL", true)
    }
    expect(await exitOf(second)).toBe(0)
  })

  it("a node id alive on another host (a fresh heartbeat from there) is refused (75), its heartbeat untouched", async () => {
    const t = workspace("elsewhere")
    expect((await run(["--node-id", "e1", "--drain", t.spool], t.root)).code).toBe(0)
    const beat = JSON.stringify({ node: "e1", host: "another-host", pid: 4242, helpers: [], beatAt: new Date().toISOString(), leaseMs: 60_000 })
    fs.writeFileSync(path.join(t.spool, ".pmjq/nodes/e1"), beat)
    const refused = await run(["--node-id", "e1", t.spool], t.root)
    expect(refused.code).toBe(75)
    expect(refused.stderr).toMatch(/^pmjq: node e1 is alive on host another-host \(heartbeat \d+ s old\)/m)
    expect(fs.readFileSync(path.join(t.spool, ".pmjq/nodes/e1"), "utf8")).toBe(beat)
  })

  it("without --on-stop leave, a stop still stops the jobs (the default)", async () => {
    const t = workspace("stop-default")
    const daemon = start(["--node-id", "s1", "--grace", "0", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    submit(t.spool, "long", `echo $$ >> ${t.ledger}; sleep 600`)
    // Started as pmjq knows it (its spawner's report), not only as the job says:
    // a stop before the report hands the file back to the spool instead.
    await waitFor("the job started", () => lines(t.ledger).length === 1 && /started job=long/.test(daemon.output().stderr))
    daemon.child.kill("SIGTERM")
    expect((await daemon.exited).code).toBe(0)
    expect(records(t.errors)).toMatchObject([{ name: "long", outcome: "interrupted" }])
  })
})

describe("SIGHUP", () => {
  it("under load restarts pmjq in place: the running jobs adopted, the queued ones run, nothing lost, nothing run twice", async () => {
    const t = workspace("hup")
    const daemon = start(["-j", "2", "-o", t.archive, t.spool], t.root)
    const heartbeat = () => {
      const dir = path.join(t.spool, ".pmjq/nodes")
      const [node] = entries(dir).filter((n) => !n.startsWith("."))
      return node === undefined ? null : JSON.parse(fs.readFileSync(path.join(dir, node), "utf8")) as { pid: number; startTicks?: number; node: string }
    }
    try {
      await waitFor("watching", () => /watching/.test(daemon.output().stderr))
      // Each job runs until the test says go: the two running across the restart
      // are still running when the new pmjq starts, however slow the machine.
      const go = path.join(t.root, "go")
      for (let i = 1; i <= 6; i++) submit(t.spool, `j${i}`, `echo j${i} >> ${t.ledger}; while [ ! -e ${go} ]; do sleep 0.05; done`)
      await waitFor("two running", () => lines(t.ledger).length >= 2)
      daemon.child.kill("SIGHUP")
      expect(await exitOf(daemon)).toBe(0)
      await waitFor("both adopted", () => (daemon.output().stderr.match(/adopted: left running by the pmjq before/g) ?? []).length === 2)
      fs.writeFileSync(go, "")
      await waitFor("all archived", () => records(t.archive).length === 6, 60_000)
      expect([...lines(t.ledger)].sort()).toEqual(["j1", "j2", "j3", "j4", "j5", "j6"])
      expect(records(t.archive).map((r) => r.name).sort()).toEqual(["j1", "j2", "j3", "j4", "j5", "j6"])
      expect(records(t.archive).every((r) => r.outcome === "succeeded" && r.attempt === 1)).toBe(true)
      expect(daemon.output().stderr).toMatch(/adopted: left running by the pmjq before/)
      // The same node, another process.
      await waitFor("the new heartbeat", () => heartbeat()?.pid !== daemon.child.pid)
      expect(heartbeat()!.node).toBe(`${JSON.parse(JSON.stringify(records(t.archive)[0])).node}`)
    } finally {
      const hb = heartbeat()
      if (hb !== null && hb.pid !== daemon.child.pid && hb.startTicks !== undefined) signalIfSame({ pid: hb.pid, startTicks: hb.startTicks }, "SIGTERM")
    }
  })
})
