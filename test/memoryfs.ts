/**
 * An in-memory filesystem behind pmjq's Syscalls seam (src/filesystem/syscalls.ts), for
 * unit tests of the spool, nodes, archival and recovery with TestClock: no
 * disk, no sleeps. It keeps what pmjq relies on of POSIX: inodes shared by
 * hard links (nlink), rename(2) that replaces a file and fails as the kernel
 * does (ENOENT, ENOTDIR, EISDIR, ENOTEMPTY, EXDEV across mounts), O_EXCL
 * creation that fails EEXIST on any name (a dangling symlink too), O_NOFOLLOW
 * opens that fail ELOOP on a symlink, FIFOs, owners, modes, ctime and mtime.
 * Listings come in no useful order (newest first), as readdir(3) promises none.
 */
import * as path from "node:path"
import { Readable } from "node:stream"
import { MAX_READ, Untrusted } from "../src/filesystem/files.js"
import type { Calls, Entry, Stat } from "../src/filesystem/syscalls.js"

type Kind = "dir" | "file" | "symlink" | "fifo"

interface Inode {
  readonly ino: number
  readonly kind: Kind
  dev: number
  mode: number
  uid: number
  gid: number
  nlink: number
  ctimeMs: number
  mtimeMs: number
  data: string
  readonly target: string
  readonly entries: Map<string, Inode>
}

const TYPE_BITS: Record<Kind, number> = { dir: 0o040000, file: 0o100000, symlink: 0o120000, fifo: 0o010000 }

/** An error as Node's fs gives it: `code`, `syscall`, `path`. */
export const errno = (code: string, syscall: string, file: string) =>
  Object.assign(new Error(`${code}: ${syscall} '${file}'`), { code, syscall, path: file })

const statOf = (n: Inode): Stat => ({
  isFile: () => n.kind === "file",
  isDirectory: () => n.kind === "dir",
  isSymbolicLink: () => n.kind === "symlink",
  mode: TYPE_BITS[n.kind] | n.mode,
  uid: n.uid,
  gid: n.gid,
  ino: n.ino,
  dev: n.dev,
  nlink: n.nlink,
  ctimeMs: n.ctimeMs,
  mtimeMs: n.mtimeMs
})

export interface MemoryFsOptions {
  /** The time stamped on changes: give the test's Clock. */
  readonly now?: () => number
  /** Who "pmjq" is: the owner of what it creates, and whether it is root. */
  readonly uid?: number
  readonly gid?: number
  readonly umask?: number
}

/** A change made through the calls: OP on PATHS; DURABLE: on disk when done (a folder's sync, a copy, a writeNew asked to be). */
export interface Done {
  readonly op: string
  readonly paths: ReadonlyArray<string>
  readonly durable: boolean
}

/** A fault to inject: the call OP on a path matching `on` (either, for two) fails with CODE, `times` times (for ever if not said). */
export interface Fault {
  readonly op: keyof Calls
  readonly on: (file: string) => boolean
  readonly code: string
  times?: number
}

