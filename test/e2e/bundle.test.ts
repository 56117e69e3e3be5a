/**
 * The spawner (src/spawner/) is a separate process that forks every job: it
 * must stay small and start fast, so its bundle holds pmjq's own modules only,
 * none of Effect's or any other package's.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { BIN } from "./harness.js"

describe("the spawner's bundle", () => {
  it("holds only pmjq's own modules: no Effect, no package", () => {
    const text = fs.readFileSync(path.join(path.dirname(BIN), "spawner.js"), "utf8")
    // esbuild heads each module it bundles with a comment naming its file.
    const modules = [...text.matchAll(/^\/\/ (\S+\.[cm]?[jt]s)$/gm)].map((m) => m[1]!)
    expect(modules).toContain("src/spawner/spawner.ts")
    expect(modules.filter((m) => !m.startsWith("src/"))).toEqual([])
    expect(text).not.toMatch(/from ["'](effect|@effect\/[\w-]+)["']|require\(["'](effect|@effect\/[\w-]+)["']\)/)
    // The daemon's bundle, by contrast, is Effect through and through: the check can fail.
    const daemon = [path.join(path.dirname(BIN), "bin.js"), ...fs.readdirSync(path.join(path.dirname(BIN), "chunks")).map((c) => path.join(path.dirname(BIN), "chunks", c))]
    expect(daemon.some((file) => /^\/\/ node_modules\/effect\//m.test(fs.readFileSync(file, "utf8")))).toBe(true)
  })
})
