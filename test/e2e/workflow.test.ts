/**
 * Workflows on real spools, processes and users: dependencies, priorities,
 * holds and pauses, across two nodes and a restart, and against a hostile user.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { lines, publicBin, records, run, runsHere, start, submit, waitFor, workspace } from "./harness.js"
import { addUsers, asUser, removeUsers, rootMissing, sharedSpool, submitAs } from "./users.js"

const nameOf = (out: string) => out.trim().split("\n")[0]!

describe("dependencies", () => {
  it("a build-test-deploy chain submitted at once runs in order; after a failure the rest is dependency-failed, and --wait says so (65)", async () => {
    const t = workspace("chain")
    const sub = async (...args: Array<string>) => {
      const r = await run(["submit", ...args], t.root)
      expect(r.code, r.stderr).toBe(0)
      return nameOf(r.stdout)
    }
    // Deploy first, then test, then build: the order on disk is the reverse of the order they must run in.
    const build = await sub("--name", "build", t.spool, "--", "sh", "-c", `echo build >> ${t.ledger}`)
    const test = await sub("--name", "test", "--after", build, t.spool, "--", "sh", "-c", `echo test >> ${t.ledger}; exit 3`)
    const deploy = await sub("--name", "deploy", "--after", test, t.spool, "--", "sh", "-c", `echo deploy >> ${t.ledger}`)
    const always = await sub("--name", "cleanup", "--after-any", test, t.spool, "--", "sh", "-c", `echo cleanup >> ${t.ledger}`)
    // Unknown names are refused at submit: a typo would wait for ever.
    const typo = await run(["submit", "--after", "no-such-job", t.spool, "--", "true"], t.root)
    expect(typo.code).toBe(66)
    expect(typo.stderr).toMatch(/no-such-job/)
    const waiting = start(["submit", "--wait", "--after", deploy, t.spool, "--", "echo", "never"], t.root)
    const drained = await run(["--drain", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    expect(drained.code).toBe(1)
    expect(lines(t.ledger)).toEqual(["build", "test", "cleanup"])
    expect(records(t.errors).find((r) => r.name === deploy)).toMatchObject({ outcome: "dependency-failed", reason: `not run: ${test} ended failed` })
    expect(records(t.archive).map((r) => r.name).sort()).toEqual([always, build].sort())
    // The job waiting on deploy: one more drain records it, and its --wait exits 65 saying why.
    await run(["--drain", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    const waited = await waiting.exited
    expect(waited.code).toBe(65)
    expect(waiting.output().stderr).toMatch(new RegExp(`was not run: ${deploy} ended dependency-failed`))
  })

  it("two nodes on one spool: a dependency run by one node frees its dependent on the other; a loop ends dependency-failed; across a restart", async () => {
    const t = workspace("two-nodes")
    submit(t.spool, "second", `#!/bin/sh\n#PMJQ --after=first\necho second $PMJQ_NODE >> ${t.ledger}\n`)
    submit(t.spool, "loop-a", "#!/bin/sh\n#PMJQ --after=loop-b\necho never\n")
    submit(t.spool, "loop-b", "#!/bin/sh\n#PMJQ --after=loop-a\necho never\n")
    // n2 alone first: nothing it may start but the loop; "second" waits for a job that does not exist yet.
    const n2 = start(["--node-id", "n2", "--poll", "200ms", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      await waitFor("the loop recorded", () => records(t.errors).filter((r) => r.outcome === "dependency-failed").length === 2)
      expect(records(t.errors)[0]!.reason).toMatch(/dependency loop: loop-(a|b) → loop-(b|a) → loop-(a|b)/)
      // A restart in the middle: n2 stops, comes back, and "second" still waits.
      n2.child.kill("SIGTERM")
      expect((await n2.exited).code).toBe(0)
      expect(fs.existsSync(path.join(t.spool, "second"))).toBe(true)
      // Status says what it waits for.
      const waiting = JSON.parse((await run(["status", "--json", t.spool], t.root)).stdout)
      expect(waiting.queued.find((q: { name: string }) => q.name === "second")).toMatchObject({ reason: "after", after: ["first"] })
      expect(JSON.stringify(waiting.queued)).toMatch(/after first \(no such job yet\)/)
      const again = start(["--node-id", "n2", "--poll", "200ms", "-o", t.archive, "-e", t.errors, t.spool], t.root)
      try {
        // n1 runs "first" while n2 is paused; then n1 is paused and n2 resumed before "first" ends:
        // "second" is freed by a job another node ran, and runs on n2.
        expect((await run(["pause", "--node", "n2", t.spool], t.root)).code).toBe(0)
        await waitFor("n2 paused", () => again.output().stderr.includes("node n2 paused by"))
        const n1 = start(["--node-id", "n1", "--poll", "200ms", "-o", t.archive, "-e", t.errors, t.spool], t.root)
        try {
          const go = path.join(t.root, "go")
          submit(t.spool, "first", `echo first $PMJQ_NODE >> ${t.ledger}; until [ -e ${go} ]; do sleep 0.05; done`)
          await waitFor("first running on n1", () => lines(t.ledger).includes("first n1"))
          expect((await run(["pause", "--node", "n1", "--reason", "maintenance", t.spool], t.root)).code).toBe(0)
          await waitFor("n1 paused", () => n1.output().stderr.includes("node n1 paused by"))
          expect((await run(["resume", "--node", "n2", t.spool], t.root)).code).toBe(0)
          fs.writeFileSync(go, "")
          await waitFor("second ran", () => lines(t.ledger).length === 2)
          expect(lines(t.ledger)).toEqual(["first n1", "second n2"])
          // The whole spool paused: a new job waits for the resume, on either node.
          expect((await run(["pause", t.spool], t.root)).code).toBe(0)
          await waitFor("both see the spool paused", () =>
            n1.output().stderr.includes("the spool paused by") && again.output().stderr.includes("the spool paused by"))
          expect((await run(["resume", "--node", "n1", t.spool], t.root)).code).toBe(0)
          submit(t.spool, "third", `echo third >> ${t.ledger}`)
          expect((await run(["status", t.spool], t.root)).code).toBe(0)
          expect(lines(t.ledger)).toHaveLength(2)
          expect((await run(["resume", t.spool], t.root)).code).toBe(0)
          await waitFor("third ran", () => lines(t.ledger).length === 3)
          // Held while both nodes look at the spool; released, one of them runs it.
          const fourth = nameOf((await run(["submit", "--name", "fourth", "--hold", t.spool, "--", "sh", "-c", `echo fourth >> ${t.ledger}`], t.root)).stdout)
          submit(t.spool, "fifth", `echo fifth >> ${t.ledger}`)
          await waitFor("fifth ran", () => lines(t.ledger).length === 4)
          expect(lines(t.ledger)[3]).toBe("fifth")
          expect(JSON.parse((await run(["status", "--json", t.spool], t.root)).stdout).queued).toMatchObject([{ name: fourth, reason: "held" }])
          expect((await run(["release", t.spool, fourth], t.root)).code).toBe(0)
          await waitFor("fourth ran", () => lines(t.ledger).length === 5)
        } finally {
          n1.child.kill("SIGTERM")
        }
        expect((await n1.exited).code).toBe(0)
      } finally {
        again.child.kill("SIGTERM")
      }
      expect((await again.exited).code).toBe(0)
    } finally {
      n2.child.kill("SIGKILL")
    }
  })
})

describe("priorities and holds", () => {
  it("the higher priority runs first; a held job waits for release, whichever node looks", async () => {
    const t = workspace("prio")
    submit(t.spool, "low", `#!/bin/sh\n#PMJQ --priority=-10\necho low >> ${t.ledger}\n`)
    submit(t.spool, "plain", `echo plain >> ${t.ledger}`)
    submit(t.spool, "high", `#!/bin/sh\n#PMJQ --priority=10\necho high >> ${t.ledger}\n`)
    const held = nameOf((await run(["submit", "--name", "held", "--hold", t.spool, "--", "sh", "-c", `echo held >> ${t.ledger}`], t.root)).stdout)
    submit(t.spool, "later", `echo later >> ${t.ledger}`)
    expect((await run(["hold", t.spool, "later"], t.root)).stdout).toBe("held: later\n")
    expect(fs.existsSync(path.join(t.spool, ".pmjq-held-later"))).toBe(true)
    // A job waiting on its --hold is cancelled like any queued job.
    const dropped = nameOf((await run(["submit", "--name", "dropped", "--hold", t.spool, "--", "sh", "-c", `echo dropped >> ${t.ledger}`], t.root)).stdout)
    const daemon = start(["--node-id", "w1", "-e", t.errors, "--max-jobs", "1", t.spool], t.root)
    try {
      await waitFor("the node up", () => daemon.output().stderr.includes("watching"))
      const cancelled = await run(["cancel", t.spool, dropped], t.root)
      expect(cancelled.code, cancelled.stderr).toBe(0)
      expect(records(t.errors)).toMatchObject([{ name: dropped, outcome: "cancelled", pid: null }])
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
    const first = await run(["--drain", "-j", "1", "-o", t.archive, t.spool], t.root)
    expect(first.code, first.stderr).toBe(0)
    expect(lines(t.ledger)).toEqual(["high", "plain", "low"])
    // Released, each runs on the next drain: one moved aside, one written again without its --hold.
    const released = await run(["release", t.spool, "later", held], t.root)
    expect(released.code, released.stderr).toBe(0)
    expect(fs.readFileSync(path.join(t.spool, held), "utf8")).not.toMatch(/--hold/)
    // Queued again, not held: nothing to release.
    expect((await run(["release", t.spool, "later"], t.root)).code).toBe(1)
    expect((await run(["release", t.spool, "no-such"], t.root)).code).toBe(66)
    await run(["--drain", "-o", t.archive, t.spool], t.root)
    expect(lines(t.ledger).slice(3).sort()).toEqual(["held", "later"])
  })
})

const [HOSTILE, VICTIM] = ["pmjqwfmal", "pmjqwfvic"]

describe.runIf(runsHere("hostile workflow", rootMissing))("a hostile user on a shared spool (root's pmjq)", () => {
  let bin = ""
  beforeAll(() => {
    addUsers([HOSTILE, VICTIM])
    bin = publicBin()
  })
  afterAll(() => removeUsers([HOSTILE, VICTIM]))

  it("cannot hold, release or raise another's job; a priority above 0 is capped; a 1 MB directive line is refused, naming it", async () => {
    const shared = sharedSpool("hostile-wf")
    // The jobs run as their owners: their ledger is one all may append to, in a sticky folder.
    const out = path.join(shared.root, "out")
    fs.mkdirSync(out)
    fs.chmodSync(out, 0o1777)
    const t = { ...shared, ledger: path.join(out, "ledger") }
    fs.writeFileSync(t.ledger, "")
    fs.chmodSync(t.ledger, 0o666)
    const pmjq = (user: string, ...args: Array<string>) => asUser(user, [process.execPath, bin, ...args], t.root)
    submitAs(VICTIM, t.spool, "victim", `echo victim >> ${t.ledger}`)
    const forged = pmjq(HOSTILE, "hold", t.spool, "victim")
    expect(forged.status).toBe(77)
    expect(fs.existsSync(path.join(t.spool, "victim"))).toBe(true)
    expect(pmjq(VICTIM, "hold", t.spool, "victim").status).toBe(0)
    expect(pmjq(HOSTILE, "release", t.spool, "victim").status).toBe(77)
    expect(fs.existsSync(path.join(t.spool, ".pmjq-held-victim"))).toBe(true)
    // Not root: no priority above 0 at submit, and one in a dropped file is capped.
    const raised = pmjq(HOSTILE, "submit", "--priority", "5", t.spool, "--", "true")
    expect(raised.status).toBe(77)
    submitAs(HOSTILE, t.spool, "greedy", `#!/bin/sh\n#PMJQ --priority=20\necho greedy >> ${t.ledger}\n`)
    submitAs(HOSTILE, t.spool, "huge", `#!/bin/sh\n#PMJQ --after=${"x".repeat(1 << 20)}\necho huge\n`)
    // Names are public: another user's job of the name a dependency names does not stand in for it.
    submitAs(VICTIM, t.spool, "v-deploy", `#!/bin/sh\n#PMJQ --after=v-build\necho deploy >> ${t.ledger}\n`)
    submitAs(HOSTILE, t.spool, "v-build", "exit 0")
    const drained = await run(["--drain", "--run-as-owner", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    expect(drained.stderr).toMatch(/priority 20 capped at 0: only root may raise one/)
    // Only root (or pmjq's own user) may pause the spool pmjq now keeps its state in.
    expect(pmjq(HOSTILE, "pause", t.spool).status).toBe(77)
    expect(fs.existsSync(path.join(t.spool, ".pmjq", "paused", "spool"))).toBe(false)
    expect(lines(t.ledger)).toEqual(["greedy"])
    expect(fs.existsSync(path.join(t.spool, "v-deploy"))).toBe(true)
    expect(records(t.archive).map((r) => r.name)).toContain("v-build")
    expect(records(t.errors)).toMatchObject([{ name: "huge", outcome: "rejected", reason: "refused: #PMJQ line 2: longer than 4096 bytes" }])
    // The victim's own release works, and the job runs as the victim.
    expect(pmjq(VICTIM, "release", t.spool, "victim").status).toBe(0)
    await run(["--drain", "--run-as-owner", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    expect(lines(t.ledger)).toEqual(["greedy", "victim"])
  })
})
