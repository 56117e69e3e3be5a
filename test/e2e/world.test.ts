/**
 * A job does not inherit pmjq's world: as root with --run-as-owner, a user's
 * job gets a clean environment, its own home, umask 022, only fds 0-2, output
 * files only it can read, pipes instead of pmjq's log, and (--job-nproc) a cap
 * on its user's processes. Also the spawner's own file creation, driven
 * directly (no root needed).
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { Ready, SpawnReport, SpawnRequest } from "../../src/spawner/protocol.js"
import { BIN, records, run, runsHere, tempDir, waitFor, workspace } from "./harness.js"
import { addUsers, asUser, gidOf, rootMissing, sharedSpool, submitAs, uidOf } from "./users.js"

const WA = "pmjq-wa"
const WB = "pmjq-wb"
const SPAWNER = path.resolve(import.meta.dirname, "../../dist/spawner.js")

interface Daemon {
  readonly child: cp.ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/**
 * A descriptor number a careless parent leaves open. Node marks close-on-exec
 * what it inherits at 0-15 and the unbroken run after them
 * (uv_disable_stdio_inheritance), so a low one would never reach a job anyway;
 * one further up, after a gap, does.
 */
const STRAY_FD = 100

/** stdio for a child with STRAY_FD open (and nothing else above 2). */
const withStray = (stdout: cp.IOType | number, stderr: cp.IOType | number, stray: cp.IOType | number, ipc = false): cp.StdioOptions =>
  Array.from({ length: STRAY_FD + 1 }, (_, fd) =>
    fd === 0 ? "ignore" : fd === 1 ? stdout : fd === 2 ? stderr : fd === 3 && ipc ? "ipc" : fd === STRAY_FD ? stray : "ignore")

/**
 * pmjq started the way a careless parent would: umask 000, and a stray
 * descriptor open without close-on-exec. stderr may go to a file.
 */
const startCarelessly = (
  args: ReadonlyArray<string>,
  cwd: string,
  options: { readonly env?: NodeJS.ProcessEnv; readonly stderr?: number } = {}
): Daemon => {
  const child = cp.spawn("/bin/sh", ["-c", 'umask 000; exec "$@"', "sh", process.execPath, BIN, ...args], {
    cwd,
    env: options.env ?? process.env,
    stdio: withStray("pipe", options.stderr ?? "pipe", "pipe")
  })
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()))
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()))
  // 'exit', not 'close': the extra descriptors stay open wherever they leaked to.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal }))
  )
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

const stop = async (daemon: Daemon) => {
  daemon.child.kill("SIGTERM")
  return daemon.exited
}

const entryOf = (dir: string, name: string) => {
  const record = records(dir).find((r) => r.name === name)
  if (record === undefined) throw new Error(`no record of ${name} in ${dir}`)
  return path.join(dir, record.entry as string)
}

/** No process of USER left: each killed, by user (these users are this file's alone). */
const killAllOf = async (user: string) => {
  cp.spawnSync("pkill", ["-KILL", "-u", user])
  await waitFor(`no process of ${user}`, () => cp.spawnSync("pgrep", ["-u", user]).status === 1)
}

