import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { groupCommit, Syscalls } from "../../src/filesystem/syscalls.js"

const chosen = (dirs: ReadonlyArray<string>) => Effect.provide(Syscalls, Syscalls.forDirectories(dirs))
const direct = Effect.provide(Syscalls, Syscalls.Direct)
const threaded = Effect.provide(Syscalls, Syscalls.Threaded)

describe("choice of filesystem calls", () => {
  it.effect("direct when every directory is on a local filesystem (tmpfs)", () =>
    Effect.gen(function*() {
      expect(yield* chosen(["/dev/shm", "/dev/shm"])).toBe(yield* direct)
    }))

  it.effect("threaded as soon as one directory is on an unknown filesystem, or unreadable", () =>
    Effect.gen(function*() {
      expect(yield* chosen(["/dev/shm", "/proc"])).toBe(yield* threaded)
      expect(yield* chosen(["/dev/shm", "/no/such/dir"])).toBe(yield* threaded)
    }))

  it.effect.each([["direct", direct], ["threaded", threaded]] as const)("%s: exclusive creation refuses to replace", ([, calls]) =>
    Effect.gen(function*() {
      const c = yield* calls
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-calls-"))
      const a = path.join(dir, "a")
      yield* Effect.promise(() => c.writeNew(a, "first", 0o600))
      const again = yield* Effect.promise(() => c.writeNew(a, "second", 0o600).then(() => "written", (e: NodeJS.ErrnoException) => e.code))
      const copied = yield* Effect.promise(() => c.copyNew(path.join(dir, "a"), a).then(() => "copied", (e: NodeJS.ErrnoException) => e.code))
      expect([again, copied]).toEqual(["EEXIST", "EEXIST"])
      expect(fs.readFileSync(a, "utf8")).toBe("first")
      fs.rmSync(dir, { recursive: true })
    }))
})

describe("folder syncs shared (a group commit)", () => {
  /** A sync that returns only when the test says, counting each start by folder. */
  const held = () => {
    const started: Array<string> = []
    const finish: Array<() => void> = []
    const sync = (dir: string) => new Promise<void>((resolve) => {
      started.push(dir)
      finish.push(resolve)
    })
    return { started, sync, finishNext: () => finish.shift()!() }
  }
  const tick = () => new Promise((r) => setImmediate(r))

  it("calls made while a sync runs wait for one more, shared by all of them; another folder syncs on its own", async () => {
    const h = held()
    const syncDir = groupCommit(h.sync)
    const ended: Array<string> = []
    const call = (dir: string, label: string) => void syncDir(dir).then(() => ended.push(label))
    call("/a", "first")
    call("/a", "second")
    call("/a", "third")
    call("/b", "other")
    await tick()
    // One sync of /a runs; the two calls after it wait for the next, which has not started.
    expect(h.started).toEqual(["/a", "/b"])
    h.finishNext()
    await tick()
    expect(ended).toEqual(["first"])
    expect(h.started).toEqual(["/a", "/b", "/a"])
    call("/a", "fourth")
    h.finishNext() // /b
    h.finishNext() // the second /a: the second and third calls' changes are on disk
    await tick()
    expect(ended).toEqual(["first", "other", "second", "third"])
    // The fourth came while the second sync ran: it gets a third.
    expect(h.started).toEqual(["/a", "/b", "/a", "/a"])
    h.finishNext()
    await tick()
    expect(ended).toEqual(["first", "other", "second", "third", "fourth"])
  })

  it("a failed sync fails its own calls only; the next ones get a sync of their own", async () => {
    const started: Array<string> = []
    let fail = true
    const syncDir = groupCommit(async (dir) => {
      started.push(dir)
      if (fail) throw new Error("EIO")
    })
    await expect(syncDir("/a")).rejects.toThrow("EIO")
    fail = false
    await expect(syncDir("/a")).resolves.toBeUndefined()
    expect(started).toEqual(["/a", "/a"])
  })
})

describe("a folder's sync", () => {
  it.effect.each([["direct", direct], ["threaded", threaded]] as const)("%s: through a symlink to a folder (an archive dir may be one); never opens what is not a folder", ([, calls]) =>
    Effect.gen(function*() {
      const c = yield* calls
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-sync-"))
      fs.mkdirSync(path.join(dir, "real"))
      fs.symlinkSync(path.join(dir, "real"), path.join(dir, "link"))
      fs.writeFileSync(path.join(dir, "file"), "")
      fs.symlinkSync(path.join(dir, "file"), path.join(dir, "to-file"))
      const outcome = (target: string) => Effect.promise(() => c.syncDir(path.join(dir, target)).then(() => "synced", (e: NodeJS.ErrnoException) => e.code))
      expect(yield* outcome("real")).toBe("synced")
      expect(yield* outcome("link")).toBe("synced")
      expect(yield* outcome("to-file")).toBe("ENOTDIR")
      expect(yield* outcome("gone")).toBe("ENOENT")
      fs.rmSync(dir, { recursive: true })
    }))
})
