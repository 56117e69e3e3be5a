/**
 * One user's junk costs root's pmjq nothing it cannot bound: things named
 * like cancel requests, files pmjq must refuse. As real users, on a spool
 * shared the way the README sets it up.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { entries, publicBin, records, runsHere, start, waitFor, waitWhileProgressing } from "./harness.js"
import { addUsers, asUser, gidOf, removeUsers, rootMissing, sharedSpool, submitAs, uidOf } from "./users.js"

const MALLORY = "pmjqflood1"
const ALICE = "pmjqflood2"

/** COUNT names PREFIX1..PREFIXn in DIR, made by USER with MAKE (mkdir, mkfifo, touch). */
const makeMany = (user: string, dir: string, make: string, prefix: string, count: number) => {
  const made = asUser(user, ["sh", "-c", `cd ${dir} && seq 1 ${count} | sed 's/^/${prefix}/' | xargs ${make}`])
  expect(made.status).toBe(0)
}

describe.runIf(runsHere("floods of junk", rootMissing))("(as root: creates users) one user's junk in a shared spool", () => {
  let bin = ""
  beforeAll(() => {
    addUsers([MALLORY, ALICE])
    bin = publicBin()
  })
  afterAll(() => removeUsers([MALLORY, ALICE]))

  it("20,000 folders named like cancel requests: left alone, said in one line, and another user's cancel still works", async () => {
    const t = sharedSpool("flood-cancels")
    makeMany(MALLORY, t.spool, "mkdir", ".pmjq-cancel-junk", 20_000)
    // A FIFO under such a name is never opened: it is removed.
    makeMany(MALLORY, t.spool, "mkfifo", ".pmjq-cancel-fifo", 3)
    const daemon = start(["--node-id", "f1", "--run-as-owner", "--poll", "1s", "--grace", "1s", "-e", t.errors, "-o", t.archive, t.spool], t.root)
    try {
      // Deaf to SIGTERM (the cancel's SIGKILL after --grace ends it): a stray
      // SIGTERM from elsewhere in a loaded suite once ended this job before
      // its cancel (see the closing note of 2026-12-07), and this test is
      // about the junk, not the signal.
      submitAs(ALICE, t.spool, "long", "trap '' TERM\nsleep 600")
      await waitFor("alice's job running", () => entries(path.join(t.spool, ".pmjq/running/f1")).includes("long"))
      const cancelled = asUser(ALICE, [process.execPath, bin, "cancel", t.spool, "long"])
      expect(cancelled.status, `${cancelled.stderr}\n${daemon.output().stderr.split("\n").filter((l) => /long|cancel/.test(l)).slice(-20).join("\n")}`).toBe(0)
      await waitFor("alice's job cancelled", () => records(t.errors).some((r) => r.name === "long" && r.outcome === "cancelled"))
      // A few more looks at the requests (one a --poll), with the folders still there.
      makeMany(ALICE, t.spool, "touch", ".pmjq-cancel-garbage", 5)
      await waitFor("alice's garbage removed", () => !entries(t.spool).some((n) => n.startsWith(".pmjq-cancel-garbage")))
      await waitFor("the fifos removed", () => !entries(t.spool).some((n) => n.startsWith(".pmjq-cancel-fifo")))
      const said = daemon.output().stderr.split("\n").filter((l) => /cancel request/.test(l))
      expect(said.filter((l) => /folders named like cancel requests/.test(l))).toEqual([expect.stringMatching(/count=20000/)])
      // The garbage and the FIFOs: one line a look, never one per name.
      expect(said.filter((l) => /not understood; removed/.test(l)).length).toBeLessThanOrEqual(2)
      // Mallory's folders are hers: not removed.
      expect(entries(t.spool).filter((n) => n.startsWith(".pmjq-cancel-junk"))).toHaveLength(20_000)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("5,000 files that are not jobs: one of them made executable in place is run at once, the others left alone", async () => {
    const t = sharedSpool("flood-nonjobs")
    makeMany(MALLORY, t.spool, "touch", "data", 5000)
    // Listed before dispatch starts, each looked at once and remembered as not a job.
    const daemon = start(["--node-id", "f3", "--run-as-owner", "--poll", "1s", "-o", t.archive, t.spool], t.root)
    try {
      await waitFor("pmjq watching", () => /INFO watching/.test(daemon.output().stderr))
      expect(asUser(MALLORY, ["sh", "-c", `cd ${t.spool} && printf '#!/bin/sh\necho ran\n' > data42 && chmod +x data42`]).status).toBe(0)
      await waitFor("data42 run", () => records(t.archive).some((r) => r.name === "data42"))
      expect(records(t.archive)).toMatchObject([{ name: "data42", outcome: "succeeded" }])
      expect(entries(t.spool).filter((n) => n.startsWith("data"))).toHaveLength(4999)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("1,050 files pmjq must refuse, older than another user's job: with --max-jobs-per-user they take their owner's turns only, and 1,000 of them are kept", async () => {
    const t = sharedSpool("flood-refusals")
    // World-writable: refused (as root, anyone could have changed them). Made
    // first, so all are older than Alice's job.
    const hers = path.join(t.root, "hers")
    fs.mkdirSync(hers, { mode: 0o755 })
    fs.chownSync(hers, uidOf(MALLORY), gidOf(MALLORY))
    makeMany(MALLORY, hers, "touch", "junk", 1050)
    expect(asUser(MALLORY, ["sh", "-c", `cd ${hers} && chmod 777 junk* && mv junk* ${t.spool}/`]).status).toBe(0)
    submitAs(ALICE, t.spool, "mine", "true")
    const daemon = start(["--node-id", "f2", "--run-as-owner", "-j", "2", "--max-jobs-per-user", "2", "-e", t.errors, "-o", t.archive, t.spool], t.root)
    try {
      await waitFor("alice's job archived", () => records(t.archive).some((r) => r.name === "mine"))
      // Claimed in its turn: second (before: after every one of the 1,050,
      // oldest first, since a refusal never fills its owner's cap). Told by
      // the order of the claims, not by how far the refusals got meanwhile.
      const claims = daemon.output().stderr.split("\n").filter((l) => / INFO claimed job=/.test(l))
      expect(claims.findIndex((l) => / job=mine /.test(l))).toBeLessThan(2)
      const refused = () => entries(t.errors).filter((n) => n.endsWith(".json")).length
      const left = () => entries(t.spool).filter((n) => n.startsWith("junk")).length
      await waitWhileProgressing("every refusal made", () => left() === 0 && !/junk/.test(entries(path.join(t.spool, ".pmjq/running/f2")).join()), left)
      await waitFor("the bound applied", () => refused() === 1000)
      const kept = records(t.errors)
      expect(kept.every((r) => r.outcome === "rejected" && r.uid === uidOf(MALLORY))).toBe(true)
      // The newest kept: the last ones refused.
      expect(new Set(kept.map((r) => r.name)).size).toBe(1000)
      const said = daemon.output().stderr.split("\n").filter((l) => /refusals beyond the newest 1000 of a user: the oldest removed/.test(l))
      // Said at the first removal (and every thousandth: none more of 50).
      expect(said).toEqual([expect.stringMatching(new RegExp(`(?=.*uid=${uidOf(MALLORY)})(?=.*removed=1(\\s|$))`))])
      // Nothing of Alice's was touched.
      expect(records(t.archive).filter((r) => r.name === "mine")).toHaveLength(1)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })
})