describe.runIf(runsHere("a job run as its owner", rootMissing))("(as root: creates users) a job run as its owner does not inherit root's world", () => {
  beforeAll(() => addUsers([WA, WB]))
  afterEach(async () => {
    for (const user of [WA, WB]) await killAllOf(user)
  })
  afterAll(async () => {
    for (const user of [WA, WB]) {
      await killAllOf(user)
      cp.spawnSync("userdel", ["-r", user])
    }
  })

  it("its environment is reset (PATH fixed, the account, locale, TZ, --keep-env, PMJQ_*), it has fds 0-2 only, umask 022, and starts in its home", async () => {
    const t = sharedSpool("world")
    submitAs(WA, t.spool, "world", [
      'echo "umask $(umask)"',
      'echo "cwd $(pwd -P)"',
      "tr '\\0' '\\n' < /proc/$$/environ | sed 's/^/env /'",
      // ls's own handle on the listing is fd 3 -> /proc/PID/fd; the test leaves it out.
      "ls -l /proc/self/fd | sed -n 's/^.* \\([0-9][0-9]*\\) -> \\(.*\\)$/fd \\1 \\2/p'"
    ].join("\n"))
    const pmjqEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(LANG|LANGUAGE|TZ|LC_.*)$/.test(name)))
    const daemon = startCarelessly(["--run-as-owner", "--keep-env", "KEPT_ONE", "-o", t.archive, "--drain", t.spool], t.root, {
      env: { ...pmjqEnv, SECRET_OF_ROOT: "x", KEPT_ONE: "kept", LANG: "C.UTF-8", LC_TIME: "C", TZ: "UTC" }
    })
    expect((await daemon.exited).code).toBe(0)
    expect(records(t.archive)).toMatchObject([{ name: "world", outcome: "succeeded", user: WA }])
    const out = fs.readFileSync(entryOf(t.archive, "world") + ".out", "utf8").split("\n")
    const env = Object.fromEntries(out.filter((l) => l.startsWith("env ")).map((l) => {
      const [name, ...value] = l.slice(4).split("=")
      return [name!, value.join("=")]
    }))
    expect(Object.keys(env).sort()).toEqual(
      ["HOME", "KEPT_ONE", "LANG", "LC_TIME", "LOGNAME", "PATH", "PMJQ_ATTEMPT", "PMJQ_JOB", "PMJQ_NODE", "PMJQ_SPOOL", "SHELL", "TZ", "USER"]
    )
    expect(env).toMatchObject({
      PATH: "/usr/local/bin:/usr/bin:/bin",
      HOME: `/home/${WA}`,
      USER: WA,
      LOGNAME: WA,
      SHELL: "/bin/sh",
      KEPT_ONE: "kept",
      LANG: "C.UTF-8",
      TZ: "UTC",
      PMJQ_JOB: "world"
    })
    expect(env["SECRET_OF_ROOT"]).toBeUndefined()
    const fds = out.filter((l) => l.startsWith("fd ")).map((l) => l.split(" "))
      .filter(([, , target]) => !/^\/proc\/\d+\/fd$/.test(target ?? ""))
      .map(([, fd]) => Number(fd))
    expect(fds.sort((a, b) => a - b)).toEqual([0, 1, 2])
    expect(out).toContain("umask 0022")
    expect(out).toContain(`cwd /home/${WA}`)
  })

  it("its .out and .err are its owner's alone (0600); its record is pmjq's, readable by the owner's group (0640)", async () => {
    const t = sharedSpool("private")
    fs.mkdirSync(t.archive)
    fs.chmodSync(t.archive, 0o755) // only the files' own modes keep others out
    submitAs(WA, t.spool, "private", "echo secret-of-wa\necho err-of-wa >&2")
    const daemon = startCarelessly(["--run-as-owner", "-o", t.archive, "--drain", t.spool], t.root)
    expect((await daemon.exited).code).toBe(0)
    const entry = entryOf(t.archive, "private")
    for (const suffix of [".out", ".err"]) {
      const stat = fs.statSync(entry + suffix)
      expect({ suffix, mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid }).toEqual({ suffix, mode: 0o600, uid: uidOf(WA), gid: gidOf(WA) })
    }
    const record = fs.statSync(entry + ".json")
    expect({ mode: record.mode & 0o7777, uid: record.uid, gid: record.gid }).toEqual({ mode: 0o640, uid: 0, gid: gidOf(WA) })

    const byOther = asUser(WB, ["cat", entry + ".out"])
    expect(byOther.status).not.toBe(0)
    expect(byOther.stderr).toContain("Permission denied")
    expect(asUser(WA, ["cat", entry + ".out"]).stdout).toBe("secret-of-wa\n")
    expect(asUser(WA, ["cat", entry + ".json"]).status).toBe(0)
    const rewrite = asUser(WA, ["sh", "-c", `echo forged >> "${entry}.json"`])
    expect(rewrite.status).not.toBe(0)
    expect(fs.readFileSync(entry + ".json", "utf8")).not.toContain("forged")
  })

  it("without -o or -e, its stdout and stderr are pipes, not pmjq's log: it cannot truncate the log, and its output comes out of pmjq's", async () => {
    const t = sharedSpool("log")
    const log = path.join(t.root, "pmjq.log")
    const logFd = fs.openSync(log, "w", 0o644)
    const daemon = startCarelessly(["--run-as-owner", t.spool], t.root, { stderr: logFd })
    fs.closeSync(logFd)
    const readLog = () => fs.readFileSync(log, "utf8")
    try {
      submitAs(WB, t.spool, "first", "echo first-output")
      await waitFor("the first job in pmjq's log", () => /INFO finished job=first /.test(readLog()))
      const before = readLog()
      submitAs(WA, t.spool, "attack", [
        'echo "hello from the job"',
        'echo "fd1 $(readlink /proc/$$/fd/1)"',
        'echo "fd2 $(readlink /proc/$$/fd/2)"',
        `perl -e 'if (truncate(STDERR, 0)) { print "truncated stderr\\n" } else { print "stderr not truncated: $!\\n" }'`,
        "echo attack-done"
      ].join("\n"))
      await waitFor("the job's output through pmjq's stdout", () => daemon.stdout().includes("attack-done"))
      await waitFor("the job in pmjq's log", () => /INFO finished job=attack /.test(readLog()))
      const after = readLog()
      expect(after.startsWith(before)).toBe(true)
      expect(after).not.toContain("\0")
      expect(after).toMatch(/INFO finished job=attack .*outcome=succeeded/)
      const stdout = daemon.stdout()
      expect(stdout).toContain("first-output\n")
      expect(stdout).toContain("hello from the job\n")
      expect(stdout).toMatch(/^stderr not truncated: /m)
      expect(stdout).not.toContain("truncated stderr")
      for (const fd of ["fd1", "fd2"]) {
        const target = new RegExp(`^${fd} (.*)$`, "m").exec(stdout)?.[1]
        expect(target).toMatch(/^(pipe|socket):\[\d+\]$/)
      }
    } finally {
      expect((await stop(daemon)).code).toBe(0)
    }
  })

  it("--job-nproc: one user's fork bomb hits its own limit, while another user's job runs and succeeds", async () => {
    const t = sharedSpool("nproc")
    const shared = path.join(t.root, "shared")
    fs.mkdirSync(shared)
    fs.chmodSync(shared, 0o1777)
    const atLimit = path.join(shared, "at-limit")
    const release = path.join(shared, "release")
    cp.execFileSync("mkfifo", ["-m", "666", release])
    // At most 20 processes of pmjq-wa: the shell, the loop's subshell and 18
    // sleeps; the loop then fails to fork and stops. Builtins only from there
    // (no fork), until the test releases it; then it ends its own group.
    submitAs(WA, t.spool, "bomb", [
      '( i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); done; echo "all 200 started" )',
      'echo "the loop stopped: $?"',
      `: > "${atLimit}"`,
      `read word < "${release}"`,
      "trap '' TERM",
      "kill -TERM 0",
      'echo "released: $word"'
    ].join("\n"))
    const daemon = startCarelessly(
      ["--run-as-owner", "--job-nproc", "20", "-j", "2", "--timeout", "2m", "-o", t.archive, "-e", t.errors, t.spool],
      t.root
    )
    try {
      await waitFor("pmjq-wa's job at its limit", () => fs.existsSync(atLimit) || daemon.child.exitCode !== null, 60_000)
      expect(daemon.child.exitCode).toBeNull()
      submitAs(WB, t.spool, "bystander", 'echo "ran as $(id -un)"')
      await waitFor("pmjq-wb's job", () => records(t.archive).some((r) => r.name === "bystander"), 60_000)
      expect(records(t.archive)).toMatchObject([{ name: "bystander", outcome: "succeeded", user: WB }])
      expect(fs.readFileSync(entryOf(t.archive, "bystander") + ".out", "utf8")).toBe(`ran as ${WB}\n`)
      // The bomb was still running all along.
      expect(records(t.errors)).toEqual([])

      await waitFor("the bomb listening", () => {
        try {
          const fd = fs.openSync(release, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)
          fs.writeSync(fd, "go\n")
          fs.closeSync(fd)
          return true
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENXIO") return false // no reader yet
          throw e
        }
      })
      await waitFor("the bomb's record", () => records(t.archive).some((r) => r.name === "bomb"), 60_000)
      const bomb = entryOf(t.archive, "bomb")
      const out = fs.readFileSync(bomb + ".out", "utf8")
      expect(out).not.toContain("all 200 started")
      expect(out).toMatch(/^the loop stopped: [1-9]\d*$/m)
      expect(out).toContain("released: go\n")
      expect(fs.readFileSync(bomb + ".err", "utf8")).toMatch(/Cannot fork/)
    } finally {
      expect((await stop(daemon)).code).toBe(0)
    }
  })

  it("wrapped in prlimit and setpriv, a job whose #! interpreter is missing still fails clearly (setpriv's exit 127 and message)", async () => {
    const t = sharedSpool("wrapped-exec")
    submitAs(WA, t.spool, "no-interpreter", "#!/no/such/interpreter\necho never\n")
    const result = await run(["--run-as-owner", "--job-nproc", "50", "-o", t.archive, "-e", t.errors, "--drain", t.spool], t.root)
    expect(result.code).toBe(1)
    expect(records(t.errors)).toMatchObject([{ name: "no-interpreter", outcome: "failed", exitCode: 127 }])
    expect(fs.readFileSync(entryOf(t.errors, "no-interpreter") + ".err", "utf8")).toMatch(/setpriv: .*No such file or directory/)
  })
})

