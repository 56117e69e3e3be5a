/**
 * Every filesystem call of the spool, the nodes, archival, quarantine and
 * recovery, as a service: the seam where tests put an in-memory filesystem
 * (test/memoryfs.ts). Two live implementations, chosen at startup by where the
 * spool and archive dirs live:
 *
 * - Direct: the call is made on the event loop. On a local filesystem each is a
 *   metadata update of a few microseconds; handing it to libuv's thread pool and
 *   back costs two thread switches, more than the call itself. Measured on a
 *   2-core machine draining trivial jobs: +12 % throughput.
 * - Threaded: Node's callback API on the thread pool. Over NFS, sshfs or SMB a
 *   call is a network round trip, and four may overlap while the loop goes on.
 *
 * Listings and copies stay threaded everywhere: a spool of 100,000 names takes a
 * while, and a copy may be of any size.
 */
import { Context, Effect, Layer } from "effect"
import * as fs from "node:fs"
import type { Readable } from "node:stream"
import { promisify } from "node:util"
import * as path from "node:path"
import * as files from "./files.js"
import { escapedName } from "../log/text.js"
import type { Ownership, Stat } from "./files.js"

// What pmjq reads of an lstat or stat (files.ts), for the callers of these calls.
export type { Stat }

/** A name in a folder, and whether it is a real folder (a symlink to one is not). */
export interface Entry {
  readonly name: string
  readonly isDirectory: boolean
}

export interface Calls {
  /** The names in a folder, in no particular order. */
  readonly readdir: (dir: string) => Promise<Array<string>>
  /** The same, with what each is (no symlink followed). */
  readonly entries: (dir: string) => Promise<Array<Entry>>
  readonly lstat: (file: string) => Promise<Stat>
  readonly stat: (file: string) => Promise<Stat>
  readonly rename: (from: string, to: string) => Promise<void>
  readonly link: (existing: string, created: string) => Promise<void>
  readonly unlink: (file: string) => Promise<void>
  /** mkdir(2): MODE passes through the umask; EEXIST when anything has the name. */
  readonly mkdir: (dir: string, mode: number) => Promise<void>
  /** Sets a folder's mode through a descriptor of the folder itself (O_DIRECTORY|O_NOFOLLOW: a symlink fails, ENOTDIR). */
  readonly chmodDir: (dir: string, mode: number) => Promise<void>
  readonly rmdir: (dir: string) => Promise<void>
  readonly realpath: (file: string) => Promise<string>
  readonly readlink: (file: string) => Promise<string>
  readonly symlink: (target: string, file: string) => Promise<void>
  /** chown of the name itself, a symlink included (never followed). */
  readonly lchown: (file: string, uid: number, gid: number) => Promise<void>
  /**
   * Creates FILE with `data` and exactly MODE (see files.ts); fails with EEXIST
   * if anything has its name. DURABLE: its bytes are on disk before it returns
   * (fdatasync, always on the thread pool), for a rename to publish.
   */
  readonly writeNew: (file: string, data: string, mode: number, owner?: Ownership | null, durable?: boolean) => Promise<void>
  /** Copies a regular file to a new file, safely (see files.ts), and on disk; EEXIST if `to` exists. */
  readonly copyNew: (from: string, to: string) => Promise<void>
  /**
   * fsync(2) of a folder: the names made, renamed or removed in it before the
   * call survive a power cut once it returns. Calls for one folder made while
   * a sync of it runs share the next one (a group commit): a drain of many
   * jobs syncs its running folder and archive about once per batch.
   */
  readonly syncDir: (dir: string) => Promise<void>
  /**
   * The text of a regular file owned by UID, or null when there is no such
   * file; a symlink, FIFO, someone else's file or one over MAX bytes (default
   * files.ts: MAX_READ) fails (ELOOP, Untrusted).
   */
  readonly readText: (file: string, uid: number, max?: number) => Promise<string | null>
  /**
   * FILE as a descriptor sees it (no symlink followed, no FIFO waited on):
   * what it is, and its first MAX bytes when it is a regular file `wanted`
   * says to read (a job's directives, directives/directives.ts).
   */
  readonly head: (file: string, max: number, wanted: (stat: Stat) => boolean) => Promise<files.Head>
  /** A file's bytes as a stream (captured output passed through to pmjq's own). */
  readonly readStream: (file: string) => Readable
  /**
   * Calls `changed` with each name in DIR the kernel says changed (hints only);
   * `failed` once if the watch breaks. Returns what stops it. Throws when the
   * watch cannot start.
   */
  readonly watch: (dir: string, changed: (name: string) => void, failed: (e: unknown) => void) => () => void
  /**
   * Gives each name in DIR that is not valid UTF-8 (and not hidden) a name
   * Node can use: linked under its escaped name (text.ts: escapedName), then
   * unlinked. Node decodes such a name with U+FFFD, and no call could reach
   * the file. Never replaces anything (link fails EEXIST). Says what became
   * of each.
   */
  readonly escapeNames: (dir: string) => Promise<Array<{ readonly name: string; readonly failed: string | null }>>
}

