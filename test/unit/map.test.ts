/**
 * The README's map of the code ("How it works") stays true: every module of
 * src/ is named in it, and every module it names exists.
 */
import { describe, expect, it } from "vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "../..")
const src = path.join(root, "src")

const modules = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? modules(path.join(dir, entry.name)) : entry.name.endsWith(".ts") ? [path.relative(src, path.join(dir, entry.name))] : []
  )

/** The README's "How it works" section, up to the next section of its level or above. */
const map = () => {
  const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
  const start = readme.indexOf("\n## How it works\n")
  expect(start).toBeGreaterThan(0)
  const end = readme.indexOf("\n### The tests\n", start)
  return readme.slice(start, end < 0 ? undefined : end)
}

/** The module paths the map names in backquotes (`spool/Spool.ts`). */
const named = (text: string) => new Set([...text.matchAll(/`([a-zA-Z/]+\.ts)`/g)].map((m) => m[1]!))

describe("the README's map of src/", () => {
  it("names every module of src/", () => {
    const said = named(map())
    expect(modules(src).filter((m) => !said.has(m)).sort()).toEqual([])
  })

  it("names no module that is not there", () => {
    const there = new Set(modules(src))
    expect([...named(map())].filter((m) => !there.has(m) && !m.startsWith("test/") && !m.startsWith("scripts/")).sort()).toEqual([])
  })

  it("src/ itself holds only the entry point and the composition root; the rest is in the folder of its part", () => {
    expect(fs.readdirSync(src).filter((f) => f.endsWith(".ts")).sort()).toEqual(["bin.ts", "daemon.ts"])
  })

  it("every folder of src/ has its part in the map", () => {
    const text = map()
    const folders = fs.readdirSync(src, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)
    expect(folders.filter((f) => !text.includes(`\`${f}/`)).sort()).toEqual([])
  })
})