export const makeMemoryFs = ({ now = () => 0, uid = 0, gid = 0, umask = 0o022 }: MemoryFsOptions = {}) => {
  let lastIno = 1
  const inode = (kind: Kind, mode: number, dev: number, over: Partial<Inode> = {}): Inode => ({
    ino: ++lastIno, kind, dev, mode: mode & 0o7777, uid, gid, nlink: kind === "dir" ? 2 : 1,
    ctimeMs: now(), mtimeMs: now(), data: "", target: "", entries: new Map(), ...over
  })
  const root = inode("dir", 0o755, 1)
  let lastDev = 1
  const faults: Array<Fault> = []

  interface Found {
    readonly parent: Inode
    readonly name: string
    readonly node: Inode | undefined
    readonly at: string
  }

  // Resolves FILE component by component as the kernel does: every symlink on
  // the way is followed, the last one only when `follow`.
  const lookup = (file: string, syscall: string, follow: boolean, hops = 0): Found => {
    const parts = path.resolve("/", file).split("/").filter((p) => p !== "")
    let dir = root
    let here = "/"
    for (let i = 0; i < parts.length; i++) {
      if (dir.kind !== "dir") throw errno("ENOTDIR", syscall, file)
      const name = parts[i]!
      const last = i === parts.length - 1
      const node = dir.entries.get(name)
      if (node?.kind === "symlink" && (follow || !last)) {
        if (hops >= 40) throw errno("ELOOP", syscall, file)
        return lookup(path.resolve(here, node.target, ...parts.slice(i + 1)), syscall, follow, hops + 1)
      }
      if (last) return { parent: dir, name, node, at: path.join(here, name) }
      if (node === undefined) throw errno("ENOENT", syscall, file)
      dir = node
      here = path.join(here, name)
    }
    return { parent: root, name: "", node: root, at: "/" }
  }
  const existing = (file: string, syscall: string, follow: boolean) => {
    const found = lookup(file, syscall, follow)
    if (found.node === undefined) throw errno("ENOENT", syscall, file)
    return { ...found, node: found.node }
  }
  const watchers: Array<{ readonly dir: Inode; readonly changed: (name: string) => void }> = []
  const changed = (dir: Inode, name: string) => {
    dir.mtimeMs = dir.ctimeMs = now()
    for (const w of watchers) if (w.dir === dir) w.changed(name)
  }
  const enter = (dir: Inode, name: string, node: Inode) => {
    dir.entries.set(name, node)
    if (node.kind === "dir") dir.nlink++
    changed(dir, name)
  }
  const leave = (dir: Inode, name: string) => {
    const node = dir.entries.get(name)!
    dir.entries.delete(name)
    if (node.kind === "dir") dir.nlink--
    node.nlink--
    node.ctimeMs = now()
    changed(dir, name)
  }
  const creatable = (file: string, syscall: string) => {
    const found = lookup(file, syscall, false)
    if (found.node !== undefined) throw errno("EEXIST", syscall, file)
    return found
  }
  const create = (file: string, kind: Kind, mode: number, over: Partial<Inode> = {}) => {
    const { parent, name } = creatable(file, kind === "dir" ? "mkdir" : "open")
    const node = inode(kind, mode, parent.dev, over)
    enter(parent, name, node)
    return node
  }
  // O_RDONLY|O_NOFOLLOW|O_NONBLOCK, then fstat (files.ts: openRegular).
  const openRegular = (file: string, owner: number | null): Inode => {
    const found = lookup(file, "open", false)
    if (found.node === undefined) throw errno("ENOENT", "open", file)
    if (found.node.kind === "symlink") throw errno("ELOOP", "open", file)
    if (found.node.kind !== "file") throw new Untrusted(file, "not a regular file")
    if (owner !== null && found.node.uid !== owner) throw new Untrusted(file, `owned by uid ${found.node.uid}, not ${owner}`)
    return found.node
  }
  const isInside = (node: Inode, dir: Inode): boolean =>
    node === dir || [...node.entries.values()].some((n) => n.kind === "dir" && isInside(n, dir))

  const ops: Calls = {
    readdir: async (dir) => (await ops.entries(dir)).map((e) => e.name),
    entries: async (dir): Promise<Array<Entry>> => {
      const { node } = existing(dir, "scandir", true)
      if (node.kind !== "dir") throw errno("ENOTDIR", "scandir", dir)
      return [...node.entries].reverse().map(([name, n]) => ({ name, isDirectory: n.kind === "dir" }))
    },
    lstat: async (file) => statOf(existing(file, "lstat", false).node),
    stat: async (file) => statOf(existing(file, "stat", true).node),
    rename: async (from, to) => {
      const src = existing(from, "rename", false)
      const dst = lookup(to, "rename", false)
      if (src.node.dev !== dst.parent.dev) throw errno("EXDEV", "rename", to)
      if (dst.node === src.node) return
      if (src.node.kind === "dir") {
        if (isInside(src.node, dst.parent)) throw errno("EINVAL", "rename", to)
        if (dst.node !== undefined && dst.node.kind !== "dir") throw errno("ENOTDIR", "rename", to)
        if (dst.node !== undefined && dst.node.entries.size > 0) throw errno("ENOTEMPTY", "rename", to)
      } else if (dst.node?.kind === "dir") throw errno("EISDIR", "rename", to)
      if (dst.node !== undefined) leave(dst.parent, dst.name)
      src.node.nlink++ // moved, not unlinked: leave's decrement undone
      leave(src.parent, src.name)
      enter(dst.parent, dst.name, src.node)
    },
    link: async (from, to) => {
      const src = existing(from, "link", false)
      if (src.node.kind === "dir") throw errno("EPERM", "link", from)
      const dst = creatable(to, "link")
      if (src.node.dev !== dst.parent.dev) throw errno("EXDEV", "link", to)
      src.node.nlink++
      src.node.ctimeMs = now()
      enter(dst.parent, dst.name, src.node)
    },
    unlink: async (file) => {
      const found = existing(file, "unlink", false)
      if (found.node.kind === "dir") throw errno("EISDIR", "unlink", file)
      leave(found.parent, found.name)
    },
    mkdir: async (dir, mode) => void create(dir, "dir", mode & ~umask),
    chmodDir: async (dir, mode) => {
      const { node } = existing(dir, "open", false)
      // O_DIRECTORY|O_NOFOLLOW: Linux says ENOTDIR for a symlink too.
      if (node.kind !== "dir") throw errno("ENOTDIR", "open", dir)
      node.mode = mode & 0o7777
      node.ctimeMs = now()
    },
    rmdir: async (dir) => {
      const found = existing(dir, "rmdir", false)
      if (found.node.kind !== "dir") throw errno("ENOTDIR", "rmdir", dir)
      if (found.node.entries.size > 0) throw errno("ENOTEMPTY", "rmdir", dir)
      leave(found.parent, found.name)
    },
    realpath: async (file) => existing(file, "realpath", true).at,
    readlink: async (file) => {
      const { node } = existing(file, "readlink", false)
      if (node.kind !== "symlink") throw errno("EINVAL", "readlink", file)
      return node.target
    },
    symlink: async (target, file) => void create(file, "symlink", 0o777, { target }),
    lchown: async (file, u, g) => {
      const { node } = existing(file, "lchown", false)
      Object.assign(node, { uid: u, gid: g, ctimeMs: now() })
    },
    writeNew: async (file, data, mode, owner = null) => void create(file, "file", mode, { data, ...(owner ?? {}) }),
    syncDir: async (dir) => {
      const { node } = existing(dir, "open", false)
      if (node.kind !== "dir") throw errno("ENOTDIR", "open", dir)
    },
    copyNew: async (from, to) => {
      const source = openRegular(from, null)
      const owner = uid === 0 ? { uid: source.uid, gid: source.gid } : {}
      create(to, "file", source.mode & 0o777, { data: source.data, ...owner })
    },
    readText: async (file, owner, max = MAX_READ) => {
      try {
        const { data } = openRegular(file, owner)
        if (Buffer.byteLength(data) > max) throw new Untrusted(file, `larger than ${max} bytes`)
        return data
      } catch (e) {
        if ((e as { code?: string }).code === "ENOENT") return null
        throw e
      }
    },
    head: async (file, max, wanted) => {
      // lstat first, and only a regular file `wanted` is opened (files.ts: readHead).
      const { node } = existing(file, "lstat", false)
      const stat = statOf(node)
      if (!wanted(stat) || node.kind !== "file") return { stat, text: null, cut: false }
      const bytes = Buffer.from(node.data)
      return { stat, text: bytes.subarray(0, max).toString(), cut: bytes.length > max }
    },
    readStream: (file) => {
      try {
        return Readable.from([existing(file, "open", true).node.data])
      } catch (e) {
        const failing = new Readable({ read: () => void failing.destroy(e as Error) })
        return failing
      }
    },
    watch: (dir, onName) => {
      const w = { dir: existing(dir, "watch", true).node, changed: onName }
      watchers.push(w)
      return () => void watchers.splice(watchers.indexOf(w), 1)
    },
    // Names here are strings: every one is valid UTF-8.
    escapeNames: async () => []
  }

  // Every call first meets the faults injected for it, by the paths it acts on.
  const TWO_PATHS = new Set(["rename", "link", "copyNew", "symlink"])
  const faulted = (op: keyof Calls, paths: ReadonlyArray<string>) => {
    const fault = faults.find((f) => f.op === op && paths.some(f.on) && (f.times ?? 1) > 0)
    if (fault === undefined) return null
    if (fault.times !== undefined) fault.times--
    return errno(fault.code, op, paths.find(fault.on)!)
  }
  // What was done, in order: the calls that change the filesystem or make it
  // durable, each once it succeeded (a test of the order of a power-cut-safe
  // transition reads it).
  const done: Array<Done> = []
  const CHANGES = new Set(["rename", "link", "unlink", "mkdir", "rmdir", "symlink", "writeNew", "copyNew", "syncDir"])
  const noted = (op: string, file: string, rest: ReadonlyArray<unknown>) => () => {
    if (!CHANGES.has(op)) return
    done.push({ op, paths: TWO_PATHS.has(op) ? [file, String(rest[0])] : [file], durable: op === "syncDir" || op === "copyNew" || (op === "writeNew" && rest[3] === true) })
  }
  const calls = Object.fromEntries(Object.entries(ops).map(([op, call]) => [op, (file: string, ...rest: Array<unknown>) => {
    const e = faulted(op as keyof Calls, TWO_PATHS.has(op) ? [file, String(rest[0])] : [file])
    if (e === null) {
      const result = (call as (...a: Array<unknown>) => unknown)(file, ...rest)
      return result instanceof Promise ? result.then((value) => (noted(op, file, rest)(), value)) : result
    }
    if (op === "readStream" || op === "watch") throw e
    return Promise.reject(e)
  }])) as unknown as Calls

  // What a test does to set the scene and look at the result, synchronously.
  const node = (file: string) => lookup(file, "lstat", false).node
  return {
    calls,
    faults,
    /** The changes made so far, in order (see `done` above). */
    done,
    /** mkdir -p, each new level with MODE (no umask), owned by `owner` (else pmjq). */
    mkdirs: (dir: string, mode = 0o755, owner: { uid?: number; gid?: number } = {}) => {
      let here = "/"
      for (const part of path.resolve("/", dir).split("/").filter((p) => p !== "")) {
        here = path.join(here, part)
        if (node(here) === undefined) create(here, "dir", mode, owner)
      }
    },
    write: (file: string, data: string, mode = 0o644, owner: { uid?: number; gid?: number } = {}) =>
      void create(file, "file", mode, { data, ...owner }),
    fifo: (file: string, mode = 0o644) => void create(file, "fifo", mode),
    /** chmod(1) in place: the same inode, a new mode and ctime. */
    chmod: (file: string, mode: number) => {
      const target = existing(file, "chmod", false).node
      target.mode = mode & 0o7777
      target.ctimeMs = now()
    },
    symlink: (target: string, file: string) => void create(file, "symlink", 0o777, { target }),
    /** Makes the empty folder DIR the root of another filesystem: renames and links across it fail EXDEV. */
    mount: (dir: string) => void (existing(dir, "mount", true).node.dev = ++lastDev),
    exists: (file: string) => node(file) !== undefined,
    read: (file: string) => existing(file, "read", false).node.data,
    stat: (file: string) => statOf(existing(file, "lstat", false).node),
    /** The names in DIR, sorted (none when it does not exist). */
    list: (dir: string) => [...(node(dir)?.entries.keys() ?? [])].sort()
  }
}

export type MemoryFs = ReturnType<typeof makeMemoryFs>
