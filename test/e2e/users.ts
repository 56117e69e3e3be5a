/** Real users for the tests that need root: made with useradd, acting through setpriv. */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { workspace } from "./harness.js"

export const isRoot = process.getuid?.() === 0

/** Why the tests that act as other users cannot run here, or null. */
export const rootMissing = isRoot ? null : "needs root (it makes users with useradd and acts as them with setpriv); run the tests as root, as .ci/run does"

export const uidOf = (user: string) => Number(cp.execFileSync("id", ["-u", user], { encoding: "utf8" }).trim())
export const gidOf = (user: string) => Number(cp.execFileSync("id", ["-g", user], { encoding: "utf8" }).trim())

/** Makes USERS afresh (one left by a killed run is removed first). */
export const addUsers = (users: ReadonlyArray<string>) => {
  for (const user of users) {
    cp.spawnSync("userdel", ["-r", user])
    cp.execFileSync("useradd", ["-m", "-s", "/bin/sh", user])
  }
}

/** Stops whatever USERS still run, and removes them. */
export const removeUsers = (users: ReadonlyArray<string>) => {
  for (const user of users) {
    cp.spawnSync("pkill", ["-KILL", "-u", user])
    cp.spawnSync("userdel", ["-r", user])
  }
}

/** Runs ARGV as USER, with the user's groups, the way su would. */
export const asUser = (user: string, argv: ReadonlyArray<string>, cwd = "/") =>
  cp.spawnSync("setpriv", [`--reuid=${uidOf(user)}`, `--regid=${gidOf(user)}`, "--init-groups", "--", ...argv], { encoding: "utf8", cwd, timeout: 60_000 })

/** Puts CONTENT into the spool as USER would: a file of theirs, with MODE, renamed in. */
export const placeAs = (user: string, spool: string, name: string, content: string, mode = 0o755) => {
  const hidden = path.join(spool, `.${process.pid}-${Math.random().toString(36).slice(2)}.new`)
  fs.writeFileSync(hidden, content)
  fs.chownSync(hidden, uidOf(user), gidOf(user))
  fs.chmodSync(hidden, mode)
  fs.renameSync(hidden, path.join(spool, name))
}

/** Submits BODY as USER: a #!/bin/sh script unless it has its own #! line. */
export const submitAs = (user: string, spool: string, name: string, body: string, mode = 0o755) =>
  placeAs(user, spool, name, body.startsWith("#!") ? body : `#!/bin/sh\n${body}\n`, mode)

/** A spool many users write to, as the README sets it up: 1777, in a folder users may enter. */
export const sharedSpool = (label: string) => {
  const t = workspace(label)
  fs.chmodSync(t.root, 0o755)
  fs.chmodSync(t.spool, 0o1777)
  return t
}

/**
 * A process of USER's (sleep) with pid PID, as any user gets one by forking
 * until the number comes round; made at once with ns_last_pid (root). Throws
 * when PID is in use, or when other forks keep taking it first.
 */
export const holdPid = async (pid: number, user: string): Promise<cp.ChildProcess> => {
  // Asked first: `id` is a fork of its own.
  const [uid, gid] = [uidOf(user), gidOf(user)]
  for (let attempt = 0; attempt < 200; attempt++) {
    fs.writeFileSync("/proc/sys/kernel/ns_last_pid", String(pid - 1))
    const holder = cp.spawn("sleep", ["600"], { uid, gid, stdio: "ignore" })
    if (holder.pid === pid) return holder
    holder.kill("SIGKILL")
    await new Promise((resolve) => holder.once("exit", resolve))
  }
  throw new Error(`could not take pid ${pid}: in use, or always taken first`)
}
