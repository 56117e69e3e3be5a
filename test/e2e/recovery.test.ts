/**
 * Crashes and many nodes, for real: pmjq killed with SIGKILL, restarted, and
 * several pmjq processes sharing one spool.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { entries, lines, records, run, start, submit, waitFor, workspace } from "./harness.js"
import { stillRuns } from "../../src/process/proc.js"

const setup = workspace


/** A pid that surely belongs to no process any more. */
const deadPid = () => {
  const child = cp.spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" })
  return Number(child.stdout.trim())
}

/** What a node that died mid-way leaves: a running folder, and maybe a heartbeat. */
const ghost = (spool: string, node: string, heartbeat: Record<string, unknown> | null) => {
  const folder = path.join(spool, ".pmjq", "running", node)
  fs.mkdirSync(folder, { recursive: true })
  if (heartbeat !== null) {
    fs.mkdirSync(path.join(spool, ".pmjq", "nodes"), { recursive: true })
    fs.writeFileSync(path.join(spool, ".pmjq", "nodes", node), JSON.stringify({ node, helpers: [], leaseMs: 60000, ...heartbeat }))
  }
  return folder
}

const killHard = async (daemon: ReturnType<typeof start>) => {
  daemon.child.kill("SIGKILL")
  await daemon.exited
}

/**
 * Submits NAME (its first attempt hangs, later ones end at once), kills pmjq
 * with SIGKILL while attempt 1 runs, then drains with the same arguments.
 */
const crashThenDrain = async (t: ReturnType<typeof setup>, args: ReadonlyArray<string>, name: string) => {
  submit(t.spool, name, `echo "attempt $PMJQ_ATTEMPT" >> "${t.ledger}"\necho "output of attempt $PMJQ_ATTEMPT"\n[ "$PMJQ_ATTEMPT" = 1 ] && sleep 60\nexit 0`)
  const first = start(args, t.root)
  await waitFor("first attempt running", () => lines(t.ledger).length === 1)
  await killHard(first)
  return run(["--drain", ...args], t.root)
}

