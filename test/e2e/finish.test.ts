/** --on-finish on the real CLI: each job of a drain told once, names kept as data, a failing hook changing nothing. */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { lines, records, run, submit, workspace } from "./harness.js"

// A name the shell would run, were it ever part of the command's text.
const HOSTILE = "it has space $(touch pwned)"

describe("--on-finish", () => {
  it("runs once for each job of a drain, with its outcome and exit status, a hostile name kept as data", async () => {
    const t = workspace("finish")
    submit(t.spool, "ok", "exit 0")
    submit(t.spool, "fails", "exit 3")
    submit(t.spool, "slow", "exec sleep 60")
    submit(t.spool, HOSTILE, "exit 0")
    const hook = `printf "%s %s %s\\n" "$PMJQ_JOB" "$PMJQ_OUTCOME" "$PMJQ_EXIT_CODE" >> '${t.ledger}'`
    const result = await run(["-j", "4", "-o", t.archive, "-e", t.errors, "--timeout", "1s", "--on-finish", hook, "--drain", t.spool], t.root)
    // 1: a job failed (the drain's status is the jobs', as without a hook).
    expect(result.code).toBe(1)
    expect(lines(t.ledger).sort()).toEqual(["fails failed 3", `${HOSTILE} succeeded 0`, "ok succeeded 0", "slow timed-out "])
    for (const dir of [t.root, t.spool, t.archive, t.errors]) expect(fs.existsSync(path.join(dir, "pwned"))).toBe(false)
    expect(result.stderr.split("\n").filter((l) => / INFO hook done job=/.test(l))).toHaveLength(4)
  })

  it("that fails changes neither the drain's exit status nor the records; it is logged with the job and its status", async () => {
    const t = workspace("finish-fails")
    for (const name of ["a", "b", "c"]) submit(t.spool, name, `echo ran-${name}`)
    const hook = `printf '%s|%s|%s|%s\\n' "$PMJQ_JOB" "$PMJQ_ENTRY" "$PMJQ_RECORD" "$PMJQ_STDOUT" >> '${t.ledger}'; exit 7`
    const result = await run(["-o", t.archive, "--on-finish", hook, "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    const recs = records(t.archive)
    // In the order they ended (entries are named by their end): any.
    expect(recs.map((r) => [r.name, r.outcome, r.exitCode, r.reason]).sort()).toEqual([["a", "succeeded", 0, null], ["b", "succeeded", 0, null], ["c", "succeeded", 0, null]])
    // Each hook was told its own entry, whose record and output are there.
    const told = lines(t.ledger).map((l) => l.split("|")).sort()
    expect(told.map(([job]) => job)).toEqual(["a", "b", "c"])
    for (const [job, entry, record, stdout] of told) {
      expect(path.dirname(entry!)).toBe(t.archive)
      expect(JSON.parse(fs.readFileSync(record!, "utf8"))).toMatchObject({ name: job, outcome: "succeeded" })
      expect(fs.readFileSync(stdout!, "utf8")).toBe(`ran-${job}\n`)
    }
    const failures = result.stderr.split("\n").filter((l) => / WARN hook failed /.test(l))
    expect(failures.map((l) => / job=(\S+) exitCode=7 hook=finish$/.exec(l)?.[1]).sort()).toEqual(["a", "b", "c"])
  })

  it("without an archive dir: each job is told once its record is written, with no entry", async () => {
    const t = workspace("finish-deleted")
    for (const name of ["x", "y"]) submit(t.spool, name, "exit 0")
    const hook = `printf '%s %s [%s] [%s]\\n' "$PMJQ_JOB" "$PMJQ_OUTCOME" "$PMJQ_ENTRY" "$PMJQ_RECORD" >> '${t.ledger}'`
    const result = await run(["--on-finish", hook, "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    expect(lines(t.ledger).sort()).toEqual(["x succeeded [] []", "y succeeded [] []"])
  })
})
