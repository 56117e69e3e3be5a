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
import * as files from "./files.js"
import type { Ownership } from "./files.js"

export interface Calls {
  readonly lstat: (file: string) => Promise<fs.Stats>
  readonly rename: (from: string, to: string) => Promise<void>
  readonly link: (existing: string, created: string) => Promise<void>
  readonly unlink: (file: string) => Promise<void>
  /** Creates FILE with `data` and exactly MODE (see files.ts); fails with EEXIST if anything has its name. */
  readonly writeNew: (file: string, data: string, mode: number, owner?: Ownership | null) => Promise<void>
  /** Copies a regular file to a new file, safely (see files.ts); EEXIST if `to` exists. */
  readonly copyNew: (from: string, to: string) => Promise<void>
  /**
   * The text of a regular file owned by UID, or null when there is no such
   * file; a symlink, FIFO or someone else's file fails (ELOOP, Untrusted).
   */
  readonly readText: (file: string, uid: number) => Promise<string | null>
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

const direct: Calls = {
  lstat: (file) => now(() => fs.lstatSync(file)),
  rename: (from, to) => now(() => fs.renameSync(from, to)),
  link: (existing, created) => now(() => fs.linkSync(existing, created)),
  unlink: (file) => now(() => fs.unlinkSync(file)),
  writeNew: (file, data, mode, owner = null) => now(() => files.writeNew(file, data, mode, owner)),
  // A copy may be of any size: never on the event loop (files.ts).
  copyNew: files.copyNewAsync,
  readText: (file, uid) => now(() => files.readRegular(file, uid))
}

const lstat = promisify(fs.lstat)
const rename = promisify(fs.rename)
const link = promisify(fs.link)
const unlink = promisify(fs.unlink)

// Callback API, promisified: about half the CPU per call of node:fs/promises.
const threaded: Calls = {
  lstat: (file) => lstat(file),
  rename,
  link,
  unlink,
  writeNew: (file, data, mode, owner = null) => files.writeNewAsync(file, data, mode, owner),
  copyNew: files.copyNewAsync,
  readText: (file, uid) => files.readRegularAsync(file, uid)
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
