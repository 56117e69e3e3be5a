/**
 * pmjq as root on a spool many users write to: jobs run as their owner, and
 * what is unsafe is refused. Needs root (creates users with useradd).
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { publicBin, records, run, runsHere } from "./harness.js"
import { addUsers, gidOf, removeUsers, rootMissing, sharedSpool, submitAs, uidOf } from "./users.js"

const ALICE = "pmjq-alice"
const BOB = "pmjq-bob"
const TEAM = "pmjq-team"

describe.runIf(runsHere("jobs of many users", rootMissing))("(as root: creates users) jobs of many users, pmjq as root", () => {
  beforeAll(() => {
    cp.spawnSync("groupadd", [TEAM])
    addUsers([ALICE, BOB])
    cp.execFileSync("usermod", ["-a", "-G", TEAM, ALICE])
  })
  afterAll(() => {
    removeUsers([ALICE, BOB])
    cp.spawnSync("groupdel", [TEAM])
  })

  it("--run-as-owner: alice's job runs as alice, with her groups, HOME and USER; its output is hers; the record says so", async () => {
    const t = sharedSpool("as-owner")
    submitAs(ALICE, t.spool, "whoami", 'id -un; id -Gn; echo "$HOME $USER $LOGNAME $SHELL"')
    const result = await run(["--run-as-owner", "-o", t.archive, "--drain", t.spool], t.root)
    expect(result.code).toBe(0)
    const [rec] = records(t.archive)
    expect(rec).toMatchObject({ name: "whoami", outcome: "succeeded", user: ALICE })
    const out = fs.readFileSync(path.join(t.archive, rec!.entry + ".out"), "utf8").split("\n")
    expect(out[0]).toBe(ALICE)
    expect(out[1]!.split(" ").sort()).toEqual([ALICE, TEAM].sort())
    expect(out[2]).toBe(`/home/${ALICE} ${ALICE} ${ALICE} /bin/sh`)
    expect(fs.statSync(path.join(t.archive, rec!.entry + ".out")).uid).toBe(uidOf(ALICE))
    expect(fs.statSync(path.join(t.archive, rec!.entry)).uid).toBe(uidOf(ALICE))
  })

  it("without --run-as-owner, root refuses bob's job: rejected, kept under .pmjq/rejected, never run", async () => {
    const t = sharedSpool("root-refuses")
    const ran = path.join(t.root, "ran")
    submitAs(BOB, t.spool, "bobs", `touch "${ran}"`)
    const result = await run(["-o", t.archive, "--drain", t.spool], t.root)
    expect(result.code).toBe(1)
    expect(fs.existsSync(ran)).toBe(false)
    const rejected = path.join(t.spool, ".pmjq", "rejected")
    expect(records(rejected)).toMatchObject([{
      name: "bobs", outcome: "rejected", pid: null, reason: `refused: owned by uid ${uidOf(BOB)}, and pmjq runs as root without --run-as-owner`
    }])
    expect(fs.readFileSync(path.join(rejected, records(rejected)[0]!.entry), "utf8")).toContain("touch")
    expect(records(t.archive)).toEqual([])
    expect(result.stderr).toMatch(/WARN rejected job=bobs reason=/)
  })

  it.each([
    ["set-uid", 0o4755, "refused: set-uid or set-gid"],
    ["set-gid", 0o2755, "refused: set-uid or set-gid"],
    ["group-writable", 0o775, "refused: writable by group or others, and pmjq runs as root"],
    ["world-writable", 0o757, "refused: writable by group or others, and pmjq runs as root"]
  ] as const)("a %s file is rejected to the error dir, never run", async (label, mode, reason) => {
    const t = sharedSpool(`refuse-${label}`)
    const ran = path.join(t.root, "ran")
    submitAs(ALICE, t.spool, label, `touch "${ran}"`, mode)
    const result = await run(["--run-as-owner", "-o", t.archive, "-e", t.errors, "--drain", t.spool], t.root)
    expect(result.code).toBe(1)
    expect(fs.existsSync(ran)).toBe(false)
    expect(records(t.errors)).toMatchObject([{ name: label, outcome: "rejected", reason }])
  })

  it("--allow-users and --allow-groups: only the allowed owners' jobs run", async () => {
    const t = sharedSpool("allow")
    for (const user of [ALICE, BOB]) submitAs(user, t.spool, `${user}-job`, "id -un")
    const byUser = await run(["--run-as-owner", "--allow-users", ALICE, "-o", t.archive, "-e", t.errors, "--drain", t.spool], t.root)
    expect(byUser.code).toBe(1)
    expect(records(t.archive)).toMatchObject([{ name: `${ALICE}-job`, outcome: "succeeded", user: ALICE }])
    expect(records(t.errors)).toMatchObject([{ name: `${BOB}-job`, outcome: "rejected", reason: `refused: owner uid ${uidOf(BOB)} is not in --allow-users or --allow-groups` }])

    const u = sharedSpool("allow-groups")
    for (const user of [ALICE, BOB]) submitAs(user, u.spool, `${user}-job`, "id -un")
    const byGroup = await run(["--run-as-owner", "--allow-groups", TEAM, "-o", u.archive, "-e", u.errors, "--drain", u.spool], u.root)
    expect(byGroup.code).toBe(1)
    expect(records(u.archive).map((r) => r.name)).toEqual([`${ALICE}-job`])
    expect(records(u.errors).map((r) => [r.name, r.outcome])).toEqual([[`${BOB}-job`, "rejected"]])
    // An unknown name is a usage error.
    const unknown = await run(["--allow-users", "no-such-user-here", u.spool], u.root)
    expect(unknown.code).toBe(64)
    expect(unknown.stderr).toContain("--allow-users: no such user: no-such-user-here")
  })

  it("--run-as-owner is refused when pmjq is not root (exit 77); an open spool without the sticky bit is refused as root (77), a warning otherwise", async () => {
    const t = sharedSpool("not-root")
    fs.chmodSync(t.spool, 0o777)
    // The checkout may lie where bob cannot enter: he runs a copy.
    const bin = publicBin()
    const asBob = (...args: Array<string>) =>
      cp.spawn("setpriv", [`--reuid=${uidOf(BOB)}`, `--regid=${gidOf(BOB)}`, "--init-groups", "--", process.execPath, bin, ...args], { cwd: "/", stdio: ["ignore", "pipe", "pipe"] })
    const refused = cp.spawnSync("setpriv", [`--reuid=${uidOf(BOB)}`, `--regid=${gidOf(BOB)}`, "--init-groups", "--", process.execPath, bin, "--run-as-owner", t.spool], { encoding: "utf8", cwd: "/" })
    expect(refused.status).toBe(77)
    expect(refused.stderr.trim()).toBe("pmjq: --run-as-owner needs root: only root can run a job as another user")
    const asRoot = await run(["-o", t.archive, t.spool], t.root)
    expect(asRoot.code).toBe(77)
    expect(asRoot.stderr.trim()).toBe(`pmjq: ${t.spool} is writable by group or others without the sticky bit, and pmjq runs as root: chmod +t it`)
    const bobs = asBob("-o", path.join(t.spool, "..", "bobs-archive-is-refused"), t.spool)
    let stderr = ""
    bobs.stderr!.on("data", (d: Buffer) => (stderr += d.toString()))
    const exited = new Promise<number | null>((resolve) => bobs.once("close", (code) => resolve(code)))
    // Bob cannot make an archive in root's folder: 73. His warning comes first.
    expect(await exited).toBe(73)
    expect(stderr).toContain("writable by group or others without the sticky bit")
  })
})
