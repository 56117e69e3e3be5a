/**
 * The filesystem calls on pmjq's per-job path (claim, release, archive), as a
 * service with two implementations, chosen at startup by where the spool and
 * archive dirs live:
 *
 * - Direct: the call is made on the event loop. On a local filesystem each is a
 *   metadata update of a few microseconds; handing it to libuv's thread pool and
 *   back costs two thread switches, more than the call itself. Measured on a
 *   2-core machine draining trivial jobs: +12 % throughput.
 * - Threaded: Node's callback API on the thread pool. Over NFS, sshfs or SMB a
 *   call is a network round trip, and four may overlap while the loop goes on.
 *
 * Listings stay threaded everywhere: a spool of 100,000 names takes a while.
 */
import { Context, Effect, Layer } from "effect"
import * as fs from "node:fs"
import { promisify } from "node:util"

export interface Calls {
  readonly lstat: (file: string) => Promise<fs.Stats>
  readonly rename: (from: string, to: string) => Promise<void>
  readonly link: (existing: string, created: string) => Promise<void>
  readonly unlink: (file: string) => Promise<void>
  /** Creates FILE with `data`; fails with EEXIST if it exists. */
  readonly writeNew: (file: string, data: string) => Promise<void>
  /** Copies to a new file; fails with EEXIST if `to` exists. */
  readonly copyNew: (from: string, to: string) => Promise<void>
  /** The file's text, or null when there is no such file. */
  readonly readText: (file: string) => Promise<string | null>
}

export class Syscalls extends Context.Tag("pmjq/Syscalls")<Syscalls, Calls>() {
  static readonly Direct = Layer.sync(Syscalls, () => direct)
  static readonly Threaded = Layer.sync(Syscalls, () => threaded)
  /** Direct when every directory is on a local filesystem, else threaded. */
  static readonly forDirectories = (dirs: ReadonlyArray<string>) =>
    Layer.effect(
      Syscalls,
      Effect.map(Effect.forEach(dirs, isLocal), (local) => (local.every(Boolean) ? direct : threaded))
    )
}

export const readdir = promisify(fs.readdir)

const now = <A>(call: () => A): Promise<A> => {
  try {
    return Promise.resolve(call())
  } catch (e) {
    return Promise.reject(e)
  }
}

const missingAsNull = (e: unknown) => ((e as NodeJS.ErrnoException).code === "ENOENT" ? null : Promise.reject(e))

const direct: Calls = {
  lstat: (file) => now(() => fs.lstatSync(file)),
  rename: (from, to) => now(() => fs.renameSync(from, to)),
  link: (existing, created) => now(() => fs.linkSync(existing, created)),
  unlink: (file) => now(() => fs.unlinkSync(file)),
  writeNew: (file, data) => now(() => fs.writeFileSync(file, data, { flag: "wx" })),
  copyNew: (from, to) => now(() => fs.copyFileSync(from, to, fs.constants.COPYFILE_EXCL)),
  readText: (file) => now(() => fs.readFileSync(file, "utf8")).catch(missingAsNull)
}

const lstat = promisify(fs.lstat)
const rename = promisify(fs.rename)
const link = promisify(fs.link)
const unlink = promisify(fs.unlink)
const writeFile = promisify(fs.writeFile)
const copyFile = promisify(fs.copyFile)
const readFile = promisify(fs.readFile)

// Callback API, promisified: about half the CPU per call of node:fs/promises.
const threaded: Calls = {
  lstat: (file) => lstat(file),
  rename,
  link,
  unlink,
  writeNew: (file, data) => writeFile(file, data, { flag: "wx" }),
  copyNew: (from, to) => copyFile(from, to, fs.constants.COPYFILE_EXCL),
  readText: (file) => readFile(file, "utf8").catch(missingAsNull)
}

// statfs(2) f_type of filesystems whose metadata calls never leave the machine.
// Anything else (NFS, FUSE such as sshfs, SMB, Ceph) or unknown counts as remote.
const LOCAL_FILESYSTEMS = new Set([
  0xef53, // ext2/3/4
  0x01021994, // tmpfs
  0x58465342, // xfs
  0x9123683e, // btrfs
  0xf2f52010, // f2fs
  0x2fc12fc1, // zfs
  0x794c7630, // overlayfs
  0x858458f6 // ramfs
])

const isLocal = (dir: string) =>
  Effect.promise(() => fs.promises.statfs(dir).then((s) => LOCAL_FILESYSTEMS.has(s.type), () => false))
