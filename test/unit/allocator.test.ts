/** pmjq's malloc setting is its own: the environment its jobs get is the one it was started with (src/process/allocator.ts). */
import { describe, expect, it } from "vitest"
import { asStartedByShebang, restoreEnvironment } from "../../src/process/allocator.js"

describe("allocator", () => {
  it("puts back the caller's MALLOC_ARENA_MAX, or none, after the #! line set its own", () => {
    const unset: NodeJS.ProcessEnv = { PATH: "/bin", MALLOC_ARENA_MAX: "1", PMJQ_SAVED_MALLOC_ARENA_MAX: "" }
    restoreEnvironment(unset)
    expect(unset).toEqual({ PATH: "/bin" })
    const given: NodeJS.ProcessEnv = { MALLOC_ARENA_MAX: "1", PMJQ_SAVED_MALLOC_ARENA_MAX: "4" }
    restoreEnvironment(given)
    expect(given).toEqual({ MALLOC_ARENA_MAX: "4" })
  })

  it("leaves the environment alone when pmjq was not started by its #! line", () => {
    const env: NodeJS.ProcessEnv = { MALLOC_ARENA_MAX: "2" }
    restoreEnvironment(env)
    expect(env).toEqual({ MALLOC_ARENA_MAX: "2" })
  })

  it("starts pmjq again as its #! line would, and that round-trips", () => {
    const env: NodeJS.ProcessEnv = { MALLOC_ARENA_MAX: "4", HOME: "/root" }
    const again = asStartedByShebang(env)
    expect(again).toEqual({ MALLOC_ARENA_MAX: "1", PMJQ_SAVED_MALLOC_ARENA_MAX: "4", HOME: "/root" })
    restoreEnvironment(again)
    expect(again).toEqual(env)
  })
})
