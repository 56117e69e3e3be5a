/**
 * Limits that keep a shared spool sane: values that make no sense are refused
 * at the start, one user cannot fill every slot while another waits
 * (--max-jobs-per-user), and a job's name cannot write to the reader's terminal.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { lines, records, run, runsHere, start, submit, waitFor, workspace } from "./harness.js"
import { addUsers, removeUsers, rootMissing, sharedSpool, submitAs } from "./users.js"

describe("values that make no sense are refused: exit 64, one pmjq: line and one pointing at --help, nothing created", () => {
  const t = workspace("limits-values")
  fs.symlinkSync(t.spool, path.join(t.root, "link"))
  fs.mkdirSync(path.join(t.root, "other"))

  it.each([
    ["-o the spool", ["-o", t.spool], /^pmjq: --archive-dir must not be the spool or inside it/],
    ["-o inside the spool", ["-o", path.join(t.spool, "sub")], /^pmjq: --archive-dir must not be the spool or inside it/],
    ["-o reaching the spool through ..", ["-o", path.join(t.root, "other", "..", "spool", "x")], /^pmjq: --archive-dir must not be the spool or inside it/],
    ["-e through a symlink into the spool", ["-e", path.join(t.root, "link", "errors")], /^pmjq: --error-dir must not be the spool or inside it/],
    ["--poll 0", ["--poll", "0"], /^pmjq: --poll must be more than 0, not 0$/],
    ["--lease 0", ["--lease", "0"], /^pmjq: --lease must be more than 0, not 0$/],
    ["--timeout 0", ["--timeout", "0"], /^pmjq: --timeout must be more than 0, not 0$/],
    ["--idle-after 0ms", ["--idle-after", "0ms"], /^pmjq: --idle-after must be more than 0, not 0ms$/],
    ["--limit-after 0.0001 (0 once in ms)", ["--limit-after", "0.0001"], /^pmjq: --limit-after must be more than 0/],
    ["--timeout 600h (25 days)", ["--timeout", "600h"], /^pmjq: --timeout must be at most 24 days/],
    ["--grace 600h", ["--grace", "600h"], /^pmjq: --grace must be at most 24 days/],
    ["--max-jobs-per-user 0", ["--max-jobs-per-user", "0"], /^pmjq: --max-jobs-per-user must be 1 or more, not 0$/]
  ] as const)("%s", async (_, args, message) => {
    const result = await run([...args, t.spool], t.root)
    expect(result.code).toBe(64)
    const said = result.stderr.trim().split("\n")
    expect(said).toHaveLength(2)
    expect(said[0]).toMatch(message)
    expect(said[1]).toBe("Try 'pmjq --help' for more information.")
    expect(fs.existsSync(path.join(t.spool, ".pmjq"))).toBe(false)
    expect(fs.existsSync(path.join(t.spool, "sub"))).toBe(false)
  })

  it("--grace 0 and a --timeout of 24 days (576h) are accepted", async () => {
    const u = workspace("limits-accepted")
    const result = await run(["--grace", "0", "--timeout", "576h", "--max-jobs-per-user", "1", "--drain", u.spool], u.root)
    expect(result.stderr).not.toMatch(/must be/)
    expect(result.code).toBe(0)
  })
})

describe("a job named with an escape sequence", () => {
  const NAME = "\u001b]0;owned\u0007x"

  it("reaches neither pmjq's text log nor pmjq status raw", async () => {
    const t = workspace("limits-escape")
    submit(t.spool, NAME, "echo ran")
    const status = await run(["status", t.spool], t.root)
    expect(status.code).toBe(0)
    expect(status.stdout).not.toContain("\u001b")
    expect(status.stdout).toContain(String.raw`\x1b]0;owned\x07x`)
    const drained = await run(["-o", t.archive, "--drain", t.spool], t.root)
    expect(drained.code).toBe(0)
    expect(drained.stderr).not.toContain("\u001b")
    expect(drained.stderr).toContain(String.raw`finished job="\u001b]0;owned\u0007x"`)
    expect(records(t.archive)).toMatchObject([{ name: NAME, outcome: "succeeded" }])
  })
})

const GREEDY = "pmjq-ga"
const OTHER = "pmjq-gb"
describe.runIf(runsHere("--max-jobs-per-user between real users", rootMissing))("(as root: creates users) --max-jobs-per-user", () => {
  beforeAll(() => addUsers([GREEDY, OTHER]))
  afterAll(() => removeUsers([GREEDY, OTHER]))

  it("-j 2, cap 1: pmjq-gb's one job runs while pmjq-ga's 4 long ones hold; pmjq-ga never holds 2 slots while it waits", async () => {
    const t = sharedSpool("limits-greedy")
    // Every job writes one line here when it starts: written by all, read by the test.
    fs.writeFileSync(t.ledger, "")
    fs.chmodSync(t.ledger, 0o666)
    const release = path.join(t.root, "release")
    for (let i = 1; i <= 4; i++) {
      submitAs(GREEDY, t.spool, `ga-${i}`, `echo "start ga" >> "${t.ledger}"\nwhile [ ! -e "${release}" ]; do sleep 0.1; done`)
    }
    submitAs(OTHER, t.spool, "gb-1", `echo "start gb" >> "${t.ledger}"`)

    const daemon = start(["--run-as-owner", "-j", "2", "--max-jobs-per-user", "1", "-o", t.archive, "--drain", t.spool], t.root)
    try {
      const gbDone = () => records(t.archive).some((r) => r.name === "gb-1")
      await waitFor("pmjq-gb's job to be archived", gbDone, 90_000)
      // pmjq-ga's jobs are all still held: none can have finished.
      expect(fs.existsSync(release)).toBe(false)
      expect(records(t.archive).map((r) => r.name)).toEqual(["gb-1"])
      // Until pmjq-gb's job started, at most one of pmjq-ga's had.
      const ledger = lines(t.ledger)
      expect(ledger.slice(0, ledger.indexOf("start gb")).filter((l) => l === "start ga").length).toBeLessThanOrEqual(1)
      // Alone in the queue now, pmjq-ga may use both slots (work-conserving).
      await waitFor("pmjq-ga to hold both slots", () => lines(t.ledger).filter((l) => l === "start ga").length === 2, 90_000)
    } finally {
      // Released whatever happened, and waited for: the users' jobs must be
      // gone before afterAll removes the users.
      fs.writeFileSync(release, "")
      await daemon.exited
    }
    expect((await daemon.exited).code).toBe(0)
    const all = records(t.archive)
    expect(all.map((r) => [r.name, r.outcome, r.user]).sort()).toEqual([
      ["ga-1", "succeeded", GREEDY], ["ga-2", "succeeded", GREEDY], ["ga-3", "succeeded", GREEDY], ["ga-4", "succeeded", GREEDY],
      ["gb-1", "succeeded", OTHER]
    ])
    // By pmjq's own records: when pmjq-gb's job started, at most one of pmjq-ga's had.
    const gbStarted = Date.parse(all.find((r) => r.name === "gb-1")!.startedAt)
    expect(all.filter((r) => r.user === GREEDY && Date.parse(r.startedAt) <= gbStarted).length).toBeLessThanOrEqual(1)
  })
})
