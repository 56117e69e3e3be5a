/**
 * A pmjq started without --node-id takes the id of this host's run before it
 * that left its jobs running (spool/succession.ts), on the in-memory
 * filesystem: once, for one process only, and only from pmjq's own folder.
 */
import { describe, expect, it } from "vitest"
import { mayTakeOver, successorId } from "../../src/spool/succession.js"
import { makeMemoryFs } from "../memoryfs.js"

const ME = process.getuid?.() ?? 0
const NODES = "/spool/.pmjq/nodes"
// A pid that surely is no process's.
const GONE = 2 ** 22 + 1

const heartbeat = (node: string, over: Record<string, unknown>) => JSON.stringify({
  node, host: "here", pid: GONE, helpers: [], beatAt: "2026-12-07T10:00:00.000Z", leaseMs: 60_000,
  archiveDir: null, errorDir: null, running: 0, load: 0, protocol: 1, left: true, ...over
})

const spoolWith = (beats: Record<string, Record<string, unknown>>, folderOwner = ME) => {
  const m = makeMemoryFs({ uid: ME, gid: 0 })
  m.mkdirs(NODES, 0o755, { uid: folderOwner })
  for (const [node, over] of Object.entries(beats)) m.write(`${NODES}/${node}`, heartbeat(node, over), 0o644, { uid: ME })
  return m
}

describe("succession", () => {
  it("takes the id of the newest run of this host that left, once: a second start finds none", async () => {
    const m = spoolWith({
      "here-100": { beatAt: "2026-12-07T09:00:00.000Z" },
      "here-200": { beatAt: "2026-12-07T10:00:00.000Z" },
      // Not left, another host's, and an id given by hand: never taken.
      "here-300": { left: false, beatAt: "2026-12-07T11:00:00.000Z" },
      "there-400": { host: "there", beatAt: "2026-12-07T11:00:00.000Z" },
      "builder": { beatAt: "2026-12-07T11:00:00.000Z" }
    })
    expect(await successorId(m.calls, "/spool", "here")).toBe("here-200")
    // The next start takes the one before it; then there is none left.
    expect(await successorId(m.calls, "/spool", "here")).toBe("here-100")
    expect(await successorId(m.calls, "/spool", "here")).toBeNull()
    expect(m.list(NODES).filter((n) => n.startsWith("."))).toEqual([".here-100.successor-of-" + GONE, ".here-200.successor-of-" + GONE])
  })

  it("an id given by hand whose run left: one process takes it over, a second is told no", async () => {
    const m = spoolWith({ builder: {} })
    expect(await mayTakeOver(m.calls, "/spool", "here", "builder")).toBe(true)
    expect(await mayTakeOver(m.calls, "/spool", "here", "builder")).toBe(false)
    // One that did not leave (or never ran) is anyone's to start as.
    expect(await mayTakeOver(m.calls, "/spool", "here", "other")).toBe(true)
  })

  it("a nodes folder that is not pmjq's own, or a heartbeat planted by another user, is never believed", async () => {
    const theirs = spoolWith({ "here-100": {} }, ME + 1)
    expect(await successorId(theirs.calls, "/spool", "here")).toBeNull()
    const m = makeMemoryFs({ uid: ME, gid: 0 })
    m.mkdirs(NODES, 0o755, { uid: ME })
    m.write(`${NODES}/here-100`, heartbeat("here-100", {}), 0o644, { uid: ME + 1 })
    expect(await successorId(m.calls, "/spool", "here")).toBeNull()
    expect(m.list(NODES)).toEqual(["here-100"])
  })
})
