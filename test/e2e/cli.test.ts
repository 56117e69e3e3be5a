/** The command line as a newcomer meets it: its errors, statuses, help and completions, run for real. */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, has, publicBin, run, runsHere, tempDir, workspace } from "./harness.js"
import { addUsers, asUser, removeUsers, rootMissing } from "./users.js"

const HINT = "Try 'pmjq --help' for more information."

describe("command line", () => {
  const dir = tempDir("cli")
  fs.mkdirSync(path.join(dir, "spool"))
  fs.mkdirSync(path.join(dir, "other-spool"))
  fs.writeFileSync(path.join(dir, "a-file"), "")

  it.each([
    ["no spool", [], /^pmjq: missing JOB-SPOOL$/],
    ["an unknown option, named rather than the spool", ["--bogus", "spool"], /^pmjq: unknown option --bogus$/],
    ["an unknown option after the spool", ["spool", "--frobnicate"], /^pmjq: unknown option --frobnicate$/],
    ["a near miss", ["spool", "--max-job", "2"], /^pmjq: unknown option --max-job \(did you mean --max-jobs\?\)$/],
    ["an option without its value", ["spool", "--drain", "-o"], /^pmjq: -o needs a DIR$/],
    ["an option whose value is another option", ["-o", "--drain", "spool"], /^pmjq: -o needs a DIR$/],
    ["a count that is not a number", ["-j", "abc", "spool"], /^pmjq: --max-jobs needs an integer, not 'abc'$/],
    ["a negative job count", ["-j", "-1", "spool"], /^pmjq: --max-jobs must be 0 or more, not -1$/],
    ["a zero cpu limit", ["-C", "0", "spool"], /^pmjq: --cpu-limit must be a positive number/],
    ["a load that is not a number", ["-C", "high", "spool"], /^pmjq: --cpu-limit needs a number, not 'high'$/],
    ["a bad duration", ["--poll", "soon", "spool"], /^pmjq: --poll: invalid duration "soon"/],
    ["a switch given a value", ["--drain=yes", "spool"], /^pmjq: --drain takes no value$/],
    ["a mistyped command", ["submitt", "spool"], /^pmjq: no such spool: submitt \(did you mean 'pmjq submit'\?\)$/],
    ["two spools", ["spool", "other-spool"], /^pmjq: one JOB-SPOOL per pmjq, not 2: start a pmjq for each spool$/],
    ["the wizard, which is gone", ["--wizard"], /^pmjq: unknown option --wizard$/]
  ] as const)("names the wrong word in %s: one pmjq: line, one pointing at --help, status 64, nothing created", async (_, args, message) => {
    const result = await run(args, dir)
    expect(result.code).toBe(64)
    const lines = result.stderr.split("\n")
    expect(lines).toHaveLength(3)
    expect(lines[0]).toMatch(message)
    expect(lines[1]).toBe(HINT)
    expect(result.stdout).toBe("")
    expect(fs.existsSync(path.join(dir, "spool", ".pmjq"))).toBe(false)
  })

  it.each([
    ["submit", ["submit", "--completions", "bash"], "pmjq: unknown option --completions"],
    ["status", ["status", "--jsno", "spool"], "pmjq: unknown option --jsno (did you mean --json?)"],
    ["cancel", ["cancel", "spool", "--wait-for"], "pmjq: --wait-for needs a DURATION"],
    ["retry", ["retry", "spool"], "pmjq: missing ENTRY"]
  ] as const)("%s's own mistakes point at its own help", async (command, args, first) => {
    const result = await run(args, dir)
    expect(result.code).toBe(64)
    expect(result.stderr.split("\n")).toEqual([first, `Try 'pmjq ${command} --help' for more information.`, ""])
  })

  it.each([
    ["a spool that does not exist", ["nowhere"], 66, /^pmjq: job spool .*nowhere does not exist or is not a directory$/m],
    ["a spool that is a file", ["a-file"], 66, /does not exist or is not a directory/],
    ["an archive dir that cannot be created", ["-o", "a-file/archive", "spool"], 73, /^pmjq: cannot create directory .*a-file\/archive: ENOTDIR/m],
    ["an error dir that cannot be created", ["-e", "/proc/pmjq-errors", "spool"], 73, /cannot create directory \/proc\/pmjq-errors/]
  ] as const)("refuses %s with one line and a sysexits status", async (_, args, status, message) => {
    const result = await run(args, dir)
    expect(result.code).toBe(status)
    expect(result.stderr).toMatch(message)
    expect(result.stderr.trim().split("\n")).toHaveLength(1)
    expect(fs.existsSync(path.join(dir, "spool", ".pmjq"))).toBe(false)
  })

  it("a start refused late (69: the metrics port is taken) leaves nothing: no .pmjq, no archive dir", async () => {
    const t = workspace("refused-late")
    const taken = net.createServer()
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve))
    const port = (taken.address() as net.AddressInfo).port
    try {
      const result = await run(["--metrics-listen", String(port), "-o", path.join(t.archive, "deep"), "-e", t.errors, t.spool], t.root)
      expect(result.code).toBe(69)
      expect(result.stderr).toMatch(/EADDRINUSE/)
    } finally {
      taken.close()
    }
    expect(fs.readdirSync(t.spool)).toEqual([])
    expect(fs.existsSync(t.archive)).toBe(false)
    expect(fs.existsSync(t.errors)).toBe(false)
  })

  it("a FILE or ENTRY that does not exist is 66 (EX_NOINPUT) for submit and retry", async () => {
    const submitted = await run(["submit", "spool", "no-such-file"], dir)
    expect(submitted.code).toBe(66)
    expect(submitted.stderr).toBe("pmjq: file no-such-file does not exist\n")
    const retried = await run(["retry", "spool", "archive/20260101T000000.000Z_gone"], dir)
    expect(retried.code).toBe(66)
    expect(retried.stderr).toBe(`pmjq: archive entry ${path.join(dir, "archive/20260101T000000.000Z_gone")} does not exist\n`)
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

  it("--drain: 0 only when every drained job succeeded, else 1; one summary line on stderr, in a pipe too; a file that is not executable said once", async () => {
    const t = workspace("drain-status")
    for (const [name, body] of [["ok1", "true"], ["ok2", "true"], ["bad", "exit 3"]]) {
      fs.writeFileSync(path.join(t.spool, name!), `#!/bin/sh\n${body}\n`, { mode: 0o755 })
    }
    fs.writeFileSync(path.join(t.spool, "forgot-chmod"), "#!/bin/sh\ntrue\n", { mode: 0o644 })
    const failing = await run(["--drain", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    expect(failing.code).toBe(1)
    const lines = failing.stderr.trimEnd().split("\n")
    expect(lines.at(-1)).toMatch(new RegExp(`^drain: 3 jobs in \\d+\\.\\d s: 2 succeeded, 1 failed \\(see ${t.errors}\\)$`))
    expect(lines.filter((l) => l.includes("not executable: chmod +x forgot-chmod to run it"))).toHaveLength(1)
    expect(failing.stderr).not.toMatch(/\x1b/)

    fs.writeFileSync(path.join(t.spool, "ok3"), "#!/bin/sh\ntrue\n", { mode: 0o755 })
    const passing = await run(["--drain", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    expect(passing.code).toBe(0)
    expect(passing.stderr.trimEnd().split("\n").at(-1)).toMatch(/^drain: 1 job in \d+\.\d s: 1 succeeded, 0 failed$/)
  })
})

describe("help, version and completions", () => {
  const dir = tempDir("help")

  it("pmjq status --watch | head: ends quietly with the reader", () => {
    fs.mkdirSync(path.join(dir, "watched"), { recursive: true })
    const piped = cp.spawnSync("sh", ["-c", `${process.execPath} ${BIN} status --watch watched | head -n 1`], { cwd: dir, encoding: "utf8", timeout: 60_000 })
    expect(piped.stdout).toMatch(/^spool .*watched at /)
    expect(piped.stderr).toBe("")
    expect(piped.status).toBe(0)
  })

  it("--version prints one line", async () => {
    const pkg = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, "../../package.json"), "utf8"))
    const version = await run(["--version"], dir)
    expect(version.code).toBe(0)
    expect(version.stdout).toBe(`pmjq ${pkg.version}\n`)
  })

  it("--help fits a screen: at most 60 lines of at most 80 columns, grouped, plain text in a pipe, no --wizard", async () => {
    const help = await run(["--help"], dir)
    expect(help.code).toBe(0)
    const lines = help.stdout.trimEnd().split("\n")
    expect(lines.length).toBeLessThanOrEqual(60)
    expect(lines.filter((l) => l.length > 80)).toEqual([])
    expect(help.stdout).not.toMatch(/\x1b/)
    expect(help.stdout).not.toContain("--wizard")
    for (const group of ["The queue:", "The gate and hooks:", "Users and security:", "Cluster", "Telemetry"]) expect(lines.some((l) => l.startsWith(group))).toBe(true)
    // Each option on one line with what it does beside it.
    expect(lines.find((l) => l.includes("--archive-dir"))).toMatch(/^ {2}-o, --archive-dir DIR +\S/)
  })

  it.each(["submit", "status", "cancel", "retry"])("pmjq %s --help is under 35 lines", async (command) => {
    const help = await run([command, "--help"], dir)
    expect(help.code).toBe(0)
    expect(help.stdout.trimEnd().split("\n").length).toBeLessThan(35)
    expect(help.stdout).toMatch(new RegExp(`^Usage: pmjq ${command} `))
  })

  it("colour only on a terminal, and not with NO_COLOR or TERM=dumb", () => {
    const bin = publicBin()
    const viaTerminal = (env: NodeJS.ProcessEnv) =>
      cp.spawnSync("script", ["-qec", `${process.execPath} ${bin} --help`, "/dev/null"], { encoding: "utf8", env: { ...process.env, ...env } }).stdout
    expect(viaTerminal({ TERM: "xterm" })).toMatch(/\x1b\[1m/)
    expect(viaTerminal({ TERM: "xterm", NO_COLOR: "1" })).not.toMatch(/\x1b/)
    expect(viaTerminal({ TERM: "dumb" })).not.toMatch(/\x1b/)
  })

  it.runIf(runsHere("bash completions run", has("bash") ? null : "needs bash"))("(needs bash) bash completions know the subcommands and each one's options", async () => {
    const script = path.join(dir, "pmjq.bash")
    const made = await run(["--completions", "bash"], dir)
    expect(made.code).toBe(0)
    fs.writeFileSync(script, made.stdout)
    const complete = (...words: ReadonlyArray<string>) => {
      const line = ["pmjq", ...words]
      const out = cp.spawnSync("bash", ["-c", `source ${script}; COMP_WORDS=(${line.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${line.length - 1}; _pmjq; printf '%s\\n' "\${COMPREPLY[@]}"`], {
        encoding: "utf8",
        cwd: dir
      })
      expect(out.stderr).toBe("")
      return out.stdout.trim().split("\n")
    }
    expect(complete("su")).toContain("submit")
    expect(complete("st")).toContain("status")
    expect(complete("submit", "--w")).toEqual(["--wait"])
    expect(complete("retry", "--")).toEqual(expect.arrayContaining(["--wait", "--help"]))
    expect(complete("cancel", "--m")).toEqual(["--mine"])
    expect(complete("--on-stop", "")).toEqual(["stop", "leave"])
    expect(complete("--archive")).toEqual(["--archive-dir"])
    // A subcommand's options are not the daemon's.
    expect(complete("submit", "--arch")).toEqual([""])
    // A folder with a blank in its name is one completion, whole.
    fs.mkdirSync(path.join(dir, "my spool"), { recursive: true })
    expect(complete("-o", "my")).toEqual(["my spool"])
  })

  it.each(["zsh", "fish"])("%s completions name every subcommand and their options", async (shell) => {
    const made = await run(["--completions", shell], dir)
    expect(made.code).toBe(0)
    for (const word of ["submit", "status", "cancel", "retry", "archive-dir", "wait", "mine", "json"]) expect(made.stdout).toContain(word)
  })
})

describe.runIf(runsHere("an archive dir pmjq may not write", rootMissing))("as root: an archive dir pmjq cannot write", () => {
  const USER = "pmjqcli"
  let bin = ""
  beforeAll(() => {
    addUsers([USER])
    bin = publicBin()
  })
  afterAll(() => removeUsers([USER]))

  it("refused at start with 77 in one sentence, nothing created", () => {
    const t = workspace("unwritable")
    fs.chmodSync(t.root, 0o755)
    cp.execFileSync("chown", [USER, t.spool])
    fs.mkdirSync(t.archive, { mode: 0o755 })
    const refused = asUser(USER, [process.execPath, bin, "-o", t.archive, t.spool])
    expect(refused.status).toBe(77)
    expect(refused.stderr).toBe(`pmjq: cannot write to the archive dir ${t.archive}: EACCES: permission denied\n`)
    expect(fs.readdirSync(t.spool)).toEqual([])
  })

  it("on a read-only filesystem: 73", () => {
    const t = workspace("read-only")
    fs.mkdirSync(t.archive)
    cp.execFileSync("mount", ["--bind", t.archive, t.archive])
    try {
      cp.execFileSync("mount", ["-o", "remount,bind,ro", t.archive])
      const refused = cp.spawnSync(process.execPath, [bin, "-o", t.archive, t.spool], { encoding: "utf8" })
      expect(refused.status).toBe(73)
      expect(refused.stderr).toMatch(/^pmjq: cannot create directory .*: --archive-dir is on a read-only filesystem\n$/)
      expect(fs.readdirSync(t.spool)).toEqual([])
    } finally {
      cp.spawnSync("umount", [t.archive])
    }
  })
})
