/** What a global install brings besides the binary: the man page and the systemd unit. */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { BIN, has, run, runsHere, tempDir, waitFor, workspace } from "./harness.js"

const ROOT = path.resolve(import.meta.dirname, "../..")
const canVerify = runsHere("the systemd unit verified", has("systemd-analyze") ? null : "needs systemd-analyze (Debian package systemd, which .ci/run installs)")

describe("packaging", () => {
  it("the man page is built, listed in package.json, and documents every option --help shows", async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"))
    expect(pkg.man).toEqual(["dist/pmjq.1"])
    const roff = fs.readFileSync(path.join(ROOT, "dist/pmjq.1"), "utf8")
    expect(roff).toMatch(/^\.TH "PMJQ" "1"/)
    const help = (await run(["--help"], ROOT)).stdout.replace(/\x1b\[[0-9;]*m/g, "")
    const options = [...new Set(help.match(/--[a-z][a-z-]+/g))]
    expect(options.length).toBeGreaterThan(15)
    const source = fs.readFileSync(path.join(ROOT, "doc/pmjq.1.md"), "utf8")
    expect(options.filter((o) => !source.includes(`\`${o}\``))).toEqual([])
    for (const section of ["SYNOPSIS", "OPTIONS", "FILES", "OUTCOMES", "EXIT STATUS"]) expect(roff).toMatch(new RegExp(`^\\.SH "?${section}"?$`, "m"))
    if (has("man")) {
      const page = cp.spawnSync("man", ["-l", path.join(ROOT, "dist/pmjq.1")], { encoding: "utf8", env: { ...process.env, MANWIDTH: "80" } })
      expect(page.status).toBe(0)
      expect(page.stdout).toContain("--run-as-owner")
    }
  })

  it.runIf(canVerify)("(needs systemd-analyze) the systemd unit passes systemd-analyze verify", () => {
    const dir = tempDir("unit")
    const unit = path.join(dir, "pmjq@srv-spool.service")
    fs.copyFileSync(path.join(ROOT, "contrib/systemd/pmjq@.service"), unit)
    const verified = cp.spawnSync("systemd-analyze", ["verify", "--man=no", unit], { encoding: "utf8" })
    expect(verified.stderr.trim()).toBe("")
    expect(verified.status).toBe(0)
  })

  it("run by its #! line, pmjq itself has one malloc arena, and its jobs the environment it was started with", async () => {
    const environOf = (pid: number) => fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")
    for (const given of [undefined, "3"]) {
      const t = workspace("arena")
      fs.writeFileSync(path.join(t.spool, "env"), '#!/bin/sh\necho "${MALLOC_ARENA_MAX-unset} ${PMJQ_SAVED_MALLOC_ARENA_MAX-unset}"\n', { mode: 0o755 })
      const env = { ...process.env }
      delete env.MALLOC_ARENA_MAX
      if (given !== undefined) env.MALLOC_ARENA_MAX = given
      // Executed, not `node bin.js`: the #! line is what is tested.
      const daemon = cp.spawn(BIN, ["-o", t.archive, t.spool], { env, stdio: "ignore" })
      await waitFor("the job's output", () => fs.existsSync(t.archive) && fs.readdirSync(t.archive).some((f) => f.endsWith("_env.out")))
      expect(environOf(daemon.pid!)).toContain("MALLOC_ARENA_MAX=1")
      const out = fs.readdirSync(t.archive).find((f) => f.endsWith("_env.out"))!
      expect(fs.readFileSync(path.join(t.archive, out), "utf8")).toBe(`${given ?? "unset"} unset\n`)
      daemon.kill("SIGTERM")
      await new Promise((r) => daemon.once("close", r))
    }
  })
})