describe("--keep-env and --job-nproc on the command line", () => {
  it("--job-nproc without --run-as-owner is refused in one line and a pointer to --help (exit 64); so are a bad count and a bad variable name", async () => {
    const t = workspace("nproc-alone")
    const alone = await run(["--job-nproc", "20", t.spool], t.root)
    expect(alone.code).toBe(64)
    expect(alone.stderr.trim().split("\n")).toEqual([
      "pmjq: --job-nproc needs --run-as-owner: it limits the processes of each job's user, and root ignores the limit",
      "Try 'pmjq --help' for more information."
    ])
    expect((await run(["--job-nproc", "0", t.spool], t.root)).code).toBe(64)
    const badName = await run(["--keep-env", "HTTP_PROXY,NO SUCH", t.spool], t.root)
    expect(badName.code).toBe(64)
    expect(badName.stderr.trim().split("\n")[0]).toBe("pmjq: --keep-env: not a variable name: NO SUCH")
  })
})

/** The spawner alone, as pmjq drives it: requests in, reports out. */
const spawner = () => {
  const child = cp.fork(SPAWNER, [], { stdio: ["ignore", "pipe", "pipe", "ipc"], execArgv: [], serialization: "json" })
  const reports: Array<SpawnReport> = []
  // Its first message says it is ready (protocol.ts: Ready); the reports follow.
  child.on("message", (message: SpawnReport | Ready) => {
    if (!("ready" in message)) reports.push(message)
  })
  const request = (over: Partial<SpawnRequest> & Pick<SpawnRequest, "id" | "path">): SpawnRequest => ({
    cwd: "/",
    env: {},
    keepEnv: [],
    nproc: null,
    stdout: null,
    stderr: null,
    record: null,
    user: null,
    ...over
  })
  return { child, reports, send: (over: Partial<SpawnRequest> & Pick<SpawnRequest, "id" | "path">) => child.send(request(over)) }
}

