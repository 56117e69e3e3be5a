import * as cp from "node:child_process"
import { describe, expect, it } from "vitest"
import { identify, signalGroupOf, startTicks, stillRuns, thisProcess } from "../../src/process/proc.js"

const exited = (child: cp.ChildProcess) =>
  new Promise<NodeJS.Signals | null>((resolve) => child.once("exit", (_code, signal) => resolve(signal)))

describe("a process known by pid and start time", () => {
  it("is this one only with its own start time", () => {
    expect(thisProcess.startTicks).toBe(startTicks(process.pid))
    expect(stillRuns(thisProcess)).toBe(true)
    expect(stillRuns({ pid: process.pid, startTicks: thisProcess.startTicks! + 1 })).toBe(false)
    expect(stillRuns({ pid: 2 ** 22 + 1, startTicks: 1 })).toBe(false)
  })

  it("without a start time (written before pmjq kept them), a pid that exists may be it", () => {
    expect(stillRuns({ pid: process.pid, startTicks: null })).toBe(true)
    expect(stillRuns({ pid: 2 ** 22 + 1, startTicks: null })).toBe(false)
  })

  it("its group is signalled while it is the very leader, never when another process has its pid", async () => {
    const leader = cp.spawn("sleep", ["600"], { detached: true, stdio: "ignore" })
    const id = identify(leader.pid!)
    try {
      // Another start time: a later process with the same pid. Not signalled.
      expect(signalGroupOf({ pid: id.pid, startTicks: id.startTicks! + 1 }, "SIGKILL")).toBe(false)
      expect(stillRuns(id)).toBe(true)
      expect(signalGroupOf(id, "SIGKILL")).toBe(true)
      expect(await exited(leader)).toBe("SIGKILL")
    } finally {
      leader.kill("SIGKILL")
    }
  })

  it("what is left of a group whose leader is gone is signalled (no process has its pid: the group holds it)", async () => {
    // The leader forks a child into its group, says its pid, and exits.
    const leader = cp.spawn("sh", ["-c", "sleep 600 & echo $!"], { detached: true, stdio: ["ignore", "pipe", "ignore"] })
    const id = identify(leader.pid!)
    const straggler = identify(await new Promise<number>((resolve) => leader.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim())))))
    await exited(leader)
    expect(startTicks(id.pid)).toBeNull()
    expect(stillRuns(straggler)).toBe(true)
    expect(signalGroupOf(id, "SIGKILL")).toBe(true)
    // Killed (a zombie until init reaps it counts as ended).
    for (let i = 0; i < 6000 && stillRuns(straggler); i++) await new Promise((r) => setTimeout(r, 10))
    expect(stillRuns(straggler)).toBe(false)
  })
})
