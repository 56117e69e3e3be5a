/**
 * The in-memory filesystem (test/memoryfs.ts) against the kernel: each
 * semantic pmjq relies on is checked on both, so a test on memory proves
 * something about the real thing.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Untrusted } from "../../src/filesystem/files.js"
import { type Calls, directCalls } from "../../src/filesystem/syscalls.js"
import { makeMemoryFs } from "../memoryfs.js"

interface World {
  readonly calls: Calls
  readonly base: string
  readonly file: (name: string, data?: string, mode?: number) => void
  readonly dir: (name: string) => void
  readonly symlink: (target: string, name: string) => void
  readonly fifo: (name: string) => void
}

const roots: Array<string> = []
afterAll(() => roots.forEach((r) => fs.rmSync(r, { recursive: true, force: true })))

let clock = 1_000
const memory = (): World => {
  const m = makeMemoryFs({ now: () => clock })
  const base = "/w"
  m.mkdirs(base)
  return {
    calls: m.calls, base,
    file: (name, data = "", mode = 0o644) => m.write(path.join(base, name), data, mode),
    dir: (name) => m.mkdirs(path.join(base, name)),
    symlink: (target, name) => m.symlink(target, path.join(base, name)),
    fifo: (name) => m.fifo(path.join(base, name))
  }
}
const kernel = (): World => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-memoryfs-"))
  roots.push(base)
  return {
    calls: directCalls, base,
    file: (name, data = "", mode = 0o644) => fs.writeFileSync(path.join(base, name), data, { mode }),
    dir: (name) => fs.mkdirSync(path.join(base, name), { recursive: true }),
    symlink: (target, name) => fs.symlinkSync(target, path.join(base, name)),
    fifo: (name) => void cp.execFileSync("mkfifo", [path.join(base, name)])
  }
}

const code = (p: Promise<unknown>) => p.then(() => "ok", (e: unknown) => (e instanceof Untrusted ? "Untrusted" : (e as NodeJS.ErrnoException).code))
const me = process.getuid?.() ?? 0

describe.each([["memory", memory], ["kernel", kernel]] as const)("%s filesystem", (_, make) => {
  it("rename replaces a file, keeps the inode, and fails as the kernel does", async () => {
    const w = make()
    const at = (n: string) => path.join(w.base, n)
    w.file("a", "A")
    w.file("b", "B")
    const ino = (await w.calls.lstat(at("a"))).ino
    await w.calls.rename(at("a"), at("b"))
    expect((await w.calls.lstat(at("b"))).ino).toBe(ino)
    expect(await w.calls.readText(at("b"), me)).toBe("A")
    expect(await code(w.calls.lstat(at("a")))).toBe("ENOENT")
    expect(await code(w.calls.rename(at("a"), at("c")))).toBe("ENOENT")
    expect(await code(w.calls.rename(at("b"), at("none/c")))).toBe("ENOENT")
    w.dir("d/inner")
    w.dir("e")
    w.dir("f")
    expect(await code(w.calls.rename(at("b"), at("b/c")))).toBe("ENOTDIR")
    expect(await code(w.calls.rename(at("d"), at("b")))).toBe("ENOTDIR")
    expect(await code(w.calls.rename(at("b"), at("e")))).toBe("EISDIR")
    expect(await code(w.calls.rename(at("e"), at("d")))).toBe("ENOTEMPTY")
    // A folder replaces an empty one.
    await w.calls.rename(at("d"), at("f"))
    expect(await w.calls.readdir(at("f"))).toEqual(["inner"])
  })

  it("exclusive creation fails EEXIST on any name, a dangling symlink included, and sets the mode exactly", async () => {
    const w = make()
    const at = (n: string) => path.join(w.base, n)
    w.symlink(at("nowhere"), "dangling")
    expect(await code(w.calls.writeNew(at("dangling"), "x", 0o600))).toBe("EEXIST")
    expect(await code(w.calls.lstat(at("nowhere")))).toBe("ENOENT")
    await w.calls.writeNew(at("new"), "x", 0o640)
    expect((await w.calls.lstat(at("new"))).mode & 0o7777).toBe(0o640)
    expect(await code(w.calls.writeNew(at("new"), "y", 0o600))).toBe("EEXIST")
    expect(await code(w.calls.copyNew(at("new"), at("new")))).toBe("EEXIST")
    expect(await code(w.calls.symlink("x", at("new")))).toBe("EEXIST")
    expect(await code(w.calls.mkdir(at("dangling"), 0o755))).toBe("EEXIST")
  })

  it("reads never follow a symlink (ELOOP) nor open a FIFO or another's file", async () => {
    const w = make()
    const at = (n: string) => path.join(w.base, n)
    w.file("real", "text")
    w.symlink(at("real"), "link")
    w.fifo("pipe")
    expect(await w.calls.readText(at("real"), me)).toBe("text")
    expect(await w.calls.readText(at("missing"), me)).toBeNull()
    expect(await w.calls.readText(at("missing/deeper"), me)).toBeNull()
    expect(await code(w.calls.readText(at("link"), me))).toBe("ELOOP")
    expect(await code(w.calls.readText(at("pipe"), me))).toBe("Untrusted")
    expect(await code(w.calls.readText(at("real"), me + 1))).toBe("Untrusted")
    expect(await code(w.calls.copyNew(at("link"), at("copy")))).toBe("ELOOP")
    expect(await code(w.calls.copyNew(at("pipe"), at("copy")))).toBe("Untrusted")
    expect((await w.calls.lstat(at("link"))).isSymbolicLink()).toBe(true)
    expect((await w.calls.stat(at("link"))).isFile()).toBe(true)
    expect(await w.calls.readlink(at("link"))).toBe(at("real"))
    expect(await code(w.calls.readlink(at("real")))).toBe("EINVAL")
  })

  it("hard links share an inode and count it; link never replaces", async () => {
    const w = make()
    const at = (n: string) => path.join(w.base, n)
    w.file("a", "A")
    await w.calls.link(at("a"), at("b"))
    const [a, b] = [await w.calls.lstat(at("a")), await w.calls.lstat(at("b"))]
    expect([a.ino, a.nlink]).toEqual([b.ino, 2])
    w.file("c")
    expect(await code(w.calls.link(at("a"), at("c")))).toBe("EEXIST")
    await w.calls.unlink(at("a"))
    expect((await w.calls.lstat(at("b"))).nlink).toBe(1)
    w.dir("d")
    expect(await code(w.calls.unlink(at("d")))).toBe("EISDIR")
    expect(await code(w.calls.link(at("d"), at("e")))).toBe("EPERM")
  })

  it("folders: mkdir through the umask, chmod through a descriptor, rmdir only when empty", async () => {
    const w = make()
    const at = (n: string) => path.join(w.base, n)
    const mask = process.umask()
    await w.calls.mkdir(at("d"), 0o777)
    if (w.calls !== directCalls || mask === 0o022) expect((await w.calls.lstat(at("d"))).mode & 0o777).toBe(0o755)
    await w.calls.chmodDir(at("d"), 0o700)
    expect((await w.calls.lstat(at("d"))).mode & 0o777).toBe(0o700)
    w.symlink(at("d"), "s")
    expect(await code(w.calls.chmodDir(at("s"), 0o755))).toBe("ENOTDIR")
    expect(await w.calls.realpath(at("s"))).toBe(await w.calls.realpath(at("d")))
    // A symlink in the middle of a path is followed.
    w.file("d/f", "in d")
    expect(await w.calls.readText(at("s/f"), me)).toBe("in d")
    expect(await code(w.calls.rmdir(at("d")))).toBe("ENOTEMPTY")
    expect(await code(w.calls.mkdir(at("none/d"), 0o755))).toBe("ENOENT")
    expect((await w.calls.entries(w.base)).map((e) => [e.name, e.isDirectory]).sort()).toEqual([["d", true], ["s", false]])
    await w.calls.unlink(at("d/f"))
    await w.calls.rmdir(at("d"))
    expect(await code(w.calls.readdir(at("d")))).toBe("ENOENT")
  })
})

describe("memory filesystem only", () => {
  it("a rename sets the moved file's ctime and its folders' mtime; renames and links across mounts fail EXDEV, copies work", async () => {
    const m = makeMemoryFs({ now: () => clock, uid: 0 })
    m.mkdirs("/a")
    m.mkdirs("/b")
    m.mount("/b")
    m.write("/a/f", "F", 0o4755, { uid: 1000, gid: 100 })
    clock = 5_000
    await m.calls.rename("/a/f", "/a/g")
    expect([m.stat("/a/g").ctimeMs, m.stat("/a").mtimeMs]).toEqual([5_000, 5_000])
    expect(await code(m.calls.rename("/a/g", "/b/g"))).toBe("EXDEV")
    expect(await code(m.calls.link("/a/g", "/b/g"))).toBe("EXDEV")
    await m.calls.copyNew("/a/g", "/b/g")
    // No set-id bit, and as root, the owner's.
    expect([m.read("/b/g"), m.stat("/b/g").mode & 0o7777, m.stat("/b/g").uid]).toEqual(["F", 0o755, 1000])
  })

  it("lists in no sorted order, and injects faults", async () => {
    const m = makeMemoryFs()
    for (const n of ["a", "b", "c"]) m.write(`/${n}`, n)
    expect(await m.calls.readdir("/")).not.toEqual(["a", "b", "c"])
    m.faults.push({ op: "rename", on: (f) => f === "/a", code: "ENOSPC", times: 1 })
    expect(await code(m.calls.rename("/a", "/z"))).toBe("ENOSPC")
    await m.calls.rename("/a", "/z")
    expect(m.list("/")).toEqual(["b", "c", "z"])
  })
})
