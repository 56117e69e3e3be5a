import { describe, expect, it } from "vitest"
import { deathOf } from "../../src/recovery.js"
import type { Heartbeat, NodeView } from "../../src/spool/Nodes.js"

const NOW = Date.parse("2026-11-29T12:00:00.000Z")
const LEASE = 60_000
const beat = (over: Partial<Heartbeat>): Heartbeat => ({
  node: "n", host: "here", pid: 10, helpers: [11, 12], beatAt: new Date(NOW - 1_000).toISOString(), leaseMs: LEASE,
  archiveDir: null, errorDir: null, running: 0, load: 0, ...over
})
const view = (heartbeat: Heartbeat | null, over: Partial<NodeView> = {}): NodeView => ({
  node: "n", folder: "/spool/.pmjq/running/n", folderChangedAt: NOW - 1_000, heartbeat, ...over
})
const alive = (pids: Array<number>) => (pid: number) => pids.includes(pid)

describe("when a node is dead", () => {
  it("on this host: as soon as its process and its spawners are all gone", () => {
    expect(deathOf(view(beat({})), NOW, "here", LEASE, alive([10, 11, 12]))).toBeNull()
    // pmjq gone, a spawner still stopping its jobs: not yet.
    expect(deathOf(view(beat({})), NOW, "here", LEASE, alive([12]))).toBeNull()
    expect(deathOf(view(beat({})), NOW, "here", LEASE, alive([]))).toMatch(/process 10 on this host is gone/)
  })

  it("on another host: only once its heartbeat is older than the lease, whatever its pid means here", () => {
    const far = beat({ host: "there" })
    expect(deathOf(view(far), NOW, "here", LEASE, alive([]))).toBeNull()
    const stale = beat({ host: "there", beatAt: new Date(NOW - LEASE - 1).toISOString() })
    expect(deathOf(view(stale), NOW, "here", LEASE, alive([10, 11, 12]))).toMatch(/heartbeat is 60 s old \(lease 60 s\)/)
  })

  it("with no heartbeat: once its folder has not changed for a lease", () => {
    expect(deathOf(view(null), NOW, "here", LEASE, alive([]))).toBeNull()
    expect(deathOf(view(null, { folderChangedAt: NOW - LEASE - 1 }), NOW, "here", LEASE, alive([]))).toMatch(/unchanged/)
  })
})