const script = (dir: string, body: string) => {
  const file = path.join(dir, "job")
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  return file
}

describe("the spawner's own files", () => {
  it("never appends to an existing output file: the spawn fails with EEXIST, and the file it had made is removed", async () => {
    const dir = tempDir("spawner-eexist")
    const job = script(dir, `echo ran > "${dir}/ran"`)
    const out = path.join(dir, "job.out")
    const err = path.join(dir, "job.err")
    fs.writeFileSync(err, "left by someone\n")
    const s = spawner()
    try {
      s.send({ id: 1, path: job, stdout: out, stderr: err })
      await waitFor("a report", () => s.reports.length > 0 || s.child.exitCode !== null)
      expect(s.reports).toEqual([{ id: 1, error: { code: "EEXIST", message: "its output file already exists" } }])
      expect(fs.existsSync(out)).toBe(false)
      expect(fs.readFileSync(err, "utf8")).toBe("left by someone\n")
      expect(fs.existsSync(path.join(dir, "ran"))).toBe(false)
    } finally {
      if (s.child.connected) s.child.disconnect()
    }
  })

  it("makes output files 0600 and writes the record aside without following a planted symlink", async () => {
    const dir = tempDir("spawner-record")
    const job = script(dir, "echo out")
    const victim = path.join(dir, "victim")
    fs.writeFileSync(victim, "untouched\n")
    const recordFile = path.join(dir, "job.json")
    fs.symlinkSync(victim, `${recordFile}.tmp`)
    const s = spawner()
    try {
      s.send({
        id: 7,
        path: job,
        stdout: path.join(dir, "job.out"),
        stderr: path.join(dir, "job.err"),
        record: {
          file: recordFile,
          base: { name: "job", node: "n", host: "h", user: "u", uid: 0, inode: 1, attempt: 1, claimedAt: new Date().toISOString() }
        }
      })
      await waitFor("the job's end", () => s.reports.some((r) => "recorded" in r))
      expect(s.reports.find((r) => "recorded" in r)).toMatchObject({ id: 7, exitCode: 0, recorded: true })
      expect(fs.readFileSync(victim, "utf8")).toBe("untouched\n")
      expect(fs.lstatSync(recordFile).isFile()).toBe(true)
      expect(JSON.parse(fs.readFileSync(recordFile, "utf8"))).toMatchObject({ name: "job", outcome: "succeeded" })
      expect(fs.statSync(recordFile).mode & 0o777).toBe(0o600)
      for (const suffix of [".out", ".err"]) expect(fs.statSync(path.join(dir, `job${suffix}`)).mode & 0o777).toBe(0o600)
      expect(fs.readFileSync(path.join(dir, "job.out"), "utf8")).toBe("out\n")
    } finally {
      if (s.child.connected) s.child.disconnect()
    }
  })

  it("a job it starts gets no descriptor it inherited, and its uncaptured output comes out of the spawner's", async () => {
    const dir = tempDir("spawner-fds")
    const job = script(dir, "ls -l /proc/self/fd | sed -n 's/^.* \\([0-9][0-9]*\\) -> \\(.*\\)$/fd \\1 \\2/p'\necho done")
    const leaked = fs.openSync(path.join(dir, "leaked"), "w")
    const child = cp.fork(SPAWNER, [], { stdio: withStray("pipe", "pipe", leaked, true), execArgv: [], serialization: "json" })
    fs.closeSync(leaked)
    let stdout = ""
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()))
    const reports: Array<SpawnReport> = []
    child.on("message", (message: SpawnReport | Ready) => {
      if (!("ready" in message)) reports.push(message)
    })
    try {
      child.send({ id: 1, path: job, cwd: dir, env: {}, keepEnv: [], nproc: null, stdout: null, stderr: null, record: null, user: null } satisfies SpawnRequest)
      await waitFor("the job's output", () => stdout.includes("done\n"))
      expect(reports[0]).toMatchObject({ id: 1 })
      const fds = stdout.split("\n").filter((l) => l.startsWith("fd ")).map((l) => l.split(" "))
        .filter(([, , target]) => !/^\/proc\/\d+\/fd$/.test(target ?? ""))
      expect(fds.map(([, fd]) => Number(fd)).sort((a, b) => a - b)).toEqual([0, 1, 2])
      expect(stdout).not.toContain(path.join(dir, "leaked"))
    } finally {
      if (child.connected) child.disconnect()
    }
  })
})
