/**
 * A real shared filesystem: one folder exported over sshfs on loopback twice.
 * Two mounts are two machines: each has its own caches, inotify on one does
 * not see writes through the other, and listings are stale (here 5 s). One pmjq
 * on each mount; 100 jobs written into the backing folder; each runs once.
 *
 * Needs root (FUSE mounts, sshd) and the Debian packages openssh-server and
 * sshfs, which .ci/run installs.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { has, lastWords, records, runsHere, start, tempDir, waitFor, waitWhileProgressing } from "./harness.js"

const SSHD = "/usr/sbin/sshd"
const canMount = runsHere(
  "two machines sharing a spool over sshfs",
  process.getuid?.() !== 0
    ? "needs root (FUSE mounts, an sshd of its own)"
    : !fs.existsSync(SSHD)
    ? "needs sshd (Debian package openssh-server, which .ci/run installs)"
    : !has("sshfs")
    ? "needs sshfs (Debian package sshfs, which .ci/run installs)"
    : !fs.existsSync("/dev/fuse")
    ? "needs /dev/fuse"
    : null
)
// Enough for both mounts' stale listings to race for the same names many
// times over; 1,000 proved no more and took ten times as long.
const JOBS = 100

describe("two machines sharing a spool over sshfs", () => {
  it.runIf(canMount)(`(as root: needs sshd and sshfs) ${JOBS} jobs, two pmjq on two mounts: each job runs exactly once`, async () => {
    const root = tempDir("sshfs")
    const keys = path.join(root, "keys")
    const backing = path.join(root, "backing")
    const spool = path.join(backing, "spool")
    const ledger = path.join(root, "ledger")
    fs.mkdirSync(keys)
    fs.mkdirSync(spool, { recursive: true })
    const mounts = ["a", "b"].map((m) => path.join(root, `mount-${m}`))
    for (const m of mounts) fs.mkdirSync(m)
    const cleanup: Array<() => void> = []
    const daemons: Array<ReturnType<typeof start>> = []
    try {
      cp.execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(keys, "host")])
      cp.execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(keys, "client")])
      fs.copyFileSync(path.join(keys, "client.pub"), path.join(keys, "authorized_keys"))
      fs.mkdirSync("/run/sshd", { recursive: true })
      const port = 20000 + Math.floor(Math.random() * 20000)
      fs.writeFileSync(path.join(keys, "sshd_config"), [
        `Port ${port}`, "ListenAddress 127.0.0.1", `HostKey ${path.join(keys, "host")}`,
        `AuthorizedKeysFile ${path.join(keys, "authorized_keys")}`, "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "StrictModes no", "UsePAM no", `PidFile ${path.join(keys, "sshd.pid")}`,
        "Subsystem sftp internal-sftp"
      ].join("\n") + "\n")
      const sshd = cp.spawn(SSHD, ["-D", "-e", "-f", path.join(keys, "sshd_config")], { stdio: "ignore" })
      cleanup.push(() => sshd.kill("SIGTERM"))
      const options = [
        `IdentityFile=${path.join(keys, "client")}`, "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
        `port=${port}`, "LogLevel=ERROR",
        // Listings still stale, as on any sshfs, for 5 s instead of 20: the
        // same races, in a quarter of the waiting.
        "dcache_timeout=5"
      ].join(",")
      for (const m of mounts) {
        await waitFor("sshfs mount", () => cp.spawnSync("sshfs", ["-o", options, `root@127.0.0.1:${backing}`, m]).status === 0)
        cleanup.push(() => void cp.spawnSync("fusermount", ["-u", "-z", m]))
      }
      expect(fs.existsSync(path.join(mounts[0]!, "spool"))).toBe(true)

      for (const [i, m] of mounts.entries()) {
        daemons.push(start(["--node-id", `machine-${i}`, "-j", "4", "-o", path.join(m, "archive"), "--poll", "1s", path.join(m, "spool")], root))
      }
      await waitFor("both watching", () => daemons.every((d) => d.output().stderr.includes("INFO watching")))
      // Submitted on the file server itself: no notification reaches either mount.
      for (let i = 0; i < JOBS; i++) {
        const hidden = path.join(spool, `.new-${i}`)
        fs.writeFileSync(hidden, `#!/bin/sh\necho "$PMJQ_JOB $PMJQ_NODE" >> "${ledger}"\n`, { mode: 0o755 })
        fs.renameSync(hidden, path.join(spool, `job-${i}`))
      }
      const archive = path.join(backing, "archive")
      const recorded = () => (fs.existsSync(archive) ? fs.readdirSync(archive).filter((n) => n.endsWith(".json")).length : 0)
      await waitWhileProgressing("all archived", () => recorded() >= JOBS, recorded, () => lastWords(daemons))

      const ran = fs.readFileSync(ledger, "utf8").split("\n").filter(Boolean)
      const names = ran.map((l) => l.split(" ")[0])
      expect(ran).toHaveLength(JOBS)
      expect(new Set(names).size).toBe(JOBS)
      const recs = records(archive)
      expect(recs).toHaveLength(JOBS)
      expect(recs.every((r) => r.outcome === "succeeded")).toBe(true)
      const share = (node: string) => ran.filter((l) => l.endsWith(` ${node}`)).length
      console.log(`sshfs: machine-0 ran ${share("machine-0")}, machine-1 ran ${share("machine-1")}`)
      expect(share("machine-0") + share("machine-1")).toBe(JOBS)
      for (const d of daemons) d.child.kill("SIGTERM")
      for (const d of daemons) expect((await d.exited).code).toBe(0)
    } finally {
      for (const d of daemons) if (d.child.exitCode === null) d.child.kill("SIGKILL")
      await Promise.all(daemons.map((d) => d.exited))
      for (const undo of cleanup.reverse()) undo()
    }
  })
})
