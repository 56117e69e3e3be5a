/**
 * A cluster filesystem on this machine (GlusterFS, MooseFS), mounted twice:
 * two mounts are two machines (each FUSE client has its own caches), and each
 * pmjq runs in its own UTS namespace, with its own host name, so that what is
 * tested is the other-host rules (heartbeat age, the lease), not the
 * same-host shortcut. Set up as found in ../shared/FIELD-NOTES.md ("Cluster
 * filesystems here").
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { has, waitFor } from "./waiting.js"

/** Why GlusterFS tests cannot run here, or null. */
export const glusterMissing = (): string | null =>
  process.getuid?.() !== 0
    ? "needs root (a volume of its own, FUSE mounts, a host name per machine)"
    : !has("glusterd") || !has("gluster")
    ? "needs glusterd (Debian packages glusterfs-server and glusterfs-client, which .ci/run installs)"
    : !fs.existsSync("/dev/fuse")
    ? "needs /dev/fuse"
    : !has("unshare")
    ? "needs unshare (util-linux)"
    : null

const gluster = (...args: Array<string>) => cp.spawnSync("gluster", ["--mode=script", ...args], { encoding: "utf8", timeout: 120_000 })

const must = (result: cp.SpawnSyncReturns<string>, what: string) => {
  if (result.status !== 0) throw new Error(`${what}: ${result.stdout}${result.stderr}`.trim())
  return result
}

/** glusterd, started if it is not running; true when this call started it. */
export const startGlusterd = async (): Promise<boolean> => {
  if (cp.spawnSync("pgrep", ["-x", "glusterd"]).status === 0) return false
  fs.mkdirSync("/var/log/glusterfs", { recursive: true })
  // Without the redirections it keeps the test's pipes open (FIELD-NOTES).
  const daemon = cp.spawn("glusterd", ["-N", "-l", path.join(os.tmpdir(), "pmjq-glusterd.log")], { stdio: "ignore", detached: true })
  daemon.unref()
  await waitFor("glusterd to answer", () => gluster("volume", "list").status === 0, 60_000)
  return true
}

export const stopGlusterd = () => void cp.spawnSync("pkill", ["-x", "glusterd"])

/**
 * The settings the README recommends: the client caches that let one mount see
 * another's changes up to a second late turned off on the volume, and the
 * kernel's attribute and entry caches on each mount.
 */
export const RECOMMENDED_VOLUME = ["performance.quick-read", "performance.stat-prefetch", "performance.open-behind", "performance.write-behind"]
export const RECOMMENDED_MOUNT = "attribute-timeout=0,entry-timeout=0,negative-timeout=0"

export interface Volume {
  readonly name: string
  /** The two mounts: machine a's and machine b's. */
  readonly mounts: readonly [string, string]
  /** Kills mount I's FUSE client: its mount then fails with ENOTCONN, as when a machine loses the storage. */
  readonly killClient: (i: 0 | 1) => void
  /** Mounts I again after killClient. */
  readonly remount: (i: 0 | 1) => void
  readonly remove: () => void | Promise<void>
}

export const makeVolume = (label: string, recommended: boolean): Volume => {
  const host = os.hostname()
  const name = `pmjq-${label}-${process.pid}`
  const brick = fs.mkdtempSync("/var/tmp/pmjq-brick-")
  must(gluster("volume", "create", name, `${host}:${path.join(brick, "b")}`, "force"), "volume create")
  must(gluster("volume", "start", name), "volume start")
  if (recommended) for (const option of RECOMMENDED_VOLUME) must(gluster("volume", "set", name, option, "off"), `volume set ${option}`)
  const mounts = [0, 1].map((i) => fs.mkdtempSync(path.join(os.tmpdir(), `pmjq-gluster-${"ab"[i]}-`))) as unknown as readonly [string, string]
  const mount = (i: 0 | 1) =>
    must(
      cp.spawnSync("mount", ["-t", "glusterfs", ...(recommended ? ["-o", RECOMMENDED_MOUNT] : []), `${host}:/${name}`, mounts[i]], { encoding: "utf8" }),
      `mount ${mounts[i]}`
    )
  mount(0)
  mount(1)
  return twoMounts(name, mounts, mount, (m) => `glusterfs.*--volfile-id=/?${name} .*${m}$`, () => {
    gluster("volume", "stop", name, "force")
    gluster("volume", "delete", name)
    fs.rmSync(brick, { recursive: true, force: true })
  })
}

// ---- MooseFS ----

/** This machine's first non-loopback address: MooseFS's chunkserver refuses a 127.x master. */
const outwardAddress = () =>
  Object.values(os.networkInterfaces()).flat().find((a) => a !== undefined && a.family === "IPv4" && !a.internal)?.address ?? null