export class Syscalls extends Context.Tag("pmjq/Syscalls")<Syscalls, Calls>() {
  static readonly Direct = Layer.sync(Syscalls, () => directCalls)
  static readonly Threaded = Layer.sync(Syscalls, () => threadedCalls)
  /** Direct when every directory is on a local filesystem, else threaded. */
  static readonly forDirectories = (dirs: ReadonlyArray<string>) =>
    Layer.effect(
      Syscalls,
      Effect.map(Effect.forEach(dirs, isLocal), (local) => (local.every(Boolean) ? directCalls : threadedCalls))
    )
}

/**
 * SYNC of a folder, shared (Calls.syncDir): a call made while one runs may
 * name changes that sync missed, so it waits for the next, which starts when
 * the running one ends and serves every call made meanwhile.
 */
export const groupCommit = (sync: (dir: string) => Promise<void>) => {
  const running = new Map<string, Promise<void>>()
  const next = new Map<string, Promise<void>>()
  const start = (dir: string): Promise<void> => {
    const done: Promise<void> = sync(dir).finally(() => {
      if (running.get(dir) === done) running.delete(dir)
    })
    running.set(dir, done)
    return done
  }
  return (dir: string): Promise<void> => {
    const now = running.get(dir)
    if (now === undefined) return start(dir)
    const queued = next.get(dir) ?? now.then(() => undefined, () => undefined).then(() => {
      next.delete(dir)
      return start(dir)
    })
    next.set(dir, queued)
    return queued
  }
}

/**
 * FILE replaced whole through CALLS: TEXT written to ASIDE (new, exactly MODE,
 * OWNER's; on disk first when DURABLE) and renamed over FILE, so a reader sees
 * the old text or the new, never half. An ASIDE a crash left is removed only
 * when found there: on a cluster volume each call is a round trip.
 */
export const replaceFile = async (
  calls: Calls,
  file: string,
  aside: string,
  text: string,
  { durable = false, mode, owner = null }: { readonly mode: number; readonly owner?: Ownership | null; readonly durable?: boolean }
): Promise<void> => {
  const write = () => calls.writeNew(aside, text, mode, owner, durable)
  await write().catch(async (e: unknown) => {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
    await calls.unlink(aside).catch(() => undefined)
    await write()
  })
  await calls.rename(aside, file)
}

/**
 * A small text pmjq keeps as a symlink whose target it is (an archival mark,
 * an ended note), in a folder only pmjq writes in: made whole by one call
 * (symlink(2) is atomic, never follows nor replaces anything) where a file
 * takes create, write and close, each a round trip on a cluster volume. Read
 * with readlink, never followed. One kept as a file (a text too long for a
 * symlink, or an older pmjq's) is read if it is OWNER's (Calls.readText).
 * Null when there is none; any other failure is the caller's to judge.
 */
export const readLinkedText = (calls: Calls, file: string, owner: number, max?: number): Promise<string | null> =>
  calls.readlink(file).catch((e: unknown) => {
    const code = (e as NodeJS.ErrnoException).code
    if (code === "ENOENT") return null
    if (code === "EINVAL") return calls.readText(file, owner, max)
    return Promise.reject(e)
  })

/**
 * FILE's linked text (see readLinkedText) replaced whole: a symlink made at
 * ASIDE (a stale one from a crash removed only when found) and renamed over
 * FILE. A text too long for a symlink is written as a file with MODE.
 */
export const replaceLinkedText = async (calls: Calls, file: string, aside: string, text: string, mode: number): Promise<void> => {
  const made = await calls.symlink(text, aside).then(() => true, async (e: unknown) => {
    const code = (e as NodeJS.ErrnoException).code
    if (code === "ENAMETOOLONG") return false
    if (code !== "EEXIST") throw e
    await calls.unlink(aside).catch(() => undefined)
    await calls.symlink(text, aside)
    return true
  })
  if (!made) return replaceFile(calls, file, aside, text + "\n", { mode })
  await calls.rename(aside, file)
}

// One for both live sets of calls: a process syncs a folder one way.
const syncDir = groupCommit(files.syncFolderAsync)

const now = <A>(call: () => A): Promise<A> => {
  try {
    return Promise.resolve(call())
  } catch (e) {
    return Promise.reject(e)
  }
}

const { O_DIRECTORY, O_NOFOLLOW, O_RDONLY } = fs.constants
const DIR_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW

const readdir = promisify(fs.readdir)
const entries = async (dir: string): Promise<Array<Entry>> =>
  (await readdir(dir, { withFileTypes: true })).map((e) => ({ name: e.name, isDirectory: e.isDirectory() }))

