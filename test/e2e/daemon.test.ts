import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { BIN, entries, isAlive, lines, publicBin, records, run, signalIfSame, start, submit, waitFor, watched, workspace } from "./harness.js"
import { identify, stillRuns } from "../../src/process/proc.js"

const SLOW_HEARTBEAT = path.resolve(import.meta.dirname, "fixtures/slow-heartbeat.cjs")

const setup = workspace


const runningFolderIsEmpty = (spool: string) => {
  const running = path.join(spool, ".pmjq", "running")
  return entries(running).every((node) => entries(path.join(running, node)).length === 0)
}

describe("pmjq daemon", () => {
  it("runs 200 jobs exactly once each and archives every one with its record", async () => {
    const t = setup("two-hundred")
    for (let i = 0; i < 200; i++) submit(t.spool, `job-${i}`, `echo "$PMJQ_JOB" >> "${t.ledger}"\necho out-${i}\necho err-${i} >&2`)
    const result = await run(["-j", "8", "-o", t.archive, "--drain", t.spool], t.root)
    expect(result.code).toBe(0)

    const ran = lines(t.ledger)
    expect(ran).toHaveLength(200)
    expect(new Set(ran).size).toBe(200)

    const recs = records(t.archive)
    expect(recs).toHaveLength(200)
    for (const r of recs) {
      expect(r).toMatchObject({ outcome: "succeeded", exitCode: 0, signal: null, attempt: 1 })
      expect(r.entry).toMatch(/^\d{8}T\d{6}\.\d{3}Z(-\d+)?_job-\d+$/)
      const i = r.name.slice("job-".length)
      expect(fs.readFileSync(path.join(t.archive, r.entry + ".out"), "utf8")).toBe(`out-${i}\n`)
      expect(fs.readFileSync(path.join(t.archive, r.entry + ".err"), "utf8")).toBe(`err-${i}\n`)
      expect(fs.statSync(path.join(t.archive, r.entry)).mode & 0o111).not.toBe(0)
    }
    expect(entries(t.spool)).toEqual([".pmjq"])
    expect(runningFolderIsEmpty(t.spool)).toBe(true)
    // One log line per event: claimed, started, finished, archived.
    for (const event of ["claimed", "started", "finished", "archived"]) {
      expect(result.stderr.split("\n").filter((l) => l.includes(` INFO ${event} job=`))).toHaveLength(200)
    }
  })

  it("starts jobs oldest first (by the ctime their rename into the spool gave them), not by name", async () => {
    const t = setup("order")
    let previous = 0
    for (const name of ["zeta", "alpha", "mid"]) {
      submit(t.spool, name, `echo "$PMJQ_JOB" >> "${t.ledger}"`)
      // The kernel's timestamps are coarse (a few ms): until this file is
      // strictly younger than the one before, make it ready again (chmod sets ctime).
      const file = path.join(t.spool, name)
      await waitFor(`${name} younger than the one before`, () => {
        fs.chmodSync(file, 0o755)
        return fs.statSync(file).ctimeMs > previous
      })
      previous = fs.statSync(file).ctimeMs
    }
    const result = await run(["-j", "1", "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    expect(lines(t.ledger)).toEqual(["zeta", "alpha", "mid"])
  })

  it("archives every one of several same-named jobs, including one submitted while the first still runs", async () => {
    const t = setup("same-name")
    const daemon = start(["-j", "4", "-o", t.archive, t.spool], t.root)
    try {
      for (let i = 0; i < 6; i++) {
        // Slow enough that the next one is claimed while this one runs.
        submit(t.spool, "same", `echo run-${i} >> "${t.ledger}"\nsleep 0.3\necho run-${i}`)
        await waitFor(`same #${i} claimed`, () => !fs.existsSync(path.join(t.spool, "same")))
      }
      await waitFor("six records", () => records(t.archive).length === 6)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
    expect(lines(t.ledger).sort()).toEqual(["run-0", "run-1", "run-2", "run-3", "run-4", "run-5"])
    const outs = records(t.archive).map((r) => fs.readFileSync(path.join(t.archive, r.entry + ".out"), "utf8").trim())
    expect(outs.sort()).toEqual(["run-0", "run-1", "run-2", "run-3", "run-4", "run-5"])
    expect(records(t.archive).every((r) => r.name === "same")).toBe(true)
  })

  it("handles odd file names: spaces, a leading dash, unicode, quotes, 200 characters", async () => {
    const t = setup("names")
    const names = ["with space", "-leading-dash", "ünïcødé-名前-🚀", `it's "quoted"`, "x".repeat(200), "semi;colon&amp$(echo no)"]
    for (const name of names) submit(t.spool, name, `printf '%s' "$PMJQ_JOB"`)
    const result = await run(["-o", t.archive, "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    const recs = records(t.archive)
    expect(recs.map((r) => r.name).sort()).toEqual([...names].sort())
    for (const r of recs) {
      expect(r.outcome).toBe("succeeded")
      expect(fs.readFileSync(path.join(t.archive, r.entry + ".out"), "utf8")).toBe(r.name)
    }
  })

  it("never runs a file half-written: a job written in two steps runs whole, once", async () => {
    const t = setup("half")
    const daemon = start(["-o", t.archive, "--log-format", "json", t.spool], t.root)
    try {
      await waitFor("daemon watching", () => daemon.output().stderr.includes('"watching"'))
      // Executable from the first byte, as `cp` of a script does.
      const fd = fs.openSync(path.join(t.spool, "two-steps"), "w", 0o755)
      fs.writeSync(fd, `#!/bin/sh\necho first >> "${t.ledger}"\n`)
      await new Promise((r) => setTimeout(r, 700))
      fs.writeSync(fd, `echo second >> "${t.ledger}"\n`)
      fs.closeSync(fd)
      await waitFor("record", () => records(t.archive).length === 1)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
    expect(lines(t.ledger)).toEqual(["first", "second"])
    expect(records(t.archive)[0]).toMatchObject({ name: "two-steps", outcome: "succeeded" })
    // Each failed exec attempt left nothing behind.
    expect(runningFolderIsEmpty(t.spool)).toBe(true)
    expect(entries(t.archive)).toHaveLength(4)
  })

  it("never touches non-executable files, hidden files or directories", async () => {
    const t = setup("untouched")
    const plain = path.join(t.spool, "notes.txt")
    const hidden = path.join(t.spool, ".draft")
    fs.writeFileSync(plain, "echo should not run\n", { mode: 0o644 })
    fs.writeFileSync(hidden, `#!/bin/sh\necho hidden >> "${t.ledger}"\n`, { mode: 0o755 })
    fs.mkdirSync(path.join(t.spool, "a-directory"), { mode: 0o755 })
    const before = [plain, hidden].map((f) => [fs.readFileSync(f, "utf8"), fs.statSync(f).mtimeMs, fs.statSync(f).mode])
    submit(t.spool, "real", `echo real >> "${t.ledger}"`)

    const result = await run(["-o", t.archive, "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    expect(lines(t.ledger)).toEqual(["real"])
    expect([plain, hidden].map((f) => [fs.readFileSync(f, "utf8"), fs.statSync(f).mtimeMs, fs.statSync(f).mode])).toEqual(before)
    expect(fs.statSync(path.join(t.spool, "a-directory")).isDirectory()).toBe(true)
    expect(records(t.archive).map((r) => r.name)).toEqual(["real"])
  })

  it("sends failed jobs to the error dir with their output, successes to the archive", async () => {
    const t = setup("errors")
    submit(t.spool, "fine", "echo fine")
    submit(t.spool, "exit-3", "echo about to fail >&2\nexit 3")
    submit(t.spool, "killed", "kill -KILL $$")
    fs.writeFileSync(path.join(t.spool, "no-interpreter"), "#!/nonexistent/interpreter\n", { mode: 0o755 })
    const result = await run(["-o", t.archive, "-e", t.errors, "--drain", t.spool], t.root)
    expect(result.code).toBe(1)
    expect(records(t.archive).map((r) => r.name)).toEqual(["fine"])
    const failed = Object.fromEntries(records(t.errors).map((r) => [r.name, r]))
    expect(Object.keys(failed).sort()).toEqual(["exit-3", "killed", "no-interpreter"])
    expect(failed["exit-3"]).toMatchObject({ outcome: "failed", exitCode: 3, reason: "exited with status 3" })
    expect(fs.readFileSync(path.join(t.errors, failed["exit-3"].entry + ".err"), "utf8")).toBe("about to fail\n")
    expect(failed["killed"]).toMatchObject({ outcome: "failed", exitCode: null, signal: "SIGKILL" })
    expect(failed["no-interpreter"]).toMatchObject({ outcome: "failed", exitCode: null })
    expect(failed["no-interpreter"].reason).toBe("cannot execute: ENOENT: its #! interpreter was not found")
    // The script that could not start is kept, not lost; it has no output files.
    expect(fs.readFileSync(path.join(t.errors, failed["no-interpreter"].entry), "utf8")).toBe("#!/nonexistent/interpreter\n")
    expect(entries(t.errors).filter((n) => n.startsWith(failed["no-interpreter"].entry))).toHaveLength(2)
    expect(runningFolderIsEmpty(t.spool)).toBe(true)
  })

  it("without -o, deletes each script after its run and passes its output through", async () => {
    const t = setup("passthrough")
    submit(t.spool, "hello", `echo "hello from $PMJQ_JOB on $PMJQ_NODE in $PWD, spool $PMJQ_SPOOL"`)
    const result = await run(["--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    expect(result.stdout).toMatch(new RegExp(`^hello from hello on .+-\\d+ in ${t.root}, spool ${t.spool}\\n$`))
    expect(entries(t.spool)).toEqual([".pmjq"])
  })

  it("with only -e, a success is deleted and its output still reaches pmjq's output; a failure is archived", async () => {
    const t = setup("errors-only")
    submit(t.spool, "fine", "echo fine-out\necho fine-err >&2")
    submit(t.spool, "broken", "echo broken-out\nexit 4")
    const result = await run(["-j", "1", "-e", t.errors, "--drain", t.spool], t.root)
    expect(result.code).toBe(1)
    expect(result.stdout).toContain("fine-out\n")
    expect(result.stderr).toContain("fine-err\n")
    expect(result.stdout).not.toContain("broken-out")
    const [failed] = records(t.errors)
    expect(records(t.errors)).toHaveLength(1)
    expect(failed).toMatchObject({ name: "broken", outcome: "failed", exitCode: 4 })
    expect(fs.readFileSync(path.join(t.errors, failed.entry + ".out"), "utf8")).toBe("broken-out\n")
    expect(entries(t.spool)).toEqual([".pmjq"])
    expect(runningFolderIsEmpty(t.spool)).toBe(true)
  })

  it("--log-format json writes one JSON object per line, one per job event", async () => {
    const t = setup("json-log")
    submit(t.spool, "a job", "exit 2")
    const result = await run(["--log-format", "json", "-o", t.archive, "--drain", t.spool], t.root)
    expect(result.code).toBe(1)
    const lines = result.stderr.trim().split("\n").map((line) => JSON.parse(line))
    for (const line of lines) expect(Object.keys(line)).toEqual(expect.arrayContaining(["time", "level", "message"]))
    const events = lines.filter((l) => l.job === "a job").map((l) => l.message)
    expect(events).toEqual(["claimed", "started", "finished", "archived"])
    expect(lines.find((l) => l.message === "finished")).toMatchObject({ outcome: "failed", exitCode: 2 })
    // The drain's last line too, as a JSON object.
    expect(lines.at(-1)).toMatchObject({ level: "INFO", message: expect.stringMatching(/^drain: 1 job in \d+\.\d s: 0 succeeded, 1 failed/), succeeded: 0, failed: 1 })
  })

  it("on SIGTERM lets a running job finish, archives it, and exits 0", async () => {
    const t = setup("sigterm-grace")
    const daemon = start(["-o", t.archive, t.spool], t.root)
    submit(t.spool, "short", `sleep 1\necho done >> "${t.ledger}"`)
    await waitFor("job started", () => daemon.output().stderr.includes("INFO started job=short"))
    daemon.child.kill("SIGTERM")
    const { code } = await daemon.exited
    expect(code).toBe(0)
    expect(lines(t.ledger)).toEqual(["done"])
    expect(records(t.archive)).toMatchObject([{ name: "short", outcome: "succeeded" }])
  })

  it("on SIGTERM past the grace, kills the job's whole process group and archives it as interrupted", async () => {
    const t = setup("sigterm-kill")
    const pidFile = path.join(t.root, "child.pid")
    const daemon = start(["-o", t.archive, "--grace", "500ms", t.spool], t.root)
    // A background child that would outlive a kill of the job's pid alone.
    submit(t.spool, "stubborn", `sleep 300 &\necho $! > "${pidFile}"\nwait`)
    await waitFor("background child", () => fs.existsSync(pidFile) && fs.readFileSync(pidFile, "utf8").endsWith("\n"))
    const child = Number(fs.readFileSync(pidFile, "utf8"))
    expect(isAlive(child)).toBe(true)
    daemon.child.kill("SIGTERM")
    const { code } = await daemon.exited
    expect(code).toBe(0)
    const [record] = records(t.archive)
    expect(record).toMatchObject({ name: "stubborn", outcome: "interrupted", signal: "SIGTERM" })
    expect(isAlive(record.pid)).toBe(false)
    await waitFor("background child gone", () => !isAlive(child))
    expect(daemon.output().stderr).toMatch(/INFO stopping .*running=1/)
  })

  it("on SIGINT stops claiming: queued jobs stay queued, untouched", async () => {
    const t = setup("sigint")
    const daemon = start(["-j", "1", "-o", t.archive, t.spool], t.root)
    submit(t.spool, "first", `sleep 0.5`)
    await waitFor("first started", () => daemon.output().stderr.includes("INFO started job=first"))
    submit(t.spool, "second", "echo second")
    await waitFor("second noticed", () => fs.existsSync(path.join(t.spool, "second")))
    daemon.child.kill("SIGINT")
    expect((await daemon.exited).code).toBe(0)
    expect(records(t.archive).map((r) => r.name)).toEqual(["first"])
    expect(fs.existsSync(path.join(t.spool, "second"))).toBe(true)
  })
})

describe("--drain progress", () => {
  it("on a terminal, a live line on stderr; in a pipe or a file, none of it, only the last line", async () => {
    const t = setup("progress")
    for (let i = 0; i < 12; i++) submit(t.spool, `job-${i}`, "sleep 0.2")
    // script(1) gives pmjq a pseudo-terminal, as a user's shell would.
    const command = [process.execPath, BIN, "-j", "2", "-o", t.archive, "--drain", t.spool].map((w) => `'${w}'`).join(" ")
    const tty = cp.spawnSync("script", ["-qfec", command, "/dev/null"], { cwd: t.root, encoding: "utf8" })
    expect(tty.status).toBe(0)
    expect(tty.stdout).toMatch(/drain: \d+\/12 done, \d running, \d+\.\d jobs\/s/)
    // It knows the total from its first line: never 0/0, never less than 12.
    expect([...tty.stdout.matchAll(/drain: \d+\/(\d+) done/g)].map((m) => Number(m[1])).every((total) => total === 12)).toBe(true)
    expect(records(t.archive)).toHaveLength(12)

    const u = setup("no-progress")
    for (let i = 0; i < 4; i++) submit(u.spool, `job-${i}`, "sleep 0.2")
    const piped = await run(["-j", "2", "-o", u.archive, "--drain", u.spool], u.root)
    expect(piped.code).toBe(0)
    expect(piped.stderr.split("\n").filter((l) => l.includes("drain:"))).toEqual([expect.stringMatching(/^drain: 4 jobs in \d+\.\d s: 4 succeeded, 0 failed$/)])
    expect(piped.stderr).not.toContain("\x1b[K")
  })
})

describe("idle and limit commands, for real", () => {
  it("--idle-cmd runs with /bin/sh and its environment; its output and failure go to the log; the daemon goes on", async () => {
    const t = setup("idle-cmd")
    const marker = path.join(t.root, "idle.txt")
    const daemon = start(["--node-id", "n1", "--idle-after", "1s", "--idle-cmd", `echo "$PMJQ_QUEUED $PMJQ_RUNNING $PMJQ_NODE" > "${marker}"; echo said; echo complained >&2; exit 3`, "-o", t.archive, t.spool], t.root)
    try {
      await waitFor("idle command", () => fs.existsSync(marker) && daemon.output().stderr.includes("hook failed"))
      expect(fs.readFileSync(marker, "utf8")).toBe("0 0 n1\n")
      const log = daemon.output().stderr
      expect(log).toMatch(/INFO said hook=idle stream=stdout/)
      expect(log).toMatch(/INFO complained hook=idle stream=stderr/)
      expect(log).toMatch(/WARN hook failed exitCode=3 hook=idle/)
      submit(t.spool, "after", `echo after >> "${t.ledger}"`)
      await waitFor("a job after the hook", () => records(t.archive).length === 1)
      expect(lines(t.ledger)).toEqual(["after"])
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })
})

describe("pmjq's spawners", () => {
  const spawnersOf = (pmjq: number) =>
    fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p)).flatMap((pid) => {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
        const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
        return parent === pmjq && fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("spawner.js") ? [Number(pid)] : []
      } catch {
        return [] // The process ended while we looked.
      }
    })

  it("when one dies, its running job is stopped and recorded as interrupted; the other's job and the next job still run", async () => {
    const t = setup("spawner")
    const daemon = start(["-o", t.archive, t.spool], t.root)
    // Each job notes its own pid and its parent's (the spawner that forked it).
    const job = (name: string, body: string) =>
      submit(t.spool, name, `echo "$$ $PPID" > "${t.root}/${name}.pids.tmp"; mv "${t.root}/${name}.pids.tmp" "${t.root}/${name}.pids"\n${body}`)
    const pids = (name: string) => fs.readFileSync(path.join(t.root, `${name}.pids`), "utf8").trim().split(" ").map(Number)
    try {
      job("orphaned", "sleep 300")
      await waitFor("first job running", () => fs.existsSync(path.join(t.root, "orphaned.pids")))
      job("sibling", `while [ ! -e "${t.root}/go" ]; do sleep 0.05; done\necho sibling >> "${t.ledger}"`)
      await waitFor("second job running", () => fs.existsSync(path.join(t.root, "sibling.pids")))
      expect(spawnersOf(daemon.child.pid!)).toHaveLength(2)
      const [orphan, spawner] = pids("orphaned")
      // Jobs are dealt to the spawners in turn.
      expect(pids("sibling")[1]).not.toBe(spawner)
      process.kill(spawner!, "SIGKILL")
      await waitFor("record", () => records(t.archive).length === 1)
      expect(records(t.archive)[0]).toMatchObject({ name: "orphaned", outcome: "interrupted", reason: "pmjq's spawner process died" })
      await waitFor("job's group killed", () => !isAlive(orphan!))

      fs.writeFileSync(path.join(t.root, "go"), "")
      await waitFor("sibling done", () => records(t.archive).length === 2)
      expect(records(t.archive).find((r) => r.name === "sibling")).toMatchObject({ outcome: "succeeded" })
      submit(t.spool, "after", `echo after >> "${t.ledger}"`)
      submit(t.spool, "after2", `echo after2 >> "${t.ledger}"`)
      await waitFor("next jobs", () => records(t.archive).length === 4)
      expect(lines(t.ledger).sort()).toEqual(["after", "after2", "sibling"])
      // A replacement spawner took the dead one's place.
      expect(spawnersOf(daemon.child.pid!)).toHaveLength(2)
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("survive Ctrl-C reaching the whole process group, so the graceful stop still sees its jobs end", async () => {
    const t = setup("spawner-sigint")
    const daemon = start(["-o", t.archive, t.spool], t.root)
    submit(t.spool, "short", `sleep 1\necho done >> "${t.ledger}"`)
    await waitFor("job started", () => daemon.output().stderr.includes("INFO started job=short"))
    // Both started as the job was about to be claimed.
    const spawners = spawnersOf(daemon.child.pid!)
    expect(spawners).toHaveLength(2)
    const known = spawners.map(identify)
    // What a terminal does on Ctrl-C: SIGINT to pmjq and its spawners alike.
    for (const spawner of spawners) process.kill(spawner, "SIGINT")
    daemon.child.kill("SIGINT")
    expect((await daemon.exited).code).toBe(0)
    expect(lines(t.ledger)).toEqual(["done"])
    expect(records(t.archive)).toMatchObject([{ name: "short", outcome: "succeeded" }])
    await waitFor("spawners gone with pmjq", () => known.every((s) => !stillRuns(s)))
  })

  it.each([["stop"], ["leave"]])("a spawner let go while a job's background child still writes copies that output to its end (--on-stop %s)", async (onStop) => {
    const t = setup(`spawner-retire-${onStop}`)
    // No -o: output goes to pmjq's own, through the spawner.
    const daemon = start(["--spawner-idle", "1s", "--on-stop", onStop, "--log-level", "debug", t.spool], t.root)
    try {
      // The child writes 2 s after its spawner was let go: past the second a
      // spawner whose pmjq is gone gives its jobs' output (spawner.ts: FLUSH_FOR).
      submit(t.spool, "quick", `( while [ ! -e "${t.root}/go" ]; do sleep 0.1; done; sleep 2; echo "late line" ) &\necho "early line"`)
      await waitFor("the job ended", () => /INFO finished job=quick/.test(daemon.output().stderr))
      // Let go after 1 to 2 s of no job: both spawners (they start together).
      await waitFor("the spawners let go", () => daemon.output().stderr.split("DEBUG spawner let go").length - 1 === 2)
      fs.writeFileSync(path.join(t.root, "go"), "")
      await waitFor("the late line", () => daemon.output().stdout.includes("late line"))
      expect(daemon.output().stdout.split("\n").filter((l) => l.includes("line"))).toEqual(["early line", "late line"])
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("a spawner let go goes after a quiet spell, though a job's background child holds its output open", async () => {
    const t = setup("spawner-quiet")
    const daemon = start(["--spawner-idle", "1s", "--log-level", "debug", t.spool], t.root)
    const child = path.join(t.root, "child.pid")
    try {
      submit(t.spool, "holder", `sleep 600 &\necho $! > "${child}"`)
      await waitFor("the job ended", () => /INFO finished job=holder/.test(daemon.output().stderr) && fs.existsSync(child))
      await waitFor("the spawners let go", () => daemon.output().stderr.split("DEBUG spawner let go").length - 1 === 2)
      // 10 s without a byte from the child (spawner.ts: RETIRED_QUIET_FOR), then gone.
      await waitFor("the spawners gone", () => spawnersOf(daemon.child.pid!).length === 0)
      expect(isAlive(Number(fs.readFileSync(child, "utf8")))).toBe(true)
    } finally {
      const pid = Number(fs.existsSync(child) ? fs.readFileSync(child, "utf8") : NaN)
      if (Number.isInteger(pid)) signalIfSame(identify(pid), "SIGKILL")
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("one that cannot start is logged and tried again later, its job neither failed nor lost; once it can, the job runs", async () => {
    const t = setup("spawner-broken")
    const bin = publicBin()
    const spawner = path.join(path.dirname(bin), "spawner.js")
    const good = fs.readFileSync(spawner)
    fs.writeFileSync(spawner, "process.exit(3)\n")
    const daemon = watched(cp.spawn(process.execPath, [bin, "-o", t.archive, "-e", t.errors, t.spool], { cwd: t.root, stdio: ["ignore", "pipe", "pipe"] }))
    try {
      submit(t.spool, "patient", `echo ran >> "${t.ledger}"`)
      await waitFor("two failed starts in a row", () => /ERROR pmjq's spawner could not be started; jobs wait .*inARow=2/.test(daemon.output().stderr))
      expect(records(t.archive)).toEqual([])
      expect(records(t.errors)).toEqual([])
      fs.writeFileSync(spawner, good)
      await waitFor("the job archived", () => records(t.archive).length === 1)
      expect(records(t.archive)).toMatchObject([{ name: "patient", outcome: "succeeded" }])
      expect(lines(t.ledger)).toEqual(["ran"])
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("start with the first job, only once a heartbeat lists them (slow to write here); go after --spawner-idle with no job; start again with the next", async () => {
    const t = setup("spawner-idle")
    const heartbeat = path.join(t.spool, ".pmjq/nodes/s1")
    const helpers = () => (JSON.parse(fs.readFileSync(heartbeat, "utf8")) as { helpers: Array<number> }).helpers
    // Each heartbeat is renamed into place 2 s late, the calls made as on a
    // cluster volume: a job sent to its new spawner without waiting for the
    // beat that lists it finds itself unlisted; and --spawner-idle 1s passes
    // twice while it waits (a spawner let go then lost its job before).
    const daemon = watched(cp.spawn(process.execPath, [BIN, "--node-id", "s1", "--spawner-idle", "1s", "-o", t.archive, t.spool], {
      cwd: t.root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NODE_OPTIONS: `--require ${SLOW_HEARTBEAT}`, PMJQ_TEST_BEAT_DELAY_MS: "2000" }
    }))
    try {
      await waitFor("watching", () => /INFO watching/.test(daemon.output().stderr))
      await waitFor("the first heartbeat", () => fs.existsSync(heartbeat))
      // Idle: pmjq alone.
      expect(spawnersOf(daemon.child.pid!)).toEqual([])
      expect(helpers()).toEqual([])
      // Each job says whether the heartbeat listed its parent, its spawner, when it started.
      const listedJob = async (name: string, done: number) => {
        submit(t.spool, name, `grep -Eq '"helpers":\\[([0-9]+,)*'"$PPID"'[],]' "${heartbeat}" && echo "${name} listed" >> "${t.ledger}"`)
        await waitFor(`${name} archived`, () => records(t.archive).length === done)
        await waitFor("its spawner gone", () => spawnersOf(daemon.child.pid!).length === 0)
      }
      // Jobs are dealt to the two spawners in turn: the third goes to the first one's place again.
      await listedJob("first", 1)
      await listedJob("second", 2)
      await listedJob("third", 3)
      expect(records(t.archive).map((r) => r.outcome)).toEqual(["succeeded", "succeeded", "succeeded"])
      expect(lines(t.ledger)).toEqual(["first listed", "second listed", "third listed"])
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })
})