describe("crash recovery", () => {
  it("a job running when its node was killed runs again at the next start, as attempt 2; the cut attempt's output is kept", async () => {
    const t = setup("killed")
    const second = await crashThenDrain(t, ["-o", t.archive, "-e", t.errors, t.spool], "long")
    expect(second.code).toBe(0)
    expect(lines(t.ledger)).toEqual(["attempt 1", "attempt 2"])
    expect(records(t.archive)).toMatchObject([{ name: "long", outcome: "succeeded", attempt: 2 }])
    const done = records(t.archive)[0]!
    expect(fs.readFileSync(path.join(t.archive, done.entry + ".out"), "utf8")).toBe("output of attempt 2\n")
    // Attempt 1 left output: it is in the error dir, with a record saying what happened, and no script.
    const cut = records(t.errors)
    expect(cut).toMatchObject([{ name: "long", outcome: "interrupted", attempt: 1 }])
    expect(cut[0]!.reason).toMatch(/died while it ran; run again as attempt 2/)
    expect(fs.readFileSync(path.join(t.errors, cut[0]!.entry + ".out"), "utf8")).toBe("output of attempt 1\n")
    expect(fs.existsSync(path.join(t.errors, cut[0]!.entry))).toBe(false)
    expect(second.stderr).toMatch(/node dead; recovering its jobs dead=\S+ reason="its process \d+ on this host is gone"/)
    // Nothing left behind: no running folders, no heartbeats, no attempt notes.
    expect(entries(path.join(t.spool, ".pmjq", "running"))).toEqual([])
    expect(entries(path.join(t.spool, ".pmjq", "nodes"))).toEqual([])
    expect(entries(path.join(t.spool, ".pmjq", "attempts"))).toEqual([])
  })

  it("the same --node-id started again after a crash settles what its previous run left", async () => {
    const t = setup("same-id")
    const second = await crashThenDrain(t, ["--node-id", "fixed", "-o", t.archive, t.spool], "again")
    expect(second.code).toBe(0)
    expect(lines(t.ledger)).toEqual(["attempt 1", "attempt 2"])
    expect(records(t.archive).filter((r) => r.outcome === "succeeded")).toMatchObject([{ name: "again", attempt: 2, node: "fixed" }])
  })

  it("--max-attempts 2: a job whose node dies under it twice goes to the error dir as interrupted, not run a third time", async () => {
    const t = setup("max-attempts")
    const args = ["-o", t.archive, "-e", t.errors, "--max-attempts", "2", t.spool]
    submit(t.spool, "doomed", `echo "attempt $PMJQ_ATTEMPT" >> "${t.ledger}"\nsleep 60`)
    for (const n of [1, 2]) {
      const daemon = start(args, t.root)
      await waitFor(`attempt ${n} running`, () => lines(t.ledger).length === n)
      await killHard(daemon)
    }
    const last = await run(["--drain", ...args], t.root)
    expect(last.code).toBe(0)
    expect(lines(t.ledger)).toEqual(["attempt 1", "attempt 2"])
    expect(records(t.archive)).toEqual([])
    const recs = records(t.errors).filter((r) => fs.existsSync(path.join(t.errors, r.entry)))
    expect(recs).toMatchObject([{ name: "doomed", outcome: "interrupted", attempt: 2 }])
    expect(recs[0]!.reason).toMatch(/attempt 2 of --max-attempts 2/)
    expect(fs.readFileSync(path.join(t.errors, recs[0]!.entry), "utf8")).toContain("sleep 60")
  })

  it("--orphans fail: the interrupted job goes to the error dir at once", async () => {
    const t = setup("orphans-fail")
    submit(t.spool, "once", `echo ran >> "${t.ledger}"\nsleep 60`)
    const daemon = start(["-o", t.archive, "-e", t.errors, t.spool], t.root)
    await waitFor("running", () => lines(t.ledger).length === 1)
    await killHard(daemon)
    const after = await run(["-o", t.archive, "-e", t.errors, "--orphans", "fail", "--drain", t.spool], t.root)
    expect(after.code).toBe(0)
    expect(lines(t.ledger)).toEqual(["ran"])
    expect(records(t.errors)).toMatchObject([{ name: "once", outcome: "interrupted", attempt: 1 }])
  })

  it("a job that ended but was not archived when its node died is archived as recorded, never run again", async () => {
    const t = setup("recorded")
    const folder = ghost(t.spool, "ghost", { host: os.hostname(), pid: deadPid(), beatAt: new Date().toISOString() })
    fs.writeFileSync(path.join(folder, "done"), `#!/bin/sh\necho ran >> "${t.ledger}"\n`, { mode: 0o755 })
    fs.writeFileSync(path.join(folder, ".done.out"), "its output\n")
    const record = {
      name: "done", node: "ghost", host: os.hostname(), pid: 4242, user: "root", attempt: 1,
      claimedAt: "2026-01-02T03:04:05.000Z", startedAt: "2026-01-02T03:04:05.100Z", endedAt: "2026-01-02T03:04:06.000Z",
      durationMs: 900, outcome: "failed", exitCode: 3, signal: null, reason: "exited with status 3"
    }
    fs.writeFileSync(path.join(folder, ".done.json"), JSON.stringify(record))
    const result = await run(["-o", t.archive, "-e", t.errors, "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    expect(lines(t.ledger)).toEqual([])
    expect(records(t.errors)).toEqual([{ entry: "20260102T030406.000Z_done", ...record }])
    expect(fs.readFileSync(path.join(t.errors, "20260102T030406.000Z_done.out"), "utf8")).toBe("its output\n")
    expect(fs.existsSync(folder)).toBe(false)
  })

  it("a node on another host is recovered only once its heartbeat is older than --lease", async () => {
    const t = setup("lease")
    const beatAt = Date.now()
    const folder = ghost(t.spool, "far", { host: "another-host", pid: 1, beatAt: new Date(beatAt).toISOString() })
    fs.writeFileSync(path.join(folder, "far-job"), `#!/bin/sh\necho "ran $PMJQ_ATTEMPT $(date +%s%3N)" >> "${t.ledger}"\n`, { mode: 0o755 })
    const daemon = start(["-o", t.archive, "--lease", "3s", "--poll", "500ms", t.spool], t.root)
    try {
      await waitFor("recovered and run", () => lines(t.ledger).length === 1)
      const [ran, attempt, at] = lines(t.ledger)[0]!.split(" ")
      expect([ran, attempt]).toEqual(["ran", "2"])
      // Not before the lease ran out, however long pmjq took to start: the job
      // says when it ran, the heartbeat when it was fresh.
      expect(Number(at) - beatAt).toBeGreaterThanOrEqual(3_000)
      expect(daemon.output().stderr).toMatch(/dead=far reason="its last heartbeat is \d+ s old \(lease 3 s\)"/)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("a node folder with no heartbeat is recovered once it has not changed for a lease", async () => {
    const t = setup("no-heartbeat")
    const folder = ghost(t.spool, "silent", null)
    fs.writeFileSync(path.join(folder, "left"), `#!/bin/sh\necho ran >> "${t.ledger}"\n`, { mode: 0o755 })
    const old = new Date(Date.now() - 120_000)
    fs.utimesSync(folder, old, old)
    const result = await run(["-o", t.archive, "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    expect(lines(t.ledger)).toEqual(["ran"])
  })

  it("a node killed in its first beat left only its heartbeat's aside: it is removed, and a live node's is not", async () => {
    const t = setup("first-beat")
    const nodes = path.join(t.spool, ".pmjq", "nodes")
    fs.mkdirSync(nodes, { recursive: true })
    const beat = (node: string, pid: number) => JSON.stringify({ node, host: os.hostname(), pid, helpers: [], beatAt: new Date().toISOString(), leaseMs: 60000 })
    fs.writeFileSync(path.join(nodes, ".killed.tmp"), beat("killed", deadPid()))
    fs.writeFileSync(path.join(nodes, ".writing.tmp"), beat("writing", process.pid))
    const result = await run(["-o", t.archive, "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    expect(entries(nodes)).toEqual([".writing.tmp"])
  })

  it("a finished job whose archive dir turned into a file is kept, and archived once the dir is back; it runs once", async () => {
    const t = setup("archive-gone")
    const daemon = start(["-o", t.archive, t.spool], t.root)
    try {
      await waitFor("watching", () => daemon.output().stderr.includes("watching"))
      fs.rmSync(t.archive, { recursive: true })
      fs.writeFileSync(t.archive, "not a directory")
      submit(t.spool, "patient", `echo ran >> "${t.ledger}"`)
      await waitFor("archival failed", () => daemon.output().stderr.includes("not archived yet; kept, will retry"))
      // Kept whole where it was claimed.
      const running = path.join(t.spool, ".pmjq", "running")
      const node = entries(running)[0]!
      expect(entries(path.join(running, node))).toEqual([".patient.err", ".patient.json", ".patient.out", "patient"])
      fs.rmSync(t.archive)
      await waitFor("archived on a retry", () => records(t.archive).length === 1)
      expect(records(t.archive)).toMatchObject([{ name: "patient", outcome: "succeeded" }])
      expect(lines(t.ledger)).toEqual(["ran"])
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })
})

describe("archival across a restart", () => {
  it("a finished job that could not be archived when pmjq stopped is archived by the next start, and not run again", async () => {
    const t = setup("archive-restart")
    const first = start(["-o", t.archive, t.spool], t.root)
    await waitFor("watching", () => first.output().stderr.includes("watching"))
    fs.rmSync(t.archive, { recursive: true })
    fs.writeFileSync(t.archive, "not a directory")
    submit(t.spool, "kept", `echo ran >> "${t.ledger}"\necho its output`)
    await waitFor("archival failed", () => first.output().stderr.includes("not archived yet; kept, will retry"))
    first.child.kill("SIGTERM")
    expect((await first.exited).code).toBe(0)
    // A job waiting to retry its archival does not hold the stop up for --grace.
    expect(first.output().stderr).not.toContain("INFO stopping")
    // Kept whole, with its record, in the stopped node's folder.
    const running = path.join(t.spool, ".pmjq", "running")
    expect(entries(path.join(running, entries(running)[0]!))).toEqual([".kept.err", ".kept.json", ".kept.out", "kept"])

    fs.rmSync(t.archive)
    const second = await run(["-o", t.archive, "--drain", t.spool], t.root)
    expect(second.code).toBe(0)
    expect(records(t.archive)).toMatchObject([{ name: "kept", outcome: "succeeded" }])
    expect(fs.readFileSync(path.join(t.archive, records(t.archive)[0]!.entry + ".out"), "utf8")).toBe("its output\n")
    expect(lines(t.ledger)).toEqual(["ran"])
    expect(entries(running)).toEqual([])
  })
})

describe("many nodes on one spool", () => {
  it("three pmjq processes drain 300 jobs together: each runs exactly once, and each node did some", async () => {
    const t = setup("three-nodes")
    for (let i = 0; i < 300; i++) submit(t.spool, `job-${i}`, `echo "$PMJQ_JOB $PMJQ_NODE" >> "${t.ledger}"\nsleep 0.01`)
    const results = await Promise.all(["a", "b", "c"].map((id) => run(["--node-id", id, "-j", "4", "-o", t.archive, "--drain", t.spool], t.root)))
    expect(results.map((r) => r.code)).toEqual([0, 0, 0])
    const ran = lines(t.ledger)
    expect(ran).toHaveLength(300)
    expect(new Set(ran.map((l) => l.split(" ")[0])).size).toBe(300)
    expect(new Set(ran.map((l) => l.split(" ")[1]))).toEqual(new Set(["a", "b", "c"]))
    expect(records(t.archive)).toHaveLength(300)
  })

  it("a node publishes a heartbeat while it runs, and takes it away when it stops", async () => {
    const t = setup("heartbeat")
    const daemon = start(["--node-id", "n1", "-o", t.archive, "-e", t.errors, "--lease", "4s", t.spool], t.root)
    const file = path.join(t.spool, ".pmjq", "nodes", "n1")
    await waitFor("heartbeat", () => fs.existsSync(file))
    const first = JSON.parse(fs.readFileSync(file, "utf8"))
    expect(first).toMatchObject({ node: "n1", host: os.hostname(), pid: daemon.child.pid, archiveDir: t.archive, errorDir: t.errors, leaseMs: 4000 })
    // No job yet: no spawner runs.
    expect(first.helpers).toEqual([])
    // Every lease/4: a later beat comes within a second.
    await waitFor("next beat", () => JSON.parse(fs.readFileSync(file, "utf8")).beatAt !== first.beatAt)
    submit(t.spool, "one", "true")
    await waitFor("its record", () => records(t.archive).length === 1)
    const busy = JSON.parse(fs.readFileSync(file, "utf8"))
    expect(busy.helpers).toHaveLength(2)
    daemon.child.kill("SIGTERM")
    expect((await daemon.exited).code).toBe(0)
    expect(fs.existsSync(file)).toBe(false)
    expect(fs.existsSync(path.join(t.spool, ".pmjq", "running", "n1"))).toBe(false)
    // By identity (pid and start time): a pid freed may be another process's by now.
    for (const spawner of busy.spawners as Array<{ pid: number; startTicks: number }>) await waitFor("spawner gone", () => !stillRuns(spawner))
  })
})

describe("chaos", () => {
  it("300 jobs while pmjq is killed with SIGKILL 12 times at random moments, then a clean run: each job archived once, and only runs cut by a kill were repeated", async () => {
    const t = setup("chaos")
    const JOBS = 300
    // A run that pmjq's spawner stops (pmjq died) says so: its "killed" line.
    for (let i = 0; i < JOBS; i++) {
      submit(t.spool, `job-${i}`, [
        // Note it, then die of the signal (a handler's duty), so pmjq sees it was stopped.
        `trap 'echo "killed $PMJQ_JOB" >> "${t.ledger}"; trap - TERM; kill -TERM $$' TERM`,
        `echo "start $PMJQ_JOB" >> "${t.ledger}"`,
        "sleep 0.05",
        `echo "end $PMJQ_JOB" >> "${t.ledger}"`
      ].join("\n"))
    }
    // A high --max-attempts: this test is about exactly-once archival, not about giving up.
    const args = ["-j", "8", "-o", t.archive, "-e", t.errors, "--max-attempts", "50", t.spool]
    let kills = 0
    for (let k = 0; k < 12; k++) {
      const daemon = start(args, t.root)
      await new Promise((r) => setTimeout(r, 150 + Math.random() * 600))
      await killHard(daemon)
      kills++
    }
    const final = await run(["--drain", ...args], t.root)
    expect(final.code).toBe(0)
    expect(kills).toBeGreaterThanOrEqual(10)

    // Archived exactly once each, all succeeded: an entry with its script.
    const archived = records(t.archive).filter((r) => fs.existsSync(path.join(t.archive, r.entry)))
    expect(archived).toHaveLength(JOBS)
    expect(new Set(archived.map((r) => r.name)).size).toBe(JOBS)
    expect(archived.filter((r) => r.outcome !== "succeeded")).toEqual([])

    // Every job ran to its end at least once, and every run but one of each was
    // stopped by a kill: a run whose process ended on its own was never repeated,
    // whatever the kills (even one killed between its last line and its exit).
    const tally = new Map<string, { start: number; end: number; killed: number }>()
    for (const line of lines(t.ledger)) {
      const [what, name] = line.split(" ") as ["start" | "end" | "killed", string]
      const counts = tally.get(name) ?? { start: 0, end: 0, killed: 0 }
      counts[what]++
      tally.set(name, counts)
    }
    expect(tally.size).toBe(JOBS)
    expect([...tally].filter(([, c]) => c.end < 1 || c.start - c.killed !== 1)).toEqual([])
    const repeated = [...tally.values()].filter((c) => c.start > 1).length
    // The error dir holds only what cut runs left (script-less, interrupted).
    expect(records(t.errors).filter((r) => r.outcome !== "interrupted" || fs.existsSync(path.join(t.errors, r.entry)))).toEqual([])
    // Nothing left anywhere: not queued, not held by a node.
    expect(entries(t.spool).filter((n) => !n.startsWith("."))).toEqual([])
    expect(entries(path.join(t.spool, ".pmjq", "running"))).toEqual([])
    expect(entries(path.join(t.spool, ".pmjq", "nodes"))).toEqual([])
    console.log(`chaos: ${kills} kills, ${repeated} jobs ran again after a cut run, ${records(t.errors).length} cut runs' output kept`)
  })
})
