/** `pmjq log`: a job's output, running or archived, followed to its end, on real spools, processes and users. */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { entries, publicBin, records, run, runsHere, start, submit, waitFor, workspace } from "./harness.js"
import { addUsers, asUser, removeUsers, rootMissing, sharedSpool, submitAs, uidOf } from "./users.js"

/** A job that says a first part on both streams, waits until GO exists, says a second part and exits 3. */
const twoParts = (ready: string, go: string) =>
  [
    "echo part1; echo err1 >&2",
    `touch "${ready}"`,
    `while [ ! -e "${go}" ]; do sleep 0.05; done`,
    "echo part2; echo err2 >&2",
    "exit 3"
  ].join("\n")

describe("pmjq log", () => {
  it("a running job's output so far; -f follows it to its end and exits with its status; then the archived output; an unknown name is 66", async () => {
    const t = workspace("log")
    const daemon = start(["--node-id", "l1", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      const [ready, go] = [path.join(t.root, "ready"), path.join(t.root, "go")]
      submit(t.spool, "talky", twoParts(ready, go))
      await waitFor("the first part written", () => fs.existsSync(ready))

      // What there is now, each stream to its own; found, so 0 whatever the job does.
      const sofar = await run(["log", t.spool, "talky"], t.root)
      expect(sofar).toMatchObject({ code: 0, stdout: "part1\n", stderr: "err1\n" })

      const following = start(["log", "-f", t.spool, "talky"], t.root)
      await waitFor("log -f to print the first part", () => following.output().stdout === "part1\n" && following.output().stderr === "err1\n")
      fs.writeFileSync(go, "")
      const { code } = await following.exited
      expect(code).toBe(3)
      expect(following.output()).toEqual({ stdout: "part1\npart2\n", stderr: "err1\nerr2\n" })

      // Archived (in the error dir: it failed), where its node said it archives.
      await waitFor("its record", () => records(t.errors).length === 1)
      expect(await run(["log", t.spool, "talky"], t.root)).toMatchObject({ code: 0, stdout: "part1\npart2\n", stderr: "err1\nerr2\n" })
      expect(await run(["log", "--follow", t.spool, "talky"], t.root)).toMatchObject({ code: 3, stdout: "part1\npart2\n", stderr: "err1\nerr2\n" })

      const unknown = await run(["log", t.spool, "nope"], t.root)
      expect(unknown.code).toBe(66)
      expect(unknown.stdout).toBe("")
      expect(unknown.stderr).toMatch(/^pmjq: nope: no such job: not queued or running on .*\n$/)
      // A name is one path component: never a path into the spool or out of it.
      for (const bad of ["../talky", ".pmjq", "a/b", ""]) {
        const refused = await run(["log", t.spool, bad], t.root)
        expect(refused.code, bad).toBe(64)
        expect(refused.stderr).toMatch(/^pmjq: not a job's name: /)
      }
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("a queued job: without -f a note and no output; -f waits for its start, follows it, and a cancel ends it with 143", async () => {
    const t = workspace("log-queued")
    // No pmjq has run on the spool yet: the job waits.
    const go = path.join(t.root, "go")
    submit(t.spool, "later", `echo started; while [ ! -e "${go}" ]; do sleep 0.05; done; echo never`)
    const queued = await run(["log", t.spool, "later"], t.root)
    expect(queued).toMatchObject({ code: 0, stdout: "", stderr: "pmjq: later: queued, not started yet: no output\n" })

    const following = start(["log", "-f", t.spool, "later"], t.root)
    await waitFor("the note that it waits", () => following.output().stderr.includes("queued, not started yet; its output follows once it starts"))
    const daemon = start(["--node-id", "l2", "--grace", "1s", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      await waitFor("log -f to print the start", () => following.output().stdout === "started\n")
      const cancelled = await run(["cancel", t.spool, "later"], t.root)
      expect(cancelled.code, `${cancelled.stderr}\n${daemon.output().stderr.split("\n").filter((l) => /later|cancel/.test(l)).join("\n")}`).toBe(0)
      expect((await following.exited).code).toBe(143)
      expect(following.output().stdout).toBe("started\n")
      expect(following.output().stderr).toMatch(/\npmjq: later was cancelled by \S+; its process group was stopped \(SIGTERM\)\n$/)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })
})

describe.runIf(runsHere("pmjq log between users", rootMissing))("(as root: creates users) pmjq log between users", () => {
  const OWNER = "pmjqlog1"
  const OTHER = "pmjqlog2"
  let bin = ""
  beforeAll(() => {
    addUsers([OWNER, OTHER])
    bin = publicBin()
  })
  afterAll(() => removeUsers([OWNER, OTHER]))

  const NOT_YOURS = /^pmjq: private: not yours \(its owner is uid \d+\): only its owner or root may read its output\n$/

  it("the owner and root read a job's output; another user reads nothing: refused (77) while it runs, no such job (66) once archived", async () => {
    const t = sharedSpool("log-users")
    const daemon = start(["--node-id", "u1", "--run-as-owner", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      const go = path.join(t.root, "go")
      submitAs(OWNER, t.spool, "private", `echo secret; echo secret-err >&2; while [ ! -e "${go}" ]; do sleep 0.05; done`)
      const folder = path.join(t.spool, ".pmjq", "running", "u1")
      await waitFor("its output written", () => entries(folder).some((n) => n.endsWith(".out") && fs.statSync(path.join(folder, n)).size > 0))
      // The files are the owner's alone.
      const out = path.join(folder, entries(folder).find((n) => n.endsWith(".out"))!)
      expect(fs.statSync(out)).toMatchObject({ uid: uidOf(OWNER), mode: 0o100600 })

      const readers = () => [
        ["owner", asUser(OWNER, [process.execPath, bin, "log", t.spool, "private"])],
        ["other", asUser(OTHER, [process.execPath, bin, "log", t.spool, "private"])]
      ] as const
      const check = async (refusal: RegExp) => {
        const [[, owner], [, other]] = readers()
        expect([owner.status, owner.stdout, owner.stderr]).toEqual([0, "secret\n", "secret-err\n"])
        expect([other.status, other.stdout]).toEqual([refusal === NOT_YOURS ? 77 : 66, ""])
        expect(other.stderr).toMatch(refusal)
        expect(await run(["log", t.spool, "private"], t.root)).toMatchObject({ code: 0, stdout: "secret\n", stderr: "secret-err\n" })
      }
      await check(NOT_YOURS)
      fs.writeFileSync(go, "")
      await waitFor("its record", () => records(t.archive).length === 1)
      // Archived, its record is readable by pmjq and the owner's group only: to another user there is no such job.
      await check(/^pmjq: private: no such job: /)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })
})