const watch: Calls["watch"] = (dir, changed, failed) => {
  const watcher = fs.watch(dir, { persistent: false }, (_event, filename) => {
    if (filename !== null) changed(filename)
  })
  watcher.on("error", (e) => {
    watcher.close()
    failed(e)
  })
  return () => watcher.close()
}

const readStream = (file: string): Readable => fs.createReadStream(file)

// Synchronous: on a local disk no turn of the event loop (no notification
// handled, no claim) comes between the link and the unlink, while the file
// has two names. (Another node may still see both: its claim then refuses
// the file for its two links; it is never run twice.)
const escapeNamesSync = (dir: string) => {
  const done: Array<{ readonly name: string; readonly failed: string | null }> = []
  for (const bytes of fs.readdirSync(dir, { encoding: "buffer" })) {
    const name = escapedName(bytes)
    if (name === null || name.startsWith(".")) continue
    const from = Buffer.concat([Buffer.from(`${dir}/`), bytes])
    try {
      fs.linkSync(from, path.join(dir, name))
      fs.unlinkSync(from)
      done.push({ name, failed: null })
    } catch (e) {
      done.push({ name, failed: (e as NodeJS.ErrnoException).code ?? String(e) })
    }
  }
  return done
}
const escapeNames: Calls["escapeNames"] = (dir) => now(() => escapeNamesSync(dir))

export const directCalls: Calls = {
  readdir: (dir) => readdir(dir),
  entries,
  lstat: (file) => now(() => fs.lstatSync(file)),
  stat: (file) => now(() => fs.statSync(file)),
  rename: (from, to) => now(() => fs.renameSync(from, to)),
  link: (existing, created) => now(() => fs.linkSync(existing, created)),
  unlink: (file) => now(() => fs.unlinkSync(file)),
  mkdir: (dir, mode) => now(() => void fs.mkdirSync(dir, { mode })),
  chmodDir: (dir, mode) =>
    now(() => {
      const fd = fs.openSync(dir, DIR_FLAGS)
      try {
        fs.fchmodSync(fd, mode)
      } finally {
        fs.closeSync(fd)
      }
    }),
  rmdir: (dir) => now(() => fs.rmdirSync(dir)),
  realpath: (file) => now(() => fs.realpathSync(file)),
  readlink: (file) => now(() => fs.readlinkSync(file)),
  symlink: (target, file) => now(() => fs.symlinkSync(target, file)),
  lchown: (file, uid, gid) => now(() => fs.lchownSync(file, uid, gid)),
  // A sync may take milliseconds: never on the event loop.
  writeNew: (file, data, mode, owner = null, durable = false) =>
    durable ? files.writeNewAsync(file, data, mode, owner, true) : now(() => files.writeNew(file, data, mode, owner)),
  // A copy may be of any size: never on the event loop (files.ts).
  copyNew: files.copyNewAsync,
  syncDir,
  readText: (file, uid, max) => now(() => files.readRegular(file, uid, max)),
  head: (file, max, wanted) => now(() => files.readHead(file, max, wanted)),
  readStream,
  watch,
  escapeNames
}

const lstat = promisify(fs.lstat)
const stat = promisify(fs.stat)
const rename = promisify(fs.rename)
const link = promisify(fs.link)
const unlink = promisify(fs.unlink)
const mkdir = promisify(fs.mkdir)
const open = promisify(fs.open)
const fchmod = promisify(fs.fchmod)
const close = promisify(fs.close)
const rmdir = promisify(fs.rmdir)
const realpath = promisify(fs.realpath)
const readlink = promisify(fs.readlink)
const symlink = promisify(fs.symlink)
const lchown = promisify(fs.lchown)

// Callback API, promisified: about half the CPU per call of node:fs/promises.
export const threadedCalls: Calls = {
  readdir: (dir) => readdir(dir),
  entries,
  lstat: (file) => lstat(file),
  stat: (file) => stat(file),
  rename,
  link,
  unlink,
  mkdir: async (dir, mode) => void (await mkdir(dir, { mode })),
  chmodDir: async (dir, mode) => {
    const fd = await open(dir, DIR_FLAGS)
    try {
      await fchmod(fd, mode)
    } finally {
      await close(fd)
    }
  },
  rmdir: (dir) => rmdir(dir),
  realpath: (file) => realpath(file),
  readlink: (file) => readlink(file),
  symlink: (target, file) => symlink(target, file),
  lchown,
  writeNew: (file, data, mode, owner = null, durable = false) => files.writeNewAsync(file, data, mode, owner, durable),
  copyNew: files.copyNewAsync,
  syncDir,
  readText: (file, uid, max) => files.readRegularAsync(file, uid, max),
  head: files.readHeadAsync,
  readStream,
  watch,
  escapeNames
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
