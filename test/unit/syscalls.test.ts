import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Syscalls } from "../../src/syscalls.js"

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
