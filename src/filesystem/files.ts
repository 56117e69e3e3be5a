/**
 * How pmjq creates, reads and copies files in places users can reach. pmjq
 * often runs as root over folders users write to, so every file it makes is
 * created exclusively (a planted file or symlink makes the call fail, it is
 * never written through), with exactly the mode asked for (the umask plays no
 * part), and every file it reads or copies is opened without following a
 * symlink and without blocking (a FIFO answers at once).
 *
 * The synchronous ones serve the spawner and the direct syscalls (syscalls.ts)
 * on local filesystems, where each is a few microseconds; the async ones the
 * thread pool (network filesystems, and every copy, which may be of any size).
 */
import * as fs from "node:fs"

/** What an lstat tells pmjq: fs.Stats, or the in-memory filesystem's (test/memoryfs.ts). */
export interface Stat {
  readonly isFile: () => boolean
  readonly isDirectory: () => boolean
  readonly isSymbolicLink: () => boolean
  readonly mode: number
  readonly uid: number
  readonly gid: number
  readonly ino: number
  readonly dev: number
  readonly nlink: number
  readonly ctimeMs: number
  readonly mtimeMs: number
}

const { O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_WRONLY } = fs.constants

/** Who a new file belongs to; null: the creator (pmjq), with its default group. */
export interface Ownership {
  readonly uid: number
  readonly gid: number
}

/**
 * What a file is, as lstat saw it (a symlink is not followed): what pmjq
 * checks before it runs a claimed file (owners/refusal.ts).
 */
export interface FileFacts {
  readonly isFile: boolean
  readonly isSymlink: boolean
  readonly mode: number
  readonly uid: number
  readonly gid: number
  readonly nlink: number
  readonly ino: number
}

export const factsOf = (s: Stat): FileFacts => ({
  isFile: s.isFile(),
  isSymlink: s.isSymbolicLink(),
  mode: s.mode,
  uid: s.uid,
  gid: s.gid,
  nlink: s.nlink,
  ino: s.ino
})

/** A job's output: its owner's alone. */
export const PRIVATE = 0o600
/** A record given to its job's owner's group: pmjq owns it, so only pmjq rewrites it. */
export const SHARED_WITH_GROUP = 0o640

/**
 * How a job's record is kept. pmjq owns it, so nobody else can ever rewrite
 * it (status and --wait believe only records pmjq owns); as root, for a job of
 * another user, it is readable by the job's group (OWNER's gid: the owner's
 * primary group), so that the owner's `pmjq submit --wait` can read it.
 */
export const recordKeeping = (owner: Ownership | null): { readonly mode: number; readonly owner: Ownership | null } => {
  const me = process.getuid?.() ?? 0
  return owner === null || me !== 0 || owner.uid === me
    ? { mode: PRIVATE, owner: null }
    : { mode: SHARED_WITH_GROUP, owner: { uid: me, gid: owner.gid } }
}

const unlinkQuietly = (file: string) => {
  try {
    fs.unlinkSync(file)
  } catch {
    // Already gone.
  }
}

/**
 * pmjq's umask, read once (Linux: /proc/self/status); null when it cannot be
 * read. process.umask() without an argument is deprecated, and setting it to
 * read it would race with any other thread creating a file.
 */
let umask: number | null | undefined
const currentUmask = (): number | null => {
  if (umask === undefined) {
    try {
      const line = /^Umask:\s+([0-7]+)$/m.exec(fs.readFileSync("/proc/self/status", "utf8"))
      umask = line === null ? null : parseInt(line[1]!, 8)
    } catch {
      umask = null
    }
  }
  return umask
}

/**
 * Whether a file created with MODE has exactly MODE already, so that no fchmod
 * is made (on a cluster volume each call is a round trip): a mode for its
 * owner alone (0600: a job's output, most records), which the umask leaves
 * whole. A mode with group or other bits is set again: a default ACL on the
 * folder would narrow those (a record the owner's group must read).
 */
const createdExactly = (mode: number) => {
  const mask = currentUmask()
  return (mode & 0o077) === 0 && mask !== null && (mode & 0o777 & mask) === 0
}

/**
 * Creates FILE (O_EXCL|O_NOFOLLOW) with exactly MODE and, when given, OWNER;
 * returns its descriptor, open for writing. EEXIST when anything has the name.
 */
export const createNew = (file: string, mode: number, owner: Ownership | null): number => {
  const fd = fs.openSync(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode & 0o777)
  try {
    if (!createdExactly(mode)) fs.fchmodSync(fd, mode & 0o777)
    if (owner !== null) fs.fchownSync(fd, owner.uid, owner.gid)
    return fd
  } catch (e) {
    fs.closeSync(fd)
    unlinkQuietly(file)
    throw e
  }
}