/** Why MooseFS tests cannot run here, or null. */
export const mooseMissing = (): string | null =>
  process.getuid?.() !== 0
    ? "needs root (servers of its own, FUSE mounts, a host name per machine)"
    : !has("mfsmaster") || !has("mfschunkserver") || !has("mfsmount")
    ? "needs MooseFS (Debian packages moosefs-master, moosefs-chunkserver and moosefs-client, which .ci/run installs)"
    : !fs.existsSync("/var/lib/mfs/metadata.mfs.empty")
    ? "needs /var/lib/mfs/metadata.mfs.empty (Debian package moosefs-master)"
    : outwardAddress() === null
    ? "needs a non-loopback address (the chunkserver refuses a 127.x master)"
    : !fs.existsSync("/dev/fuse")
    ? "needs /dev/fuse"
    : null

/**
 * A MooseFS master and chunkserver of its own (default ports), and two mounts.
 * With the defaults it is coherent: one mount sees another's changes at once.
 */
export const makeMooseVolume = async (label: string): Promise<Volume> => {
  const address = outwardAddress()!
  const dir = fs.mkdtempSync(`/var/tmp/pmjq-mfs-${label}-`)
  for (const sub of ["master", "cs", "chunks"]) fs.mkdirSync(path.join(dir, sub))
  fs.copyFileSync("/var/lib/mfs/metadata.mfs.empty", path.join(dir, "master", "metadata.mfs"))
  fs.writeFileSync(path.join(dir, "mfsmaster.cfg"), `DATA_PATH = ${dir}/master\nEXPORTS_FILENAME = ${dir}/mfsexports.cfg\n`)
  fs.writeFileSync(path.join(dir, "mfsexports.cfg"), "* / rw,alldirs,admin,maproot=0:0\n")
  fs.writeFileSync(path.join(dir, "mfschunkserver.cfg"), `DATA_PATH = ${dir}/cs\nHDD_CONF_FILENAME = ${dir}/mfshdd.cfg\nMASTER_HOST = ${address}\n`)
  fs.writeFileSync(path.join(dir, "mfshdd.cfg"), `${dir}/chunks\n`)
  must(cp.spawnSync("chown", ["-R", "mfs:mfs", dir], { encoding: "utf8" }), "chown mfs")
  const log = (name: string) => fs.openSync(path.join(dir, `${name}.log`), "a")
  const master = cp.spawn("mfsmaster", ["-f", "-c", path.join(dir, "mfsmaster.cfg")], { stdio: ["ignore", log("master"), log("master")] })
  const chunks = cp.spawn("mfschunkserver", ["-f", "-c", path.join(dir, "mfschunkserver.cfg")], { stdio: ["ignore", log("cs"), log("cs")] })
  // Without a chunkserver a write makes a 0-byte file, silently (FIELD-NOTES).
  await waitFor("the chunkserver connected", () => fs.readFileSync(path.join(dir, "cs.log"), "utf8").includes("connected to Master"), 60_000)
  const mounts = [0, 1].map((i) => fs.mkdtempSync(path.join(os.tmpdir(), `pmjq-mfs-${"ab"[i]}-`))) as unknown as readonly [string, string]
  const mount = (i: 0 | 1) => must(cp.spawnSync("mfsmount", [mounts[i], "-H", address], { encoding: "utf8" }), `mfsmount ${mounts[i]}`)
  // A new MooseFS is open to all (0777): pmjq as root refuses a spool reached
  // through it. Changed before the second mount, which would keep the old mode
  // of the root cached.
  mount(0)
  fs.chmodSync(mounts[0], 0o755)
  mount(1)
  // mfsmount renames itself "mfsmount (mounted on: DIR)". The master saves its
  // metadata as it stops (~4 s): waited for, so that the next volume can have the ports.
  return twoMounts(`mfs-${label}`, mounts, mount, (m) => `^mfsmount \\(mounted on: ${m}\\)`, async () => {
    const exited = [chunks, master].map((p) => new Promise((resolve) => (p.exitCode !== null ? resolve(null) : p.once("exit", resolve))))
    chunks.kill("SIGTERM")
    master.kill("SIGTERM")
    await Promise.all(exited)
    fs.rmSync(dir, { recursive: true, force: true })
  })
}

/**
 * A volume's two mounts as machines: a mount's FUSE client is the process
 * CLIENT matches (a pgrep -f pattern, given the mount point); TEARDOWN stops
 * the volume's servers once both are unmounted.
 */
const twoMounts = (
  name: string,
  mounts: readonly [string, string],
  mount: (i: 0 | 1) => unknown,
  client: (mount: string) => string,
  teardown: () => void | Promise<void>
): Volume => ({
  name,
  mounts,
  killClient: (i) => {
    const pids = cp.spawnSync("pgrep", ["-f", client(mounts[i])], { encoding: "utf8" }).stdout.trim().split("\n").filter(Boolean).map(Number)
    for (const pid of pids) process.kill(pid, "SIGKILL")
  },
  remount: (i) => {
    cp.spawnSync("umount", ["-l", mounts[i]])
    mount(i)
  },
  remove: async () => {
    for (const m of mounts) cp.spawnSync("umount", ["-l", m])
    await teardown()
    for (const m of mounts) fs.rmSync(m, { recursive: true, force: true })
  }
})
