/**
 * pmjq as root against hostile local users: each finding of the red team's
 * report (issue "Safe as root"), tried the way they tried it, with real users.
 * Findings 7 (a job's world) and 8-9 (limits, values) are in world.test.ts
 * and limits.test.ts.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, lines, publicBin, records, run, runsHere, start, waitFor, workspace } from "./harness.js"
import { addUsers, asUser, gidOf, placeAs, removeUsers, rootMissing, sharedSpool, submitAs, uidOf } from "./users.js"

const ALICE = "pmjq-sa"
const BOB = "pmjq-sb"

/** Every path below DIR, with what lstat says of it. */
const walk = (dir: string): Array<{ readonly file: string; readonly stat: fs.Stats }> =>
  fs.readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name)
    const stat = fs.lstatSync(file)
    return [{ file, stat }, ...(stat.isDirectory() ? walk(file) : [])]
  })

const mode = (file: string) => fs.lstatSync(file).mode & 0o7777

describe.runIf(runsHere("hostile local users against a root pmjq", rootMissing))("(as root: creates users, mounts a tmpfs) hostile local users against a root pmjq", () => {
  beforeAll(() => {
    addUsers([ALICE, BOB])
  })
  afterAll(() => {
    removeUsers([ALICE, BOB])
  })

  it("1-2: across filesystems, no copy is set-uid or more than its owner's, a symlink stays a symlink, and a FIFO never blocks", async () => {
    const t = sharedSpool("cross-fs")
    const other = path.join(t.root, "other-fs")
    fs.mkdirSync(other)
    cp.execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", other])
    try {
      const archive = path.join(other, "archive")
      const errors = path.join(other, "errors")
      const secret = path.join(t.root, "root-only")
      fs.writeFileSync(secret, "TOP SECRET\n", { mode: 0o600 })
      const [uid, gid] = [uidOf(ALICE), gidOf(ALICE)]
      // Refused (set-uid), so placed in the error dir: once a root-owned set-uid copy.
      submitAs(ALICE, t.spool, "suid", "#!/bin/sh\nid\n", 0o4755)
      // Runs as alice and makes itself set-uid: the archive once held root's copy of it.
      submitAs(ALICE, t.spool, "self-suid", '#!/bin/sh\nchmod u+s "$0"\necho done\n')
      fs.symlinkSync(secret, path.join(t.spool, "link"))
      fs.lchownSync(path.join(t.spool, "link"), uid, gid)
      cp.execFileSync("mkfifo", ["-m", "755", path.join(t.spool, "fifo")])
      fs.chownSync(path.join(t.spool, "fifo"), uid, gid)
      submitAs(ALICE, t.spool, "after", "#!/bin/sh\necho ok\n")

      const result = await run(["--run-as-owner", "-o", archive, "-e", errors, "--drain", t.spool], t.root)
      expect(result.code).toBe(1)

      const placed = [...walk(archive), ...walk(errors)]
      for (const { file, stat } of placed) {
        expect({ file, setId: stat.mode & 0o6000 }).toEqual({ file, setId: 0 })
        if (stat.isFile()) expect(fs.readFileSync(file, "utf8")).not.toContain("TOP SECRET")
      }
      const rejected = new Map(records(errors).map((r) => [r.name as string, r]))
      expect([...rejected.keys()].sort()).toEqual(["fifo", "link", "suid"])
      const suid = path.join(errors, rejected.get("suid")!.entry)
      expect(fs.lstatSync(suid).uid).toBe(uid)
      expect(mode(suid)).toBe(0o755)
      expect(fs.readlinkSync(path.join(errors, rejected.get("link")!.entry))).toBe(secret)
      expect(fs.lstatSync(path.join(errors, rejected.get("link")!.entry)).uid).toBe(uid)
      // A FIFO's content is never read: its entry is its record alone.
      expect(rejected.get("fifo")).toMatchObject({ outcome: "rejected", reason: "refused: not a regular file" })
      expect(fs.existsSync(path.join(errors, rejected.get("fifo")!.entry))).toBe(false)
      const done = new Map(records(archive).map((r) => [r.name as string, r]))
      const selfSuid = path.join(archive, done.get("self-suid")!.entry)
      expect(fs.lstatSync(selfSuid).uid).toBe(uid)
      expect(mode(selfSuid) & 0o6000).toBe(0)
      expect(done.get("after")).toMatchObject({ outcome: "succeeded" })
    } finally {
      cp.spawnSync("umount", ["-l", other])
    }
  })

  it("3: a .pmjq a user made is refused (exit 77), never written through", async () => {
    const planted = sharedSpool("planted")
    const victim = path.join(planted.root, "victim")
    fs.writeFileSync(victim, "root's file\n", { mode: 0o644 })
    expect(asUser(ALICE, ["mkdir", "-m", "777", path.join(planted.spool, ".pmjq")]).status).toBe(0)
    expect(asUser(ALICE, ["mkdir", "-p", path.join(planted.spool, ".pmjq", "nodes")]).status).toBe(0)
    expect(asUser(ALICE, ["ln", "-s", victim, path.join(planted.spool, ".pmjq", "nodes", ".n1.tmp")]).status).toBe(0)
    submitAs(ALICE, planted.spool, "job", "#!/bin/sh\necho hi\n")
    const refused = await run(["--run-as-owner", "--node-id", "n1", "-o", planted.archive, "--drain", planted.spool], planted.root)
    expect(refused.code).toBe(77)
    expect(refused.stderr.trim().split("\n")).toHaveLength(1)
    expect(refused.stderr).toContain(`${path.join(planted.spool, ".pmjq")} is owned by uid ${uidOf(ALICE)}`)
    expect(fs.readFileSync(victim, "utf8")).toBe("root's file\n")
    expect(fs.existsSync(path.join(planted.spool, "job"))).toBe(true)

    // pmjq's own .pmjq, but a running folder in it that a user made (the state
    // of a spool that was once open): the same refusal, naming that folder.
    const inner = sharedSpool("planted-inner")
    fs.mkdirSync(path.join(inner.spool, ".pmjq", "running", "n1"), { recursive: true, mode: 0o755 })
    fs.chownSync(path.join(inner.spool, ".pmjq", "running", "n1"), uidOf(ALICE), gidOf(ALICE))
    fs.symlinkSync(victim, path.join(inner.spool, ".pmjq", "running", "n1", ".job.out"))
    submitAs(ALICE, inner.spool, "job", "#!/bin/sh\necho appended\n")
    const refusedInner = await run(["--run-as-owner", "--node-id", "n1", "-o", inner.archive, "--drain", inner.spool], inner.root)
    expect(refusedInner.code).toBe(77)
    expect(refusedInner.stderr).toContain(`${path.join(inner.spool, ".pmjq", "running", "n1")} is owned by uid ${uidOf(ALICE)}`)
    expect(fs.readFileSync(victim, "utf8")).toBe("root's file\n")
  })

  it("3: an archive dir reached through a user's symlink, or below a user's folder, and a spool a user owns are refused before anything is made (exit 77)", async () => {
    const t = sharedSpool("strict")
    const sticky = path.join(t.root, "sticky")
    fs.mkdirSync(sticky, { mode: 0o1777 })
    fs.chmodSync(sticky, 0o1777)
    const target = path.join(t.root, "profile.d")
    fs.mkdirSync(target, { mode: 0o755 })
    // In a sticky folder like /tmp, a user plants the archive's name as a symlink to a folder of root's.
    expect(asUser(ALICE, ["ln", "-s", target, path.join(sticky, "archive")]).status).toBe(0)
    const viaLink = await run(["--run-as-owner", "-o", path.join(sticky, "archive"), "--drain", t.spool], t.root)
    expect(viaLink.code).toBe(77)
    expect(viaLink.stderr).toContain(`${path.join(sticky, "archive")} (on the way to ${path.join(sticky, "archive")}) is a symlink owned by uid ${uidOf(ALICE)}`)
    // Below a folder a user owns: refused before pmjq makes anything there.
    const home = path.join(t.root, "alices")
    fs.mkdirSync(home, { mode: 0o755 })
    fs.chownSync(home, uidOf(ALICE), gidOf(ALICE))
    const below = await run(["--run-as-owner", "-e", path.join(home, "errors"), "--drain", t.spool], t.root)
    expect(below.code).toBe(77)
    expect(below.stderr).toContain(`${home} (on the way to ${path.join(home, "errors")}) is owned by uid ${uidOf(ALICE)}`)
    expect(fs.readdirSync(home)).toEqual([])
    // A spool its user owns: they could rename .pmjq away and plant theirs.
    fs.chownSync(t.spool, uidOf(ALICE), gidOf(ALICE))
    const owned = await run(["--run-as-owner", "-o", t.archive, "--drain", t.spool], t.root)
    expect(owned.code).toBe(77)
    expect(owned.stderr).toContain(`${t.spool} is owned by uid ${uidOf(ALICE)}, neither root nor pmjq`)
    expect(fs.readdirSync(target)).toEqual([])
    expect(fs.existsSync(path.join(t.spool, ".pmjq"))).toBe(false)
  })

  it("3: a .pmjq folder opened to others while pmjq runs stops claiming, with an error, until it is pmjq's own again", async () => {
    const t = workspace("distrust")
    const daemon = start(["--node-id", "n1", "--poll", "200ms", "-o", t.archive, t.spool], t.root)
    try {
      const running = path.join(t.spool, ".pmjq", "running")
      await waitFor("watching", () => daemon.output().stderr.includes("watching"))
      fs.chmodSync(running, 0o777)
      await waitFor("distrust", () => /ERROR pmjq's state in the spool cannot be trusted; claiming stops .*is writable by group or others/.test(daemon.output().stderr))
      fs.writeFileSync(path.join(t.spool, "held"), `#!/bin/sh
echo held >> "${t.ledger}"
`, { mode: 0o755 })
      fs.chmodSync(running, 0o755)
      await waitFor("ran once trusted again", () => lines(t.ledger).length === 1)
      const log = daemon.output().stderr
      expect(log.indexOf("claiming resumes")).toBeGreaterThan(log.indexOf("cannot be trusted"))
      expect(log.indexOf("claimed job=held")).toBeGreaterThan(log.indexOf("claiming resumes"))
    } finally {
      daemon.child.kill("SIGTERM")
      await daemon.exited
    }
  })

  it("3/5: under umask 000, pmjq's folders are 0755 and a job's output 0600 and its owner's, its record 0640 and root's", async () => {
    const t = sharedSpool("umask")
    submitAs(ALICE, t.spool, "job", "#!/bin/sh\necho out; echo err >&2\n")
    const result = cp.spawnSync("sh", ["-c", 'umask 000; exec "$@"', "sh", process.execPath, BIN, "--run-as-owner", "-o", t.archive, "--drain", t.spool], {
      cwd: t.root,
      encoding: "utf8",
      timeout: 60_000
    })
    expect(result.status).toBe(0)
    for (const dir of [".pmjq", ".pmjq/running", ".pmjq/nodes"]) expect([dir, mode(path.join(t.spool, dir))]).toEqual([dir, 0o755])
    expect(mode(t.archive)).toBe(0o755)
    const [rec] = records(t.archive)
    const entry = path.join(t.archive, rec!.entry)
    for (const suffix of [".out", ".err"]) {
      expect([suffix, mode(entry + suffix), fs.statSync(entry + suffix).uid]).toEqual([suffix, 0o600, uidOf(ALICE)])
    }
    expect([mode(entry + ".json"), fs.statSync(entry + ".json").uid, fs.statSync(entry + ".json").gid]).toEqual([0o640, 0, gidOf(ALICE)])
  })

  it("4: forged records and heartbeats are quarantined, never believed, never fatal", async () => {
    const t = workspace("forged")
    const dead = Number(cp.spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" }).stdout.trim())
    const record = (name: string, over: Record<string, unknown> = {}) => JSON.stringify({
      name, node: "ghost", host: os.hostname(), pid: 4242, user: "root", attempt: 1,
      claimedAt: "2026-01-02T03:04:05.000Z", startedAt: "2026-01-02T03:04:05.100Z", endedAt: "2026-01-02T03:04:06.000Z",
      durationMs: 900, outcome: "succeeded", exitCode: 0, signal: null, reason: null, ...over
    })
    const ghost = (node: string, heartbeat: string, job: string, recordText: string) => {
      const folder = path.join(t.spool, ".pmjq", "running", node)
      fs.mkdirSync(folder, { recursive: true, mode: 0o755 })
      fs.mkdirSync(path.join(t.spool, ".pmjq", "nodes"), { recursive: true, mode: 0o755 })
      fs.writeFileSync(path.join(t.spool, ".pmjq", "nodes", node), heartbeat)
      fs.writeFileSync(path.join(folder, job), `#!/bin/sh\necho "${job} ran" >> "${t.ledger}"\n`, { mode: 0o755 })
      fs.writeFileSync(path.join(folder, `.${job}.json`), recordText)
      return folder
    }
    const beat = (node: string) => JSON.stringify({ node, host: os.hostname(), pid: dead, helpers: [], leaseMs: 60000, beatAt: new Date().toISOString() })
    // A name that climbs out of the archive once joined to it.
    ghost("g1", beat("g1"), "evil", record("x/../../escaped"))
    // A date that made every start of pmjq crash.
    ghost("g2", beat("g2"), "baddate", record("baddate", { endedAt: "not a date" }))
    // A record pmjq did not write: another user's file.
    const g3 = ghost("g3", beat("g3"), "alien", record("alien"))
    fs.chownSync(path.join(g3, ".alien.json"), uidOf(ALICE), gidOf(ALICE))
    // A heartbeat torn or forged: judged by its folder instead.
    ghost("g4", "{ not json", "torn", record("torn", { node: "g4" }))

    // A folder named like a dead node's taken-over one, but a symlink to root's files.
    const sysdir = path.join(t.root, "sysdir")
    fs.mkdirSync(sysdir)
    fs.writeFileSync(path.join(sysdir, "important"), "root's\n", { mode: 0o600 })
    fs.mkdirSync(path.join(t.spool, ".pmjq", "running", "n1"), { mode: 0o755 })
    fs.symlinkSync(sysdir, path.join(t.spool, ".pmjq", "running", "n1", ".from-x"))

    const result = await run(["--node-id", "n1", "--orphans", "fail", "-o", t.archive, "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    expect(fs.readdirSync(sysdir)).toEqual(["important"])
    // Nothing escaped; the jobs whose record could not be believed ran again (at least once, as documented).
    expect(walk(t.root).filter(({ file }) => path.basename(file) === "escaped")).toEqual([])
    // (With --orphans fail, a job whose record went to quarantine is failed as interrupted, not run again.)
    expect(lines(t.ledger)).toEqual([])
    expect(records(t.archive).map((r) => [r.name, r.outcome]).sort()).toEqual([["alien", "interrupted"], ["baddate", "interrupted"], ["evil", "interrupted"]])
    const quarantined = fs.readdirSync(path.join(t.spool, ".pmjq", "quarantine"))
    for (const name of [".evil.json", ".baddate.json", ".alien.json"]) {
      expect(quarantined.filter((q) => q.endsWith(`-${name}`))).toHaveLength(1)
    }
    // A heartbeat is ignored where it is, said once: its node may be a live pmjq of another version.
    expect(fs.readFileSync(path.join(t.spool, ".pmjq", "nodes", "g4"), "utf8")).toBe("{ not json")
    expect(result.stderr.match(/untrusted state ignored file=\S+\/nodes\/g4 reason="not JSON"/g)).toHaveLength(1)
    expect(mode(path.join(t.spool, ".pmjq", "quarantine"))).toBe(0o700)
    expect(result.stderr).toMatch(/untrusted state quarantined file=\S+\.evil\.json reason="name: a job name must be one path component/)
    expect(result.stderr).toMatch(/untrusted state quarantined file=\S+\.alien\.json reason=".*owned by uid/)
    expect(result.stderr).not.toMatch(/internal error|RangeError/)
  })

  it("5: without -o or -e, a job's error output reaches pmjq's log marked with its name and escaped: it cannot forge pmjq's lines", async () => {
    const t = sharedSpool("forge-log")
    const forged = `2026-11-29T00:00:00.000Z INFO finished job=backup outcome=succeeded`
    submitAs(ALICE, t.spool, "liar", `#!/bin/sh\nprintf '\\n%s\\n\\033]0;owned\\007tail' '${forged}' >&2\necho plain\n`)
    const result = await run(["--run-as-owner", "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    expect(result.stdout).toBe("plain\n")
    expect(result.stderr).not.toContain("\u001b")
    expect(result.stderr).not.toMatch(new RegExp(`^${forged}`, "m"))
    // Each line marked (pmjq's own lines may come between them: two processes write there).
    expect(result.stderr).toContain(`[liar] ${forged}\n`)
    expect(result.stderr).toContain(`[liar] \\x1b]0;owned\\x07tail\n`)
  })

  it("5: while a job runs and after, another user reads none of its output or record; pmjq submit writes jobs 0700", async () => {
    const t = sharedSpool("private")
    const release = path.join(t.root, "release")
    submitAs(ALICE, t.spool, "secret", `#!/bin/sh\necho "alice's secret"\nwhile [ ! -e "${release}" ]; do sleep 0.05; done\n`)
    const daemon = start(["--run-as-owner", "--node-id", "n1", "-o", t.archive, t.spool], t.root)
    try {
      const out = path.join(t.spool, ".pmjq", "running", "n1", ".secret.out")
      await waitFor("output", () => fs.existsSync(out) && fs.readFileSync(out, "utf8").includes("secret"))
      expect(asUser(BOB, ["cat", out]).status).not.toBe(0)
      expect(asUser(ALICE, ["cat", out]).stdout).toBe("alice's secret\n")
      fs.writeFileSync(release, "")
      await waitFor("archived", () => records(t.archive).length === 1)
      const entry = path.join(t.archive, records(t.archive)[0]!.entry)
      for (const file of [entry + ".out", entry + ".err", entry + ".json"]) {
        expect([file, asUser(BOB, ["cat", file]).status]).toEqual([file, 1])
        expect([file, asUser(ALICE, ["cat", file]).status]).toEqual([file, 0])
      }
    } finally {
      daemon.child.kill("SIGTERM")
      await daemon.exited
    }
    const bin = publicBin()
    const submitted = asUser(ALICE, [process.execPath, bin, "submit", t.spool, "--", "true"], t.root)
    expect(submitted.status).toBe(0)
    const name = submitted.stdout.trim()
    expect(mode(path.join(t.spool, name))).toBe(0o700)
    expect(fs.statSync(path.join(t.spool, name)).uid).toBe(uidOf(ALICE))
  })

  it("6: --wait reports its own job, never another user's of the same name; status shows only records pmjq wrote", async () => {
    const t = sharedSpool("spoof")
    const release = path.join(t.root, "release")
    const bin = publicBin()
    const daemon = start(["--run-as-owner", "--node-id", "n1", "-o", t.archive, "-e", t.errors, t.spool], t.root)
    try {
      const waiting = cp.spawn("setpriv", [
        `--reuid=${uidOf(ALICE)}`, `--regid=${gidOf(ALICE)}`, "--init-groups", "--",
        process.execPath, bin, "submit", "--wait", "--name", "same", t.spool, "--",
        "sh", "-c", `while [ ! -e "${release}" ]; do sleep 0.05; done; echo alice`
      ], { cwd: t.root, stdio: ["ignore", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      waiting.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
      waiting.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
      const exited = new Promise<number | null>((resolve) => waiting.once("close", (code) => resolve(code)))
      // With --wait the name is on stderr; stdout is the job's output alone.
      await waitFor("submitted", () => stderr.includes("\n"))
      const name = stderr.split("\n")[0]!
      const claimed = path.join(t.spool, ".pmjq", "running", "n1", name)
      await waitFor("claimed", () => fs.existsSync(claimed))
      // Bob takes the freed name: his job ends first, with output and a status of its own.
      submitAs(BOB, t.spool, name, "#!/bin/sh\necho bob\nexit 7\n")
      await waitFor("bob's job recorded", () => records(t.errors).some((r) => r.name === name && r.user === BOB))
      fs.writeFileSync(release, "")
      expect(await exited).toBe(0)
      expect(stdout).toBe("alice\n")

      // A job named x.json is archived as STAMP_x.json, a file its owner can
      // rewrite: written as a record, it must not be shown as one.
      const forged = JSON.stringify({
        name: "x", node: "n1", host: os.hostname(), pid: 1, user: ALICE, uid: uidOf(ALICE), inode: 1, attempt: 1,
        claimedAt: "2026-01-02T03:04:05.000Z", startedAt: "2026-01-02T03:04:05.000Z", endedAt: "2099-01-02T03:04:06.000Z",
        durationMs: 1, outcome: "succeeded", exitCode: 0, signal: null, reason: null
      })
      placeAs(ALICE, t.spool, "x.json", forged + "\n")
      await waitFor("x.json archived", () => records(t.errors).some((r) => r.name === "x.json"))
      const status = await run(["status", "--json", t.spool], t.root)
      expect(status.code).toBe(0)
      const view = JSON.parse(status.stdout) as { finished: Array<{ name: string }> }
      expect(view.finished.map((r) => r.name)).toContain("x.json")
      expect(view.finished.map((r) => r.name)).not.toContain("x")
    } finally {
      daemon.child.kill("SIGTERM")
      await daemon.exited
    }
  })
})
