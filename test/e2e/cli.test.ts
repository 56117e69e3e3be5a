import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { run, tempDir } from "./harness.js"

describe("command line", () => {
  const dir = tempDir("cli")
  fs.mkdirSync(path.join(dir, "spool"))
  fs.writeFileSync(path.join(dir, "a-file"), "")

  it.each([
    ["no spool", [], 64, /missing job-spool; usage: pmjq \[-C cpu-limit\] \[-o archive-dir\] job-spool/],
    ["a spool that does not exist", ["nowhere"], 66, /^pmjq: job spool .*nowhere does not exist or is not a directory$/m],
    ["a spool that is a file", ["a-file"], 66, /does not exist or is not a directory/],
    ["an archive dir that cannot be created", ["-o", "a-file/archive", "spool"], 73, /^pmjq: cannot create directory .*a-file\/archive: ENOTDIR/m],
    ["an error dir that cannot be created", ["-e", "/proc/pmjq-errors", "spool"], 73, /cannot create directory \/proc\/pmjq-errors/],
    ["a negative job count", ["-j", "-1", "spool"], 64, /--max-jobs must be 0 or more, not -1/],
    ["a zero cpu limit", ["-C", "0", "spool"], 64, /--cpu-limit must be a positive number/],
    ["a bad duration", ["--poll", "soon", "spool"], 64, /--poll: invalid duration "soon"/],
    ["an unknown option", ["spool", "--frobnicate"], 64, /unknown argument: '--frobnicate'/]
  ] as const)("refuses %s with one line and a sysexits status", async (_, args, status, message) => {
    const result = await run(args, dir)
    expect(result.code).toBe(status)
    expect(result.stderr).toMatch(message)
    // A refused start leaves nothing behind.
    expect(fs.existsSync(path.join(dir, "spool", ".pmjq"))).toBe(false)
  })

  it("runs the seed's synopsis verbatim: pmjq -C cpu-limit -o archive-dir job-spool", async () => {
    const root = tempDir("synopsis")
    fs.mkdirSync(path.join(root, "spool"))
    fs.writeFileSync(path.join(root, "spool", "job"), "#!/bin/sh\necho ran\n", { mode: 0o755 })
    // A limit no machine reaches, so the gate is open; --drain only so the run ends.
    const result = await run(["-C", "1000", "-o", "archive", "spool", "--drain"], root)
    expect(result.code).toBe(0)
    const archived = fs.readdirSync(path.join(root, "archive"))
    expect(archived.filter((n) => n.endsWith("_job.out"))).toHaveLength(1)
    const out = archived.find((n) => n.endsWith("_job.out"))!
    expect(fs.readFileSync(path.join(root, "archive", out), "utf8")).toBe("ran\n")
  })

  it.each(["bash", "zsh", "fish"])("prints %s completions", async (shell) => {
    const result = await run(["--completions", shell], dir)
    expect(result.code).toBe(0)
    expect(result.stdout).toContain("pmjq")
    expect(result.stdout).toContain("archive-dir")
  })

  it("prints its version and help", async () => {
    const pkg = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, "../../package.json"), "utf8"))
    const version = await run(["--version"], dir)
    expect(version.code).toBe(0)
    expect(version.stdout).toContain(pkg.version)
    const help = await run(["--help"], dir)
    expect(help.code).toBe(0)
    for (const option of ["--cpu-limit", "--archive-dir", "--error-dir", "--max-jobs", "--poll", "--drain", "--grace", "--log-format"]) {
      expect(help.stdout).toContain(option)
    }
  })
})
