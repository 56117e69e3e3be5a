/** What a global install brings besides the binary: the man page and the systemd unit. */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { run, tempDir } from "./harness.js"

const ROOT = path.resolve(import.meta.dirname, "../..")
const has = (command: string) => cp.spawnSync("sh", ["-c", `command -v ${command}`]).status === 0

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

  it.skipIf(!has("systemd-analyze"))("(needs systemd-analyze, not installed here: skipped) the systemd unit passes systemd-analyze verify", () => {
    const dir = tempDir("unit")
    const unit = path.join(dir, "pmjq@srv-spool.service")
    fs.copyFileSync(path.join(ROOT, "contrib/systemd/pmjq@.service"), unit)
    const verified = cp.spawnSync("systemd-analyze", ["verify", "--man=no", unit], { encoding: "utf8" })
    expect(verified.stderr.trim()).toBe("")
    expect(verified.status).toBe(0)
  })
})
