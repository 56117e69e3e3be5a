/** Errors said in one line, with the kernel's name even where libuv has none (src/errors/errors.ts). */
import { describe as suite, expect, it } from "vitest"
import { describe, errnoCode } from "../../src/errors/errors.js"

const systemError = (message: string, code: string) => Object.assign(new Error(message), { code })

suite("describe", () => {
  it("names an error as the kernel does, even one libuv does not know (ESTALE from NFS or FUSE)", () => {
    const stale = systemError("Unknown system error -116: Unknown system error -116, scandir", "Unknown system error -116")
    expect(errnoCode(stale)).toBe("ESTALE")
    expect(describe(stale)).toBe("ESTALE (scandir)")
  })

  it("keeps a known error's code and text, without the path", () => {
    const denied = systemError("EACCES: permission denied, open '/etc/shadow'", "EACCES")
    expect(errnoCode(denied)).toBe("EACCES")
    expect(describe(denied)).toBe("EACCES: permission denied")
  })
})
