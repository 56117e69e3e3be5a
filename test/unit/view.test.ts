/** `pmjq status`'s view of a real spool folder (src/spool/view.ts). */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { besideClaim, runningDir } from "../../src/spool/layout.js"
import { viewSpool } from "../../src/spool/view.js"
import { Syscalls } from "../../src/syscalls.js"

describe("viewSpool", () => {
  it.effect("a claimed job is ended once its record is beside it, also under a name too long for .NAME.json", () =>
    Effect.gen(function*() {
      const spool = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-view-"))
      const folder = runningDir(spool, "n1")
      fs.mkdirSync(folder, { recursive: true, mode: 0o755 })
      const long = "l".repeat(250)
      for (const name of ["short-ended", "short-running", long, "x".repeat(250)]) {
        fs.writeFileSync(path.join(folder, name), "#!/bin/sh\n", { mode: 0o755 })
      }
      // Where the spawner writes a record: for a long name, cut and hashed.
      for (const name of ["short-ended", long]) fs.writeFileSync(besideClaim(path.join(folder, name), ".json"), "{}\n")
      const view = yield* viewSpool(spool).pipe(Effect.provide(Syscalls.Direct))
      const states = Object.fromEntries(view.running.map((r) => [r.name, r.state]))
      expect(states).toEqual({ "short-ended": "ended", "short-running": "running", [long]: "ended", ["x".repeat(250)]: "running" })
      fs.rmSync(spool, { recursive: true })
    }))
})
