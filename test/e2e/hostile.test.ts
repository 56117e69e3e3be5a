/**
 * Hostile and broken input: the daemon never stops, and each case has a
 * defined outcome (the README lists them).
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { entries, isAlive, lines, records, run, runsHere, start, submit, waitFor, workspace } from "./harness.js"

const setup = workspace
const canMount = runsHere("an archive dir on a full filesystem", process.getuid?.() === 0 ? null : "needs root (it mounts a small tmpfs to fill)")
const byName = (dir: string) => new Map(records(dir).map((r) => [r.name as string, r]))

describe("hostile input", () => {
  it("odd files: folders are left alone, symlinks and other non-regular files refused; odd scripts, names and outputs each get their outcome", async () => {
    const t = setup("odd")
    const outside = path.join(t.root, "outside.sh")
    fs.writeFileSync(outside, `#!/bin/sh\necho followed >> "${t.ledger}"\n`, { mode: 0o755 })
    fs.mkdirSync(path.join(t.spool, "a-directory"), { mode: 0o755 })
    cp.execFileSync("mkfifo", ["-m", "755", path.join(t.spool, "a-fifo")])
    const server = net.createServer().listen(path.join(t.spool, "a-socket"))
    await new Promise((r) => server.once("listening", r))
    fs.symlinkSync(outside, path.join(t.spool, "link-to-file"))
    fs.symlinkSync(t.root, path.join(t.spool, "link-to-dir"))
    fs.symlinkSync(path.join(t.root, "nowhere"), path.join(t.spool, "dangling"))
    submit(t.spool, "twin-a", `echo "$PMJQ_JOB" >> "${t.ledger}"`)
    fs.linkSync(path.join(t.spool, "twin-a"), path.join(t.spool, "twin-b"))
    fs.writeFileSync(path.join(t.spool, "empty"), "", { mode: 0o755 })
    fs.writeFileSync(path.join(t.spool, "junk"), Buffer.from([0x7f, 0x00, 0xff, 0x12, 0x0a, 0x28, 0x29, 0x0a]), { mode: 0o755 })
    fs.writeFileSync(path.join(t.spool, "no-shebang"), "echo run by sh\n", { mode: 0o755 })
    submit(t.spool, "missing-interpreter", "#!/no/such/interpreter\necho never\n")
    submit(t.spool, "self-deleting", `rm -- "$0"\necho gone`)
    submit(t.spool, "new\nline", `echo newline >> "${t.ledger}"`)
    const long = "L".repeat(255)
    submit(t.spool, long, `echo long >> "${t.ledger}"`)
    submit(t.spool, "big", "head -c 104857600 /dev/zero")
    const bgPid = path.join(t.root, "bg.pid")
    submit(t.spool, "background", `sleep 30 > /dev/null 2>&1 &\necho $! > "${bgPid}"\nexit 0`)

    const result = await run(["-o", t.archive, "-e", t.errors, "--drain", t.spool], t.root)
    const left = entries(t.spool).filter((n) => !n.startsWith("."))
    server.close() // (which removes its socket file)
    expect(result.code).toBe(1)

    // Folders are left alone. Symlinks (never followed), FIFOs and sockets with
    // an execute bit are refused: moved to the error dir, never run.
    expect(left).toEqual(["a-directory"])
    expect(lines(t.ledger)).not.toContain("followed")
    const refused = new Map(records(t.errors).filter((r) => r.outcome === "rejected").map((r) => [r.name as string, r.reason as string]))
    for (const link of ["link-to-file", "link-to-dir", "dangling"]) expect(refused.get(link)).toBe("refused: a symlink (never followed)")
    for (const odd of ["a-fifo", "a-socket"]) expect(refused.get(odd)).toBe("refused: not a regular file")
    expect(fs.readlinkSync(path.join(t.errors, records(t.errors).find((r) => r.name === "link-to-file")!.entry))).toBe(outside)
    // A file with several hard links is refused (another name could change it), never run, kept.
    expect(lines(t.ledger).filter((l) => l.startsWith("twin"))).toEqual([])

    const done = byName(t.archive)
    const failed = byName(t.errors)
    // Without #!, execvp(3) hands the file to /bin/sh, as shells do: an empty
    // file succeeds, binary junk fails in sh.
    expect(done.get("empty")).toMatchObject({ outcome: "succeeded" })
    expect(done.get("no-shebang")).toMatchObject({ outcome: "succeeded" })
    expect(fs.readFileSync(path.join(t.archive, done.get("no-shebang")!.entry + ".out"), "utf8")).toBe("run by sh\n")
    expect(failed.get("junk")).toMatchObject({ outcome: "failed", exitCode: 2 })
    expect(failed.get("missing-interpreter")).toMatchObject({ outcome: "failed", reason: "cannot execute: ENOENT: its #! interpreter was not found" })
    // A job that deletes itself is archived without its script.
    const gone = done.get("self-deleting")!
    expect(gone).toMatchObject({ outcome: "succeeded" })
    expect(fs.existsSync(path.join(t.archive, gone.entry))).toBe(false)
    expect(fs.readFileSync(path.join(t.archive, gone.entry + ".out"), "utf8")).toBe("gone\n")
    // Odd names: a newline, and 255 bytes (the entry name is cut, the record keeps it whole).
    expect(done.get("new\nline")).toMatchObject({ outcome: "succeeded" })
    expect(result.stderr).toContain('job="new\\nline"')
    const longRecord = done.get(long)!
    expect(longRecord).toMatchObject({ outcome: "succeeded" })
    expect(Buffer.byteLength(longRecord.entry + ".json")).toBeLessThanOrEqual(255)
    // 100 MB of output goes to its file, whole.
    expect(fs.statSync(path.join(t.archive, done.get("big")!.entry + ".out")).size).toBe(104857600)
    // A job is over when its own process ends; a background child it left goes on.
    expect(done.get("background")).toMatchObject({ outcome: "succeeded" })
    const child = Number(fs.readFileSync(bgPid, "utf8"))
    expect(() => process.kill(child, 0)).not.toThrow()
    process.kill(child, "SIGKILL")
    for (const twin of ["twin-a", "twin-b"]) {
      expect(failed.get(twin)).toMatchObject({ outcome: "rejected", reason: "refused: it has 2 hard links", pid: null })
      expect(fs.readFileSync(path.join(t.errors, failed.get(twin)!.entry), "utf8")).toContain("PMJQ_JOB")
    }
    expect(lines(t.ledger).sort()).toEqual(["long", "newline"])
  })

  it("a name that is not UTF-8 runs under its escaped name (bad\\xffname as bad%FFname); one whose escaped name is taken is left and said once, not at every look", async () => {
    const t = workspace("bytes")
    const raw = (name: string) => Buffer.concat([Buffer.from(`${t.spool}/`), Buffer.from(name, "latin1")])
    fs.writeFileSync(raw("bad\xffname"), `#!/bin/sh\necho ran >> ${t.ledger}\n`, { mode: 0o755 })
    // Its escaped name is a file of the user's already: never replaced.
    fs.writeFileSync(path.join(t.spool, "taken%FE"), "data\n", { mode: 0o644 })
    fs.writeFileSync(raw("taken\xfe"), "#!/bin/sh\necho no >> /dev/null\n", { mode: 0o755 })
    const drained = await run(["--drain", "-o", t.archive, t.spool], t.root)
    expect(drained.code).toBe(0)
    expect(lines(t.ledger)).toEqual(["ran"])
    expect(records(t.archive)).toMatchObject([{ name: "bad%FFname", outcome: "succeeded" }])
    expect(drained.stderr).toMatch(/WARN a name that is not UTF-8, renamed to one that is job=bad%FFname/)
    const left = drained.stderr.split("\n").filter((l) => /names that are not UTF-8 could not be renamed; left/.test(l))
    expect(left).toEqual([expect.stringMatching(/(?=.*count=1)(?=.*first=taken%FE)(?=.*reason=EEXIST)/)])
    expect(fs.readFileSync(path.join(t.spool, "taken%FE"), "utf8")).toBe("data\n")
    expect(fs.readdirSync(t.spool, { encoding: "buffer" }).map((b) => b.toString("latin1")).sort()).toEqual([".pmjq", "taken%FE", "taken\xfe"])
  })

  it("--timeout: a job that runs too long is stopped with its whole process group, even a child that ignores SIGTERM", async () => {
    const t = setup("timeout")
    const childPid = path.join(t.root, "child.pid")
    submit(t.spool, "endless", `sh -c 'trap "" TERM; while :; do sleep 1; done' &\necho $! > "${childPid}"\nwait`)
    const result = await run(["-o", t.archive, "-e", t.errors, "--timeout", "1s", "--grace", "1s", "--drain", t.spool], t.root)
    expect(result.code).toBe(1)
    expect(records(t.errors)).toMatchObject([{ name: "endless", outcome: "timed-out" }])
    expect(records(t.errors)[0]!.reason).toMatch(/^ran longer than --timeout 1s; its process group was stopped/)
    expect(result.stderr).toContain("WARN timed out; stopping its process group job=endless timeout=1s")
    const child = Number(fs.readFileSync(childPid, "utf8"))
    await waitFor("the child that ignored SIGTERM is gone", () => !isAlive(child))
  })

  it("a job that removes the archive dir: the dir is made again, and its entry and later ones land in it", async () => {
    const t = setup("archive-remover")
    submit(t.spool, "a-remover", `rm -rf "${t.archive}"\necho removed`)
    submit(t.spool, "b-after", "echo after")
    const result = await run(["-j", "1", "-o", t.archive, "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    expect(records(t.archive).map((r) => [r.name, r.outcome])).toEqual([["a-remover", "succeeded"], ["b-after", "succeeded"]])
  })

  it("a spool removed and made again while pmjq runs: pmjq goes on with the new one", async () => {
    const t = setup("spool-recreated")
    const daemon = start(["-o", t.archive, "--poll", "500ms", t.spool], t.root)
    try {
      submit(t.spool, "before", `echo before >> "${t.ledger}"`)
      await waitFor("first job", () => records(t.archive).length === 1)
      // The job's ended note is written after its record: once it is there, only a heartbeat may still be written
      // meanwhile, and ENOTEMPTY is retried, as rm -rf would.
      await waitFor("first job noted", () => fs.readdirSync(path.join(t.spool, ".pmjq", "running")).every((node) =>
        fs.readdirSync(path.join(t.spool, ".pmjq", "running", node)).length === 0))
      fs.rmSync(t.spool, { recursive: true, maxRetries: 20, retryDelay: 50 })
      await waitFor("pmjq noticed", () => /WARN (watch failed|spool not readable)/.test(daemon.output().stderr))
      fs.mkdirSync(t.spool)
      submit(t.spool, "after", `echo after >> "${t.ledger}"`)
      await waitFor("job in the new spool", () => records(t.archive).length === 2)
      expect(lines(t.ledger)).toEqual(["before", "after"])
      expect(daemon.child.exitCode).toBeNull()
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it.runIf(canMount)("(as root: mounts a tmpfs) an archive dir on a full filesystem: the job is kept, and archived once there is room", async () => {
    const t = setup("full")
    fs.mkdirSync(t.archive)
    cp.execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", t.archive])
    try {
      const daemon = start(["-o", t.archive, t.spool], t.root)
      try {
        submit(t.spool, "bulky", `echo ran >> "${t.ledger}"\nyes pmjq | head -c 2097152`)
        await waitFor("archival failed", () => /not archived yet; kept, will retry .*ENOSPC/.test(daemon.output().stderr))
        expect(records(t.archive)).toEqual([])
        cp.execFileSync("mount", ["-o", "remount,size=8m", t.archive])
        await waitFor("archived once there is room", () => records(t.archive).length === 1)
        expect(records(t.archive)).toMatchObject([{ name: "bulky", outcome: "succeeded" }])
        expect(fs.statSync(path.join(t.archive, records(t.archive)[0]!.entry + ".out")).size).toBe(2097152)
        expect(lines(t.ledger)).toEqual(["ran"])
      } finally {
        daemon.child.kill("SIGTERM")
        await daemon.exited
      }
    } finally {
      cp.execFileSync("umount", [t.archive])
    }
  })
})
