/**
 * Waiting for outcomes, without vitest: what the tests and the benchmarks
 * (bench/cluster.ts makes its volumes with test/e2e/volumes.ts) share.
 */
import * as cp from "node:child_process"

/** Whether COMMAND is on the PATH. */
export const has = (command: string) => cp.spawnSync("sh", ["-c", `command -v ${command}`]).status === 0

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Waits for CONDITION, failing after TIMEOUT ms. For what takes a moment
 * whatever the machine (a file appearing, a process gone): the budgets given
 * are many times what a loaded machine twice as slow as ours needs. Work whose
 * length grows with the machine's speed waits with `waitWhileProgressing`.
 */
export const waitFor = async (what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await pause(25)
  }
}

/**
 * Waits for DONE for as long as PROGRESS (a count, a size: anything compared
 * with ===) keeps changing: it fails only when PROGRESS stood still for
 * STALL ms. A slow or loaded machine then takes longer, never fails for being
 * slow; a stuck run still fails, saying where it stood and CONTEXT (what the
 * daemons said, say).
 */
export const waitWhileProgressing = async (
  what: string,
  done: () => boolean | Promise<boolean>,
  progress: () => unknown,
  context: () => string = () => "",
  stallMs = 90_000
) => {
  let last = progress()
  let movedAt = Date.now()
  while (!(await done())) {
    const now = progress()
    if (now !== last) {
      last = now
      movedAt = Date.now()
    } else if (Date.now() - movedAt > stallMs) {
      throw new Error(`no progress towards ${what} for ${stallMs / 1000} s (stuck at ${String(now)})\n${context()}`)
    }
    await pause(25)
  }
}
