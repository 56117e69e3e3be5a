/** Creating, reading and copying files in places users can reach (src/filesystem/files.ts, src/filesystem/dirs.ts, src/record/decode.ts). */
import { Either } from "effect"
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { decodeHeartbeat, decodeRecord, isJobName } from "../../src/record/decode.js"
import { mkdirs, ownDirProblem, parentProblem } from "../../src/filesystem/dirs.js"
import { threadedCalls } from "../../src/filesystem/syscalls.js"
import * as files from "../../src/filesystem/files.js"

let dir = ""
let umask = 0
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-files-"))
  umask = process.umask(0o000)
})
afterEach(() => {
  process.umask(umask)
  fs.rmSync(dir, { recursive: true, force: true })
})

const at = (name: string) => path.join(dir, name)
const modeOf = (file: string) => fs.lstatSync(file).mode & 0o7777
const codeOf = (f: () => unknown) => {
  try {
    f()
    return "ok"
  } catch (e) {
    return e instanceof files.Untrusted ? "Untrusted" : (e as NodeJS.ErrnoException).code
  }
}

describe("files", () => {
  it("creates with exactly the mode asked for, whatever the umask, and never through a planted name", () => {
    files.writeNew(at("a"), "x", 0o640, null)
    expect(modeOf(at("a"))).toBe(0o640)
    fs.symlinkSync(at("target"), at("link"))
    expect(codeOf(() => files.writeNew(at("link"), "x", 0o600, null))).toBe("EEXIST")
    expect(fs.existsSync(at("target"))).toBe(false)
    // A stale aside that is a symlink is removed, not written through.
    fs.writeFileSync(at("victim"), "kept")
    fs.symlinkSync(at("victim"), at("rec.json.tmp"))
    files.replaceWhole(at("rec.json"), "{}", 0o600, null)
    expect(fs.readFileSync(at("victim"), "utf8")).toBe("kept")
    expect([fs.readFileSync(at("rec.json"), "utf8"), modeOf(at("rec.json"))]).toEqual(["{}", 0o600])
  })

  it("reads only a regular file, of the owner asked for, without following a symlink or blocking on a FIFO", () => {
    fs.writeFileSync(at("f"), "text")
    const me = process.getuid?.() ?? 0
    expect(files.readRegular(at("f"), me)).toBe("text")
    expect(files.readRegular(at("missing"), me)).toBeNull()
    expect(codeOf(() => files.readRegular(at("f"), me + 1))).toBe("Untrusted")
    fs.symlinkSync(at("f"), at("link"))
    expect(codeOf(() => files.readRegular(at("link")))).toBe("ELOOP")
    cp.execFileSync("mkfifo", [at("fifo")])
    expect(codeOf(() => files.readRegular(at("fifo")))).toBe("Untrusted")
  })

  it("reads at most MAX bytes, whatever the file's size says: a user's file cannot fill root's memory", async () => {
    fs.writeFileSync(at("small"), "x".repeat(10))
    fs.writeFileSync(at("big"), "x".repeat(5000))
    expect(files.readRegular(at("small"), null, 10)).toBe("x".repeat(10))
    expect(codeOf(() => files.readRegular(at("big"), null, 4096))).toBe("Untrusted")
    expect(await files.readRegularAsync(at("small"), null, 10)).toBe("x".repeat(10))
    await expect(files.readRegularAsync(at("big"), null, 4096)).rejects.toBeInstanceOf(files.Untrusted)
    // Longer than its first guess (an empty file, then more than one buffer): read whole.
    fs.writeFileSync(at("grown"), "y".repeat(3000))
    expect(files.readRegular(at("grown"))).toBe("y".repeat(3000))
    expect(await files.readRegularAsync(at("grown"))).toBe("y".repeat(3000))
    // /proc files say they are empty; their text is read all the same.
    expect(files.readRegular("/proc/self/stat")).toMatch(/^\d+ \(/)
  })

  it("a copy keeps no set-id bit, never follows a symlink and never opens a FIFO", async () => {
    fs.writeFileSync(at("suid"), "#!/bin/sh\n")
    fs.chmodSync(at("suid"), 0o4755)
    await files.copyNewAsync(at("suid"), at("copy"))
    expect([modeOf(at("copy")), fs.readFileSync(at("copy"), "utf8")]).toEqual([0o755, "#!/bin/sh\n"])
    fs.symlinkSync("/etc/hostname", at("link"))
    await expect(files.copyNewAsync(at("link"), at("copy2"))).rejects.toMatchObject({ code: "ELOOP" })
    cp.execFileSync("mkfifo", [at("fifo")])
    await expect(files.copyNewAsync(at("fifo"), at("copy3"))).rejects.toBeInstanceOf(files.Untrusted)
    expect(fs.existsSync(at("copy2")) || fs.existsSync(at("copy3"))).toBe(false)
  })

  it.each([
    ["", undefined],
    [", its size kept in step every MiB across holes (what tells an archive sweep the copy is in use)", 1 << 20]
  ])("a sparse file is copied as one: same size and bytes, its holes kept as holes%s", async (_, holeStep) => {
    const fd = fs.openSync(at("sparse"), "w")
    fs.writeSync(fd, "head", 0)
    fs.writeSync(fd, "tail", 1 << 28)
    fs.ftruncateSync(fd, (1 << 28) + (1 << 20) + 5)
    fs.closeSync(fd)
    await files.copyNewAsync(at("sparse"), at("copy"), holeStep)
    const copy = fs.statSync(at("copy"))
    expect(copy.size).toBe((1 << 28) + (1 << 20) + 5)
    expect(copy.blocks * 512).toBeLessThan(1 << 20)
    const cfd = fs.openSync(at("copy"), "r")
    const read = (position: number, length: number) => {
      const bytes = Buffer.alloc(length)
      fs.readSync(cfd, bytes, 0, length, position)
      return bytes
    }
    expect(read(0, 4).toString()).toBe("head")
    expect(read(1 << 28, 4).toString()).toBe("tail")
    expect(read((1 << 28) + (1 << 20), 5).equals(Buffer.alloc(5))).toBe(true)
    fs.closeSync(cfd)
  })

  it("a record is pmjq's; as root, a job of another user's gets it readable by that user's group", () => {
    const me = process.getuid?.() ?? 0
    expect(files.recordKeeping(null)).toEqual({ mode: 0o600, owner: null })
    expect(files.recordKeeping({ uid: me, gid: 5 })).toEqual({ mode: 0o600, owner: null })
    expect(files.recordKeeping({ uid: me + 1, gid: 5 })).toEqual(me === 0 ? { mode: 0o640, owner: { uid: 0, gid: 5 } } : { mode: 0o600, owner: null })
  })
})

describe("dirs", () => {
  it("mkdirs makes every level with the mode asked for", async () => {
    await mkdirs(threadedCalls, at("a/b/c"))
    for (const d of ["a", "a/b", "a/b/c"]) expect([d, modeOf(at(d))]).toEqual([d, 0o755])
  })

  it("StrictModes: pmjq's own folders are its own and closed; folders above may be open only when sticky", () => {
    const stat = (over: Partial<fs.Stats>) => Object.assign(Object.create(fs.Stats.prototype), { mode: 0o40755, uid: 0, ...over }) as fs.Stats
    expect(ownDirProblem(stat({}), 0)).toBeNull()
    expect(ownDirProblem(stat({ uid: 1000 }), 0)).toBe("is owned by uid 1000, not by pmjq (uid 0)")
    expect(ownDirProblem(stat({ mode: 0o40775 }), 0)).toBe("is writable by group or others")
    expect(ownDirProblem(stat({ mode: 0o41777 }), 0)).toBe("is writable by group or others")
    expect(ownDirProblem(stat({ mode: 0o120777 }), 0)).toBe("is a symlink")
    expect(parentProblem(stat({ mode: 0o41777 }), 0)).toBeNull()
    expect(parentProblem(stat({ mode: 0o40777 }), 0)).toBe("is writable by group or others without the sticky bit")
    expect(parentProblem(stat({ uid: 1000 }), 0)).toBe("is owned by uid 1000, neither root nor pmjq (uid 0)")
  })
})

describe("decode", () => {
  const record = {
    name: "job", node: "n", host: "h", pid: 1, user: "u", attempt: 1,
    claimedAt: "2026-01-02T03:04:05.000Z", startedAt: null, endedAt: "2026-01-02T03:04:06.000Z",
    durationMs: 0, outcome: "failed", exitCode: 1, signal: null, reason: "x"
  }

  it("a job name is one path component, never hidden, never a way up", () => {
    for (const good of ["job", "a b", "x.json", "ünï", "x.."]) expect([good, isJobName(good)]).toEqual([good, true])
    for (const bad of ["", ".", "..", ".hidden", "..x", "a/b", "x/../../y", "a\0b", "L".repeat(256)]) expect([bad, isJobName(bad)]).toEqual([bad, false])
  })

  it("records decode, older ones without uid and inode too; forged ones say why in one line", () => {
    expect(decodeRecord(JSON.stringify(record))).toEqual(Either.right({ ...record, uid: null, inode: null }))
    expect(decodeRecord(JSON.stringify({ ...record, name: "../x" }))).toEqual(Either.left("name: a job name must be one path component, not hidden"))
    expect(decodeRecord(JSON.stringify({ ...record, endedAt: "not a date" }))).toEqual(Either.left("endedAt: not a valid ISO 8601 time"))
    expect(decodeRecord(JSON.stringify({ ...record, outcome: "pwned" }))._tag).toBe("Left")
    expect(decodeRecord("{ torn")).toEqual(Either.left("not JSON"))
  })

  it("a record keeps a 64-bit inode number (GlusterFS, XFS), past 2^53: refusing it once made finished jobs run again", () => {
    const gluster = 11419123634471203000
    expect(decodeRecord(JSON.stringify({ ...record, inode: gluster }))).toEqual(Either.right({ ...record, uid: null, inode: gluster }))
    expect(decodeRecord(JSON.stringify({ ...record, inode: -1 }))._tag).toBe("Left")
    expect(decodeRecord(JSON.stringify({ ...record, inode: 1.5 }))._tag).toBe("Left")
  })

  it("heartbeats decode; a bad time or pid is refused", () => {
    const beat = { node: "n", host: "h", pid: 7, helpers: [8], beatAt: "2026-01-02T03:04:05.000Z", leaseMs: 60000 }
    expect(Either.isRight(decodeHeartbeat(JSON.stringify(beat)))).toBe(true)
    expect(Either.isLeft(decodeHeartbeat(JSON.stringify({ ...beat, beatAt: "soon" })))).toBe(true)
    expect(Either.isLeft(decodeHeartbeat(JSON.stringify({ ...beat, pid: -1 })))).toBe(true)
  })
})
