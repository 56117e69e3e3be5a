/** What a global install brings besides the binary: the man page and the systemd unit. */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { BIN, has, run, runsHere, tempDir, waitFor, workspace } from "./harness.js"

const ROOT = path.resolve(import.meta.dirname, "../..")
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
const canVerify = runsHere("the systemd unit verified", has("systemd-analyze") ? null : "needs systemd-analyze (Debian package systemd, which .ci/run installs)")

describe("packaging", () => {
  it("the man page is one source in man(7) macros, built with the version, in its sections, and documents every option --help shows", async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"))
    expect(pkg.man).toEqual(["dist/pmjq.1"])
    expect(pkg.devDependencies?.["marked-man"]).toBeUndefined()
    expect(fs.existsSync(path.join(ROOT, "doc/pmjq.1.md"))).toBe(false)
    const source = fs.readFileSync(path.join(ROOT, "doc/pmjq.1"), "utf8")
    const roff = fs.readFileSync(path.join(ROOT, "dist/pmjq.1"), "utf8")
    // scripts/build.mjs changes nothing but the version.
    expect(roff).toBe(source.replaceAll("@VERSION@", pkg.version))
    expect(roff).toMatch(new RegExp(`^\\.TH PMJQ 1 \\d{4}-\\d{2}-\\d{2} "pmjq ${escape(pkg.version)}" "User Commands"$`, "m"))
    expect(source).not.toMatch(/`|\*\*|^#+ /m)

    const lines = source.split("\n")
    expect(lines.flatMap((line) => /^\.SH "?([^"]*)"?$/.exec(line)?.[1] ?? [])).toEqual([
      "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES", "SECURITY", "EXAMPLES", "SEE ALSO"
    ])
    // The lines of a section (.SH) or subsection (.SS), up to the next one.
    const part = (title: string, macro: "SH" | "SS" = "SH") => {
      const start = lines.findIndex((line) => line === `.${macro} ${title}` || line === `.${macro} "${title}"`)
      expect(start, `${macro} ${title}`).toBeGreaterThanOrEqual(0)
      const end = lines.findIndex((line, i) => i > start && (line.startsWith(".SH") || (macro === "SS" && line.startsWith(".SS"))))
      return lines.slice(start + 1, end < 0 ? undefined : end)
    }
    // A .TP paragraph's tag is the line after the .TP.
    const tags = (lines: ReadonlyArray<string>) => lines.flatMap((line, i) => (line === ".TP" && i + 1 < lines.length ? [lines[i + 1]!] : []))
    // An option as roff writes it (\-\-wait), not a part of a longer one (\-\-wait\-for).
    const taggedIn = (lines: ReadonlyArray<string>) => (option: string) =>
      tags(lines).some((tag) => new RegExp(`${escape(option.replace(/-/g, "\\-"))}(?![A-Za-z0-9]|\\\\-[a-z])`).test(tag))

    const synopsis = part("SYNOPSIS")
    for (const line of [".B pmjq", ".B pmjq submit", ".B pmjq status", ".B pmjq cancel", ".B pmjq retry", ".B pmjq log"]) expect(synopsis).toContain(line)
    expect(synopsis.filter((line) => /^\.(I|IR|RI) job\\-spool/.test(line)).length).toBeGreaterThanOrEqual(6)

    // Every option each --help shows, as a .TP paragraph: the daemon's (and
    // the ones every command has) in OPTIONS, a command's own in its
    // subsection of COMMANDS.
    const helpOf = async (args: ReadonlyArray<string>) => {
      const shown = await run([...args, "--help"], ROOT)
      expect(shown.code).toBe(0)
      const text = shown.stdout.replace(/\x1b\[[0-9;]*m/g, "")
      return new Set([...text.match(/--[a-z][a-z-]*[a-z]/g) ?? [], ...[...text.matchAll(/^\s*(-[A-Za-z]),\s+--/gm)].map((m) => m[1]!)])
    }
    const commands = ["submit", "status", "cancel", "retry", "log", "pause"] as const
    const top = await helpOf([])
    const each = await Promise.all(commands.map((command) => helpOf([command])))
    const everywhere = [...each[0]!].filter((option) => each.every((shown) => shown.has(option)))
    const own = each.map((shown) => [...shown].filter((option) => !everywhere.includes(option)))
    const daemon = [...top].filter((option) => !own.flat().includes(option))
    expect(daemon.length).toBeGreaterThan(25)
    expect(daemon.filter((option) => !taggedIn(part("OPTIONS"))(option))).toEqual([])
    commands.forEach((command, i) => {
      expect(own[i]!.length, command).toBeGreaterThan(0)
      expect(own[i]!.filter((option) => !taggedIn(part(`pmjq ${command}`, "SS"))(option)), command).toEqual([])
    })

    // Exit statuses as .TP paragraphs, in numeric order.
    const statuses = tags(part("EXIT STATUS")).map((tag) => Number(/^\.B (\d+)$/.exec(tag)?.[1]))
    expect(statuses).toEqual([0, 1, 64, 65, 66, 69, 70, 73, 75, 77])

    const seeAlso = part("SEE ALSO").join("\n")
    for (const page of ["batch(1)", "tsp(1)", "parallel(1)", "nq(1)", "sbatch(1)", "systemd.exec(5)", "setpriv(1)", "systemd.service(5)"]) {
      const [name, section] = page.split(/[()]/)
      expect(seeAlso).toMatch(new RegExp(`^\\.BR ${escape(name!.replace(/-/g, "\\-"))} \\(${section}\\)`, "m"))
    }

    const page = path.join(ROOT, "dist/pmjq.1")
    if (has("man")) {
      const shown = cp.spawnSync("man", ["--warnings", "-l", page], { encoding: "utf8", env: { ...process.env, MANWIDTH: "80" } })
      expect(shown.stderr).toBe("")
      expect(shown.status).toBe(0)
      // Every option whole somewhere in the page as read (never hyphenated away).
      expect(daemon.filter((option) => !shown.stdout.includes(option))).toEqual([])
    }
    if (has("groff")) {
      const checked = cp.spawnSync("groff", ["-man", "-ww", "-z", page], { encoding: "utf8" })
      expect(checked.stderr).toBe("")
      expect(checked.status).toBe(0)
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
