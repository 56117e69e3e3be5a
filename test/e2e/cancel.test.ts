/** `pmjq cancel` and `pmjq retry` on real spools, processes and users. */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { entries, isAlive, lines, publicBin, records, run, runsHere, start, submit, waitFor, workspace } from "./harness.js"
import { addUsers, asUser, gidOf, removeUsers, rootMissing, sharedSpool, submitAs, uidOf } from "./users.js"

const pidIn = (file: string) => Number(lines(file)[0])

describe("pmjq cancel", () => {
  it("a job running on this node: its process group stopped at once, archived as cancelled; `submit --wait` on it exits 143", async () => {
    const t = workspace("cancel-running")
    const daemon = start(["--node-id", "c1", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      // The job and a child of it, both to be stopped.
      const waiting = start(["submit", "--wait", "--name", "long", t.spool, "--", "sh", "-c", `sleep 600 & echo $! > ${t.ledger}; echo started; wait`], t.root)
      await waitFor("the job's child", () => lines(t.ledger).length === 1)
      const child = pidIn(t.ledger)
      // With --wait, the name is on stderr: stdout is the job's alone. Said
      // once the job is queued and synced: the job may have started first.
      await waitFor("the job's name", () => waiting.output().stderr.includes("\n"))
      const name = waiting.output().stderr.split("\n")[0]!
      const cancelled = await run(["cancel", t.spool, name], t.root)
      expect(cancelled.code, cancelled.stderr + cancelled.stdout).toBe(0)
      // Said once it is true: the record is there, and says so.
      expect(cancelled.stdout).toMatch(new RegExp(`^${name}: stopped while running: its process group was signalled, it ended by SIGTERM(; archived as ${t.errors}/\\S+_${name})?\n$`))
      const waited = await waiting.exited
      expect(waited.code).toBe(143)
      expect(waiting.output().stdout).toBe("started\n")
      expect(waiting.output().stderr).toMatch(new RegExp(`pmjq: ${name} was cancelled by \\S+; its process group was stopped \\(SIGTERM\\)\\n$`))
      await waitFor("the job's child gone", () => !isAlive(child))
      expect(records(t.errors)).toMatchObject([{ name, outcome: "cancelled", signal: "SIGTERM" }])
      expect(records(t.archive)).toEqual([])
      // Cancelling it again: it ended; nothing changes.
      const again = await run(["cancel", t.spool, name], t.root)
      expect(again.code).toBe(1)
      expect(again.stderr).toMatch(/not queued or running: it ended already, or there is no such job; nothing changed/)
      expect(records(t.errors)).toHaveLength(1)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("a queued job never runs; the job before it runs on", async () => {
    const t = workspace("cancel-queued")
    const daemon = start(["--node-id", "c1", "-j", "1", "--grace", "1s", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      submit(t.spool, "first", `echo first >> ${t.ledger}; sleep 600`)
      await waitFor("the first job", () => lines(t.ledger).length === 1)
      submit(t.spool, "second", `echo second >> ${t.ledger}`)
      const cancelled = await run(["cancel", t.spool, "second"], t.root)
      expect(cancelled.code).toBe(0)
      // Where it was archived, when its record is read there (not yet beside its claim).
      expect(cancelled.stdout).toMatch(new RegExp(`^second: cancelled while queued: it never ran(; archived as ${t.errors}/\\S+_second)?\n$`))
      await waitFor("the cancelled job's record", () => records(t.errors).length === 1)
      expect(records(t.errors)).toMatchObject([{ name: "second", outcome: "cancelled", pid: null, startedAt: null }])
      expect(fs.existsSync(path.join(t.spool, "second"))).toBe(false)
      expect(lines(t.ledger)).toEqual(["first"])
      expect((await run(["status", t.spool], t.root)).stdout).toMatch(/second\s+cancelled/)
    } finally {
      daemon.child.kill("SIGINT")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("a job running on another node (two pmjq on one spool) is stopped by that node within its poll", async () => {
    const t = workspace("cancel-other")
    const busy = start(["--node-id", "busy", "-j", "1", "--poll", "1s", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      submit(t.spool, "long", `echo $$ >> ${t.ledger}; sleep 600`)
      await waitFor("the long job", () => lines(t.ledger).length === 1)
      const jobPid = pidIn(t.ledger)
      // A second node that holds nothing; both see the request.
      const idle = start(["--node-id", "idle", "-j", "0", "--poll", "1s", "-o", t.archive, t.spool], t.root)
      try {
        const cancelled = await run(["cancel", t.spool, "long"], t.root)
        expect(cancelled.code).toBe(0)
        await waitFor("the job stopped", () => !isAlive(jobPid))
        await waitFor("its record", () => records(t.errors).length === 1)
        expect(records(t.errors)).toMatchObject([{ name: "long", node: "busy", outcome: "cancelled" }])
      } finally {
        idle.child.kill("SIGTERM")
        await idle.exited
      }
    } finally {
      busy.child.kill("SIGTERM")
    }
    expect((await busy.exited).code).toBe(0)
  })

  it("a unique prefix of a running job's name is enough", async () => {
    const t = workspace("cancel-prefix")
    const name = "render-20261129T101500Z-build1-4242-a1b2c3"
    const daemon = start(["--node-id", "c1", "--grace", "1s", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      submit(t.spool, name, `echo $$ >> ${t.ledger}; sleep 600`)
      submit(t.spool, "other-job", `sleep 600`)
      await waitFor("the job", () => lines(t.ledger).length === 1)
      const cancelled = await run(["cancel", t.spool, "render-2026"], t.root)
      expect(cancelled.stderr).toBe("")
      expect(cancelled.code).toBe(0)
      expect(cancelled.stdout).toMatch(new RegExp(`^${name}: stopped while running: its process group was signalled, it ended by SIGTERM(; archived as \\S+_${name})?\n$`))
      expect(records(t.errors)).toMatchObject([{ name, outcome: "cancelled" }])
      expect(isAlive(pidIn(t.ledger))).toBe(false)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("a prefix of several jobs' names is refused (64), naming five of them, and nothing is asked; an exact name wins over prefixes", async () => {
    const t = workspace("cancel-ambiguous")
    for (let i = 1; i <= 7; i++) submit(t.spool, `job-${i}`, "true")
    submit(t.spool, "job", "true")
    const requests = () => fs.readdirSync(t.spool).filter((n) => n.startsWith(".pmjq-cancel-"))

    const two = await run(["cancel", t.spool, "job-", "job-7"], t.root)
    expect(two.code).toBe(64)
    expect(two.stderr.split("\n")[0]).toBe("pmjq: ambiguous job name job-: matches job-1, job-2, job-3, job-4, job-5 and 2 more")
    expect(requests()).toEqual([])
    // No node runs here: the request is left, and it names the exact job.
    const exact = await run(["cancel", "--wait-for", "0.2s", t.spool, "job"], t.root)
    expect(exact.code).toBe(75)
    expect(requests().map((n) => JSON.parse(fs.readFileSync(path.join(t.spool, n), "utf8")).name)).toEqual(["job"])
  })

  it("says what its node did only once it is true: a job that had ended (its archival pending) is not called cancelled", async () => {
    const t = workspace("cancel-ended")
    const daemon = start(["--node-id", "c1", "-o", t.archive, t.spool], t.root)
    try {
      await waitFor("pmjq watching", () => daemon.output().stderr.includes("watching"))
      // An archive dir that cannot be made: the ended job waits in its running folder, record and all.
      fs.rmSync(t.archive, { recursive: true, force: true })
      fs.writeFileSync(t.archive, "not a folder\n")
      submit(t.spool, "quick", "true")
      await waitFor("its archival failing", () => daemon.output().stderr.includes("not archived yet"))
      expect(fs.existsSync(path.join(t.spool, ".pmjq/running/c1/.quick.json"))).toBe(true)
      const cancelled = await run(["cancel", t.spool, "quick"], t.root)
      expect(cancelled.stdout).toBe("")
      expect(cancelled.stderr).toBe("pmjq: quick: had already ended: succeeded (exit status 0); nothing changed\n")
      expect(cancelled.code).toBe(1)
      fs.rmSync(t.archive)
      await waitFor("archived once the dir can be made", () => records(t.archive).length === 1)
      expect(records(t.archive)).toMatchObject([{ name: "quick", outcome: "succeeded" }])
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("no node running: the request stays, and the command says so (75)", async () => {
    const t = workspace("cancel-nobody")
    submit(t.spool, "queued", "true")
    const result = await run(["cancel", "--wait-for", "1s", t.spool, "queued"], t.root)
    expect(result.code).toBe(75)
    expect(result.stderr).toMatch(/no node has taken the request yet/)
    expect((await run(["status", t.spool], t.root)).stdout).toMatch(/cancelling: 1\n\s+NAME\s+ASKED BY UID\n\s+queued/)
    // The next node to start takes it: the job never runs.
    const daemon = start(["--node-id", "late", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      await waitFor("the record", () => records(t.errors).length === 1)
      expect(records(t.errors)).toMatchObject([{ name: "queued", outcome: "cancelled", pid: null }])
      await waitFor("the request gone", () => fs.readdirSync(t.spool).every((n) => n === ".pmjq"))
    } finally {
      daemon.child.kill("SIGTERM")
    }
    await daemon.exited
  })
})

describe.runIf(runsHere("pmjq cancel between users", rootMissing))("(as root: creates users) pmjq cancel between users", () => {
  const OWNER = "pmjqcan1"
  const OTHER = "pmjqcan2"
  let bin = ""
  beforeAll(() => {
    addUsers([OWNER, OTHER])
    bin = publicBin()
  })
  afterAll(() => removeUsers([OWNER, OTHER]))

  it("the owner may cancel; another user is refused, by the command and by the node, and nothing changes", async () => {
    const t = sharedSpool("cancel-users")
    const daemon = start(["--node-id", "root1", "--run-as-owner", "-j", "3", "--grace", "1s", "--poll", "1s", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      submitAs(OWNER, t.spool, "theirs", "sleep 600")
      submitAs(OWNER, t.spool, "also", "sleep 600")
      await waitFor("both running", () => entries(path.join(t.spool, ".pmjq/running/root1")).filter((n) => !n.startsWith(".")).length === 2)
      const refused = asUser(OTHER, [process.execPath, bin, "cancel", t.spool, "theirs"])
      expect(refused.status).toBe(77)
      expect(refused.stderr).toMatch(/theirs: not yours \(its owner is uid \d+\); nothing changed/)
      // Past the command: a request written by hand is refused by the node.
      const forged = path.join(t.spool, ".pmjq-cancel-forged")
      const write = asUser(OTHER, ["sh", "-c", `printf '{"name":"theirs"}' > ${forged}`])
      expect(write.status).toBe(0)
      await waitFor("the forged request removed", () => !fs.existsSync(forged))
      expect(daemon.output().stderr).toMatch(/cancel refused: the job is not the asker's/)
      expect(records(t.errors)).toEqual([])
      // The other user's own job under the same name (its claim is theirs.~1~)
      // neither blocks the owner's cancel nor is cancelled by it.
      submitAs(OTHER, t.spool, "theirs", "sleep 600")
      await waitFor("three running", () => entries(path.join(t.spool, ".pmjq/running/root1")).filter((n) => !n.startsWith(".")).length === 3)
      const allowed = asUser(OWNER, [process.execPath, bin, "cancel", "--mine", t.spool])
      expect(allowed.status, allowed.stderr + allowed.stdout).toBe(0)
      await waitFor("both records", () => records(t.errors).length === 2)
      expect(records(t.errors).map((r) => [r.name, r.outcome, r.reason])).toEqual(expect.arrayContaining([
        ["theirs", "cancelled", expect.stringMatching(new RegExp(`^cancelled by ${OWNER};`))],
        ["also", "cancelled", expect.stringMatching(new RegExp(`^cancelled by ${OWNER};`))]
      ]))
      expect(entries(path.join(t.spool, ".pmjq/running/root1")).filter((n) => !n.startsWith("."))).toEqual(["theirs.~1~"])
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("retry believes only pmjq's records: a user's file named like one, beside a script of theirs, is refused, for them and for root", async () => {
    const t = sharedSpool("retry-forged")
    // A pmjq has run on the spool: its .pmjq says whose records are pmjq's.
    expect((await run(["--drain", "-o", t.archive, t.spool], t.root)).code).toBe(0)
    // An "archive entry" of the user's own making: a script, and a record that
    // would decode and agree with it.
    const dir = path.join(t.root, "mine")
    fs.mkdirSync(dir, { mode: 0o755 })
    const entry = path.join(dir, "20260102T030405.000Z_planted")
    const record = {
      name: "planted", node: "n1", host: "h", pid: 4242, user: OTHER, uid: uidOf(OTHER), inode: null, attempt: 1,
      claimedAt: "2026-01-02T03:04:05.000Z", startedAt: "2026-01-02T03:04:05.100Z", endedAt: "2026-01-02T03:04:06.000Z",
      durationMs: 900, outcome: "failed", exitCode: 3, signal: null, reason: "exited with status 3"
    }
    for (const [file, text, mode] of [[entry, "#!/bin/sh\ntrue\n", 0o755], [`${entry}.json`, JSON.stringify(record), 0o644]] as const) {
      fs.writeFileSync(file, text, { mode })
      fs.chownSync(file, uidOf(OTHER), gidOf(OTHER))
    }
    const byUser = asUser(OTHER, [process.execPath, bin, "retry", t.spool, entry])
    const byRoot = await run(["retry", t.spool, entry], t.root)
    for (const tried of [{ code: byUser.status, stderr: byUser.stderr }, byRoot]) {
      expect(tried.code).toBe(64)
      expect(tried.stderr).toMatch(/^pmjq: cannot retry .*_planted: its record is not one pmjq wrote \(owned by uid \d+, not 0\)/)
    }
    expect(entries(t.spool)).toEqual([".pmjq"])
  })
})

describe("pmjq retry", () => {
  it("submits a failed job's archived script again under a fresh name; --wait gives its status", async () => {
    const t = workspace("retry")
    const daemon = start(["--node-id", "r1", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      // Fails the first time, succeeds once the flag file exists.
      const flag = path.join(t.root, "flag")
      const first = await run(["submit", "--wait", "--name", "flaky", t.spool, "--", "sh", "-c", `echo run >> ${t.ledger}; test -e ${flag}`], t.root)
      expect(first.code).toBe(1)
      const [failed] = records(t.errors)
      expect(failed).toMatchObject({ outcome: "failed" })
      fs.writeFileSync(flag, "")
      const retried = await run(["retry", "--wait", t.spool, path.join(t.errors, failed.entry)], t.root)
      expect(retried.code).toBe(0)
      const name = retried.stderr.split("\n")[0]!
      expect(name).toMatch(/^flaky-\d{8}T\d{6}Z-/)
      expect(name).not.toBe(failed.name)
      expect(lines(t.ledger)).toEqual(["run", "run"])
      expect(records(t.archive)).toMatchObject([{ name, outcome: "succeeded" }])
      // The archived entry is left as it was.
      expect(fs.existsSync(path.join(t.errors, failed.entry))).toBe(true)
      const missing = await run(["retry", t.spool, path.join(t.errors, "no-such-entry")], t.root)
      expect(missing.code).toBe(66)
      expect(missing.stderr).toBe(`pmjq: archive entry ${path.join(t.errors, "no-such-entry")} does not exist\n`)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })
})

