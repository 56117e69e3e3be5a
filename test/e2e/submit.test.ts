/** `pmjq submit`: atomic, collision-free submission; --wait gives the job's output and status. */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { BIN, records, run, start, submit, waitFor, waitWhileProgressing, workspace } from "./harness.js"

const NAME = /^[A-Za-z0-9._-]+-\d{8}T\d{6}Z-[A-Za-z0-9_-]+-\d+-[0-9a-f]{6}$/

describe("pmjq submit", () => {
  it("--wait: the command's exact arguments, the submitter's directory, and the job's exit status; its name on stderr, stdout the job's alone", async () => {
    const t = workspace("submit-wait")
    const from = path.join(t.root, "a dir with spaces")
    fs.mkdirSync(from)
    const daemon = start(["--node-id", "w1", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      const ok = await run(["submit", "--wait", t.spool, "--", "sh", "-c", `printf '%s|' "$@"; pwd`, "sh", "a b", "it's", "$HOME", '"q"'], from)
      expect(ok.code).toBe(0)
      // out=$(pmjq submit --wait ...) gets the job's output and nothing else.
      expect(ok.stdout).toBe(`a b|it's|$HOME|"q"|${from}\n`)
      expect(ok.stderr.trim()).toMatch(NAME)
      const three = await run(["submit", "--wait", t.spool, "--", "sh", "-c", "echo to stderr >&2; exit 3"], from)
      expect(three.code).toBe(3)
      const [name, ...rest] = three.stderr.split("\n")
      expect(name).toMatch(NAME)
      expect(rest.join("\n")).toBe("to stderr\n")
      // Without --wait, the name is what stdout says.
      const queued = await run(["submit", t.spool, "--", "true"], from)
      expect(queued.stdout.trim()).toMatch(NAME)
      expect(queued.stderr).toBe("")
      const killed = await run(["submit", "--wait", t.spool, "--", "sh", "-c", "kill -KILL $$"], from)
      expect(killed.code).toBe(137)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("--wait finds its record however many entries came after it (its terminal stopped meanwhile)", async () => {
    const t = workspace("submit-wait-many")
    const daemon = start(["--node-id", "m1", "-j", "1", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      const waiting = start(["submit", "--wait", "--name", "first", t.spool, "--", "sh", "-c", "echo mine"], t.root)
      await waitFor("its name printed", () => waiting.output().stderr.length > 0)
      // Stopped before it has seen the record: 210 newer entries land meanwhile
      // (before, it looked at the 200 newest of each dir only, and waited for ever).
      waiting.child.kill("SIGSTOP")
      // Its job ends first (on a loaded machine the daemon may start after the 210 are written).
      await waitFor("its record", () => records(t.archive).length === 1)
      for (let i = 0; i < 210; i++) submit(t.spool, `after-${String(i).padStart(3, "0")}`, "true")
      await waitWhileProgressing("all archived", () => records(t.archive).length === 211, () => records(t.archive).length)
      expect(records(t.archive)[0]).toMatchObject({ name: waiting.output().stderr.split("\n")[0] })
      waiting.child.kill("SIGCONT")
      const { code } = await waiting.exited
      expect(code).toBe(0)
      expect(waiting.output().stdout).toBe("mine\n")
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("--wait on a rejected job: a clear message and status 1", async () => {
    const t = workspace("submit-rejected")
    // Only nobody's files may run, and this one is not nobody's.
    const daemon = start(["--allow-users", "nobody", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      const result = await run(["submit", "--wait", t.spool, "--", "true"], t.root)
      expect(result.code).toBe(1)
      expect(result.stderr).toMatch(/^(true-\S+)\npmjq: \1 was rejected: refused: owner uid \d+ is not in --allow-users or --allow-groups\n$/)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("a file: its own interpreter line kept, run from where it was submitted; a vanished directory fails clearly", async () => {
    const t = workspace("submit-file")
    const from = path.join(t.root, "here")
    fs.mkdirSync(from)
    const script = path.join(t.root, "job.sh")
    fs.writeFileSync(script, "#!/bin/sh\npwd\n")
    const first = await run(["submit", "--name", "where", t.spool, script], from)
    expect(first.code).toBe(0)
    expect(first.stdout.trim()).toMatch(/^where-/)
    const gone = path.join(t.root, "gone")
    fs.mkdirSync(gone)
    expect((await run(["submit", t.spool, script], gone)).code).toBe(0)
    fs.rmdirSync(gone)
    expect(fs.readdirSync(t.spool).filter((n) => !n.startsWith(".")).length).toBe(2)
    // One of the two failed: the drain says so, and exits 1.
    const drain = await run(["-o", t.archive, "-e", t.errors, "--drain", t.spool], t.root)
    expect(drain.code).toBe(1)
    expect(drain.stderr).toMatch(new RegExp(`\ndrain: 2 jobs in \\d+\\.\\d s: 1 succeeded, 1 failed \\(see ${t.errors}\\)\n$`))
    const done = records(t.archive)
    expect(done).toHaveLength(1)
    expect(fs.readFileSync(path.join(t.archive, done[0]!.entry + ".out"), "utf8")).toBe(`${from}\n`)
    const failed = records(t.errors)
    expect(failed).toMatchObject([{ outcome: "failed", exitCode: 1 }])
    expect(fs.readFileSync(path.join(t.errors, failed[0]!.entry + ".err"), "utf8")).toBe(`pmjq: submitted from ${gone}, which does not exist on this node\n`)
  })

  // 8 processes at once is the race; each pmjq start costs ~0.3 s of CPU, so 3 each.
  it("24 submissions of one file from 8 processes at once give 24 distinct jobs", async () => {
    const t = workspace("submit-many")
    const script = path.join(t.root, "job.sh")
    fs.writeFileSync(script, "#!/bin/sh\ntrue\n")
    const loops = Array.from({ length: 8 }, () =>
      new Promise<number | null>((resolve) =>
        cp.spawn("sh", ["-c", `for i in 1 2 3; do "${process.execPath}" "${BIN}" submit "${t.spool}" "${script}" || exit 1; done`], { stdio: "ignore" })
          .once("close", resolve)))
    expect(await Promise.all(loops)).toEqual(Array(8).fill(0))
    const jobs = fs.readdirSync(t.spool).filter((n) => !n.startsWith("."))
    expect(jobs).toHaveLength(24)
    expect(jobs.every((n) => NAME.test(n))).toBe(true)
    expect(fs.readdirSync(t.spool).filter((n) => n.startsWith(".pmjq-submit"))).toEqual([])
  })

  it("neither a file nor a command: one line and status 64", async () => {
    const t = workspace("submit-usage")
    const result = await run(["submit", t.spool], t.root)
    expect(result.code).toBe(64)
    expect(result.stderr.trim().split("\n")).toEqual([
      "pmjq: give a FILE, or -- and a command: pmjq submit JOB-SPOOL FILE | pmjq submit JOB-SPOOL -- CMD [ARGS...]",
      "Try 'pmjq submit --help' for more information."
    ])
  })

  it("a FILE that does not exist: status 66 (EX_NOINPUT), and nothing queued", async () => {
    const t = workspace("submit-noinput")
    const result = await run(["submit", t.spool, path.join(t.root, "no-such-script")], t.root)
    expect(result.code).toBe(66)
    expect(result.stderr).toBe(`pmjq: file ${path.join(t.root, "no-such-script")} does not exist\n`)
    expect(fs.readdirSync(t.spool)).toEqual([])
  })
})
