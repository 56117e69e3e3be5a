/** The command line's words, help pages and last lines, without running anything. */
import { Option } from "effect"
import { describe, expect, it } from "vitest"
import { grammars, helpChecks } from "../../src/cli/Cli.js"
import { drainSummary } from "../../src/cli/daemon.js"
import { checkWords, closest, describeProblem, type Grammar } from "../../src/cli/grammar.js"
import { colourFor } from "../../src/cli/help.js"

const daemon = grammars().find(([name]) => name === "")![1]
const problem = (grammar: Grammar, words: ReadonlyArray<string>) => {
  const { problem } = checkWords(grammar, words)
  return problem === null ? null : describeProblem(problem)
}

describe("the words of a command line", () => {
  it("are options the parser knows, with their values, and the operands the command takes", () => {
    expect(checkWords(daemon, ["-C", "2", "-o", "archive", "spool", "--drain"])).toMatchObject({ operands: ["spool"], problem: null })
    expect(checkWords(daemon, ["--archive-dir=archive", "-C", "-1", "spool"])).toMatchObject({ operands: ["spool"], problem: null })
    // A value is a value, whatever it looks like; after --, every word is an operand.
    expect(checkWords(daemon, ["--idle-cmd", "--version", "spool"])).toMatchObject({ operands: ["spool"], given: [{ name: "--idle-cmd", value: "--version" }], problem: null })
    expect(checkWords(daemon, ["--drain", "--", "-spool"])).toMatchObject({ operands: ["-spool"], problem: null })
    expect(problem(daemon, ["--bogus", "spool"])).toBe("unknown option --bogus")
    expect(problem(daemon, ["spool", "--drain", "-o"])).toBe("-o needs a DIR")
    expect(problem(daemon, ["-j"])).toBe("-j needs an N")
    expect(problem(daemon, ["--on-stop"])).toBe("--on-stop needs one of stop|leave")
    expect(problem(daemon, ["--drain=1", "spool"])).toBe("--drain takes no value")
    expect(problem(daemon, ["a", "b"])).toBe("unexpected word: b")
  })

  it("say what a near miss was meant to be, and nothing for a word nowhere near", () => {
    expect(closest("--max-job", ["--max-jobs", "--max-attempts"])).toBe("--max-jobs")
    expect(closest("submitt", ["submit", "status", "cancel", "retry"])).toBe("submit")
    expect(closest("stauts", ["submit", "status", "cancel", "retry"])).toBe("status")
    expect(closest("spool", ["submit", "status", "cancel", "retry"])).toBeNull()
    expect(closest("jobs", ["submit", "status", "cancel", "retry"])).toBeNull()
  })

  it("of each subcommand are its own", () => {
    const submit = grammars().find(([name]) => name === "submit")![1]
    expect(problem(submit, ["--drain", "spool"])).toBe("unknown option --drain")
    expect(problem(submit, ["--name"])).toBe("--name needs a NAME")
    expect(problem(submit, [])).toBe("missing JOB-SPOOL")
  })
})

describe("the help pages", () => {
  it.each(helpChecks().map((page) => [page.name, page] as const))("%s: every option in one group, none unknown, no line over 80 columns", (_, page) => {
    expect(page.missing).toEqual([])
    expect(page.unknown).toEqual([])
    expect(page.text.split("\n").filter((line) => line.length > 80)).toEqual([])
    expect(page.text).not.toMatch(/\x1b/)
  })

  it("fit a screen: pmjq's at most 60 lines, each subcommand's under 35", () => {
    for (const page of helpChecks()) {
      expect(page.text.split("\n").length).toBeLessThanOrEqual(page.name === "pmjq" ? 60 : 34)
    }
  })

  it("are coloured only on a terminal, without NO_COLOR, and not for TERM=dumb", () => {
    expect(colourFor({ isTTY: true }, { TERM: "xterm" })).toBe(true)
    expect(colourFor({ isTTY: false }, { TERM: "xterm" })).toBe(false)
    expect(colourFor({}, {})).toBe(false)
    expect(colourFor({ isTTY: true }, { TERM: "xterm", NO_COLOR: "" })).toBe(false)
    expect(colourFor({ isTTY: true }, { TERM: "dumb" })).toBe(false)
  })
})

describe("--drain's last line", () => {
  const where = { spool: "/srv/spool", archiveDir: Option.some("/srv/archive"), errorDir: Option.none<string>() }
  it("counts the jobs, the time, and where to look when one failed", () => {
    expect(drainSummary({ _tag: "Drained", succeeded: 40, failed: 1, elapsedMs: 12_345 }, { ...where, errorDir: Option.some("/srv/failed") }))
      .toBe("drain: 41 jobs in 12.3 s: 40 succeeded, 1 failed (see /srv/failed)")
    expect(drainSummary({ _tag: "Drained", succeeded: 0, failed: 2, elapsedMs: 50 }, where)).toBe("drain: 2 jobs in 0.1 s: 0 succeeded, 2 failed (see /srv/archive)")
    expect(drainSummary({ _tag: "Drained", succeeded: 1, failed: 0, elapsedMs: 1000 }, where)).toBe("drain: 1 job in 1.0 s: 1 succeeded, 0 failed")
    expect(drainSummary({ _tag: "Drained", succeeded: 0, failed: 1, elapsedMs: 0 }, { ...where, archiveDir: Option.none() }))
      .toBe("drain: 1 job in 0.0 s: 0 succeeded, 1 failed (see pmjq status /srv/spool)")
  })
})
