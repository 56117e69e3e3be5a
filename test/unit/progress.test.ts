import { describe, expect, it } from "vitest"
import { progressLine } from "../../src/log/progress.js"

describe("drain progress", () => {
  it("says done/total, running, rate and time left", () => {
    expect(progressLine({ done: 120, failed: 0, running: 8, queued: 372 }, 10_000)).toBe("drain: 120/500 done, 8 running, 12.0 jobs/s, about 32 s left")
    expect(progressLine({ done: 0, failed: 0, running: 2, queued: 5 }, 1_000)).toBe("drain: 0/7 done, 2 running, 0.0 jobs/s")
    expect(progressLine({ done: 10, failed: 0, running: 0, queued: 7190 }, 10_000)).toBe("drain: 10/7200 done, 0 running, 1.0 jobs/s, about 2.0 h left")
  })

  it("keeps the largest total seen: a job being claimed is neither queued nor running for a moment", () => {
    expect(progressLine({ done: 1, failed: 0, running: 0, queued: 10 }, 1_000, 12)).toBe("drain: 1/12 done, 0 running, 1.0 jobs/s, about 11 s left")
  })

  it("counts the jobs that did not succeed as they end", () => {
    expect(progressLine({ done: 41, failed: 3, running: 2, queued: 7 }, 10_000)).toBe("drain: 41/50 done (3 failed), 2 running, 4.1 jobs/s, about 3 s left")
  })
})