/**
 * A new FILE holding DATA (see createNew). DURABLE: its bytes are on disk
 * (fdatasync) before it returns, so that a rename publishing it survives a
 * power cut with them (without it, ext4 may keep the name and lose the bytes).
 */
export const writeNew = (file: string, data: string, mode: number, owner: Ownership | null, durable = false): void => {
  const fd = createNew(file, mode, owner)
  try {
    fs.writeSync(fd, data)
    if (durable) fs.fdatasyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * FILE replaced whole: DATA is written to FILE.tmp and renamed over FILE, so a
 * reader sees the old text or the new, never half. A stale FILE.tmp from a
 * crash is removed (never written through), only when it is found there: on a
 * cluster volume each call is a round trip. DURABLE as writeNew.
 */
export const replaceWhole = (file: string, data: string, mode: number, owner: Ownership | null, durable = false): void => {
  const aside = `${file}.tmp`
  try {
    writeNew(aside, data, mode, owner, durable)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
    unlinkQuietly(aside)
    writeNew(aside, data, mode, owner, durable)
  }
  fs.renameSync(aside, file)
}

// Followed if a symlink (an archive dir may be one, owned by root or pmjq):
// O_DIRECTORY fails before anything but a folder is opened, and a sync of a
// folder reads nothing.
const FOLDER_FLAGS = O_RDONLY | O_DIRECTORY
// A folder's sync that the filesystem does not do (some network and FUSE
// filesystems): nothing more can be done for it, and the step goes on.
const NO_FOLDER_SYNC = new Set(["EINVAL", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EBADF"])

/**
 * fsync(2) of the folder DIR: the names made, renamed or removed in it are on
 * disk when it returns. What publishes a file (a rename, a link) survives a
 * power cut only once its folder is synced (Postfix and Maildir do the same).
 */
export const syncFolder = (dir: string): void => {
  const fd = fs.openSync(dir, FOLDER_FLAGS)
  try {
    fs.fsyncSync(fd)
  } catch (e) {
    if (!NO_FOLDER_SYNC.has((e as NodeJS.ErrnoException).code ?? "")) throw e
  } finally {
    fs.closeSync(fd)
  }
}

export const syncFolderAsync = async (dir: string): Promise<void> => {
  const handle = await fs.promises.open(dir, FOLDER_FLAGS)
  try {
    await handle.sync()
  } catch (e) {
    if (!NO_FOLDER_SYNC.has((e as NodeJS.ErrnoException).code ?? "")) throw e
  } finally {
    await handle.close()
  }
}

/** A file opened for reading that is not what was asked for (a symlink, a FIFO, someone else's). */
export class Untrusted extends Error {
  constructor(readonly file: string, readonly why: string) {
    super(`${file}: ${why}`)
  }
}

/**
 * Opens FILE for reading without following a symlink (ELOOP) or waiting on a
 * FIFO; it must be a regular file, and owned by `uid` when one is given.
 * Returns the descriptor and what it is.
 */
const openRegular = (file: string, uid: number | null = null): { readonly fd: number; readonly stat: fs.Stats } => {
  const fd = fs.openSync(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
  try {
    const stat = fs.fstatSync(fd)
    if (!stat.isFile()) throw new Untrusted(file, "not a regular file")
    if (uid !== null && stat.uid !== uid) throw new Untrusted(file, `owned by uid ${stat.uid}, not ${uid}`)
    return { fd, stat }
  } catch (e) {
    fs.closeSync(fd)
    throw e
  }
}

/**
 * The text of FILE, opened as openRegular does; null when there is no such
 * file. Throws Untrusted (or ELOOP for a symlink) for anything else.
 */
/**
 * The most pmjq reads of any file: its own are a few hundred bytes, and one a
 * user grows (a cancel request, a planted record) must not fill root's memory.
 */
export const MAX_READ = 1 << 20

const tooLarge = (file: string, max: number) => new Untrusted(file, `larger than ${max} bytes`)

// A file's text is read until its end or MAX + 1 bytes: it may grow while it
// is read, so its size is a first guess only. Past MAX it is Untrusted.
const firstBuffer = (size: number, max: number): Buffer => Buffer.alloc(Math.min(max, size) + 1)
const roomIn = (file: string, buffer: Buffer, length: number, max: number): Buffer => {
  if (length < buffer.length) return buffer
  if (length > max) throw tooLarge(file, max)
  const larger = Buffer.alloc(Math.min(max + 1, buffer.length * 2))
  buffer.copy(larger)
  return larger
}

const readAtMost = (file: string, fd: number, size: number, max: number) => {
  let buffer = firstBuffer(size, max)
  for (let length = 0;;) {
    buffer = roomIn(file, buffer, length, max)
    const n = fs.readSync(fd, buffer, length, buffer.length - length, null)
    if (n === 0) return buffer.toString("utf8", 0, length)
    length += n
  }
}

const readAtMostAsync = async (file: string, handle: fs.promises.FileHandle, size: number, max: number) => {
  let buffer = firstBuffer(size, max)
  for (let length = 0;;) {
    buffer = roomIn(file, buffer, length, max)
    const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null)
    if (bytesRead === 0) return buffer.toString("utf8", 0, length)
    length += bytesRead
  }
}

export const readRegular = (file: string, uid: number | null = null, max = MAX_READ): string | null => {
  let opened: { readonly fd: number; readonly stat: fs.Stats }
  try {
    opened = openRegular(file, uid)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null
    throw e
  }
  try {
    return readAtMost(file, opened.fd, opened.stat.size, max)
  } finally {
    fs.closeSync(opened.fd)
  }
}

/**
 * The copy of a file with these facts: its permission bits without any set-id
 * bit, and, as root, its owner's (so a copy gives nobody more than the file
 * gave its owner); otherwise pmjq's.
 */
const copyOf = (stat: fs.Stats): { readonly mode: number; readonly owner: Ownership | null } => ({
  mode: stat.mode & 0o777,
  owner: process.getuid?.() === 0 ? { uid: stat.uid, gid: stat.gid } : null
})

// The same on libuv's thread pool, for filesystems where each call is a
// network round trip (NFS, FUSE): see syscalls.ts.

const unlinkQuietlyAsync = (file: string) => fs.promises.unlink(file).catch(() => undefined)

const createNewAsync = async (file: string, mode: number, owner: Ownership | null): Promise<fs.promises.FileHandle> => {
  const handle = await fs.promises.open(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode & 0o777)
  try {
    if (!createdExactly(mode)) await handle.chmod(mode & 0o777)
    if (owner !== null) await handle.chown(owner.uid, owner.gid)
    return handle
  } catch (e) {
    await handle.close()
    await unlinkQuietlyAsync(file)
    throw e
  }
}

export const writeNewAsync = async (file: string, data: string, mode: number, owner: Ownership | null, durable = false): Promise<void> => {
  const handle = await createNewAsync(file, mode, owner)
  try {
    await handle.writeFile(data)
    if (durable) await handle.datasync()
  } finally {
    await handle.close()
  }
}

/**
 * openRegular on the thread pool, the handle left open: the file must be owned
 * by `uid`, or by one of several (a job's output: its owner's, or pmjq's when
 * the job ran as pmjq).
 */
export const openRegularAsync = async (file: string, uid: number | ReadonlyArray<number> | null) => {
  const handle = await fs.promises.open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
  try {
    const stat = await handle.stat()
    const owners = uid === null ? null : typeof uid === "number" ? [uid] : uid
    if (!stat.isFile()) throw new Untrusted(file, "not a regular file")
    if (owners !== null && !owners.includes(stat.uid)) throw new Untrusted(file, `owned by uid ${stat.uid}, not ${[...new Set(owners)].join(" or ")}`)
    return { handle, stat }
  } catch (e) {
    await handle.close()
    throw e
  }
}

export const readRegularAsync = async (file: string, uid: number | null = null, max = MAX_READ): Promise<string | null> => {
  let opened: Awaited<ReturnType<typeof openRegularAsync>>
  try {
    opened = await openRegularAsync(file, uid)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null
    throw e
  }
  try {
    return await readAtMostAsync(file, opened.handle, opened.stat.size, max)
  } finally {
    await opened.handle.close()
  }
}

/** What a file is, and its first bytes when asked for (Calls.head). */
export interface Head {
  readonly stat: Stat
  /** Its first bytes as text; null when not read (not a regular file, not wanted, not readable). */
  readonly text: string | null
  /** Whether the file goes on past those bytes. */
  readonly cut: boolean
}

const HEAD_FLAGS = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | fs.constants.O_NOCTTY
// Swapped for a symlink (ELOOP) or a socket (ENXIO) between the lstat and the
// open, a file pmjq may not read (not as root), or one a user holds a lease
// on (EAGAIN): no head to read, what it is comes from the lstat.
const NOT_OPENED = new Set(["ELOOP", "ENXIO", "EACCES", "EPERM", "EAGAIN", "EWOULDBLOCK"])

// The file opened is the one the lstat saw (not one renamed in between).
const sameFile = (a: Stat, b: Stat) => a.dev === b.dev && a.ino === b.ino

// Read until the size fstat gave (one read, for a file smaller than MAX: on a
// cluster volume each read is a round trip), or MAX + 1 bytes, which tell
// whether the file goes on past MAX.
const bytesOf = (buffer: Buffer, length: number, max: number): Pick<Head, "text" | "cut"> => ({
  text: buffer.toString("utf8", 0, Math.min(length, max)),
  cut: length > max
})

/**
 * What FILE is (lstat), and, when `wanted` says to read it, its first MAX
 * bytes through a descriptor: opened without following a symlink or waiting
 * on a FIFO, and read only if it is the regular file the lstat saw. Nothing
 * else is ever opened (a FIFO, socket or device a user made).
 */
export const readHead = (file: string, max: number, wanted: (stat: Stat) => boolean): Head => {
  const seen = fs.lstatSync(file)
  if (!wanted(seen)) return { stat: seen, text: null, cut: false }
  let fd: number
  try {
    fd = fs.openSync(file, HEAD_FLAGS)
  } catch (e) {
    if (NOT_OPENED.has((e as NodeJS.ErrnoException).code ?? "")) return { stat: seen, text: null, cut: false }
    throw e
  }
  try {
    const stat = fs.fstatSync(fd)
    if (!sameFile(seen, stat) || !stat.isFile()) return { stat: seen, text: null, cut: false }
    const buffer = Buffer.allocUnsafe(Math.min(max, stat.size) + 1)
    let length = 0
    while (length < buffer.length) {
      const n = fs.readSync(fd, buffer, length, buffer.length - length, null)
      length += n
      if (n === 0 || length >= stat.size) break
    }
    return { stat, ...bytesOf(buffer, length, max) }
  } finally {
    fs.closeSync(fd)
  }
}

export const readHeadAsync = async (file: string, max: number, wanted: (stat: Stat) => boolean): Promise<Head> => {
  const seen = await fs.promises.lstat(file)
  if (!wanted(seen)) return { stat: seen, text: null, cut: false }
  let handle: fs.promises.FileHandle
  try {
    handle = await fs.promises.open(file, HEAD_FLAGS)
  } catch (e) {
    if (NOT_OPENED.has((e as NodeJS.ErrnoException).code ?? "")) return { stat: seen, text: null, cut: false }
    throw e
  }
  try {
    const stat = await handle.stat()
    if (!sameFile(seen, stat) || !stat.isFile()) return { stat: seen, text: null, cut: false }
    const buffer = Buffer.allocUnsafe(Math.min(max, stat.size) + 1)
    let length = 0
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null)
      length += bytesRead
      if (bytesRead === 0 || length >= stat.size) break
    }
    return { stat, ...bytesOf(buffer, length, max) }
  } finally {
    await handle.close()
  }
}

const ZEROS = Buffer.alloc(1 << 16)
const HOLE_STEP = 1 << 30

/**
 * Copies the regular file FROM to a new file TO (created as createNew does,
 * with copyOf's mode and owner). A symlink, FIFO or device is never opened for
 * its content: ELOOP or Untrusted. Always on the thread pool, and blocks of
 * zeros are left as holes: a job can make its output a sparse file of any
 * size (truncate -s 100G), which must cost neither pmjq's event loop nor the
 * archive's disk.
 */
export const copyNewAsync = async (from: string, to: string, holeStep = HOLE_STEP): Promise<void> => {
  const source = await openRegularAsync(from, null)
  try {
    const { mode, owner } = copyOf(source.stat)
    const target = await createNewAsync(to, mode, owner)
    try {
      const buffer = Buffer.allocUnsafe(ZEROS.length)
      let position = 0
      let holeSince = 0
      for (;;) {
        const { bytesRead } = await source.handle.read(buffer, 0, buffer.length, null)
        if (bytesRead === 0) break
        if (buffer.compare(ZEROS, 0, bytesRead, 0, bytesRead) !== 0) {
          let written = 0
          while (written < bytesRead) written += (await target.write(buffer, written, bytesRead - written, position + written)).bytesWritten
          holeSince = position + bytesRead
        } else if (position + bytesRead - holeSince >= holeStep) {
          // The size kept in step across a long hole: it sets the copy's
          // ctime, which tells an archive sweep the copy is in use (Archive.ts).
          await target.truncate(position + bytesRead)
          holeSince = position + bytesRead
        }
        position += bytesRead
      }
      await target.truncate(position)
      // A copy is what the archive keeps once the job's own files are
      // removed: on disk before it is linked in (see syncFolder).
      await target.datasync()
    } catch (e) {
      await target.close()
      await unlinkQuietlyAsync(to)
      throw e
    }
    await target.close()
  } finally {
    await source.handle.close()
  }
}
