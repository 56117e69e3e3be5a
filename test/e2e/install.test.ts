/**
 * Installing pmjq as a user or an administrator would (issue #20): the npm
 * tarball into a prefix of its own, offline, and the .deb with dpkg. Both
 * are packed from the dist/ `npm test` has just built: the test never
 * rebuilds it (`npm pack --ignore-scripts`, `node scripts/deb.mjs`), as the
 * other test files run from it at the same time.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { has, runsHere, submit, tempDir, waitFor, watched, workspace } from "./harness.js"

const ROOT = path.resolve(import.meta.dirname, "../..")
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"))
const MAX_INSTALLED_KIB = 20 * 1024

const sh = (command: string, args: ReadonlyArray<string>, options: cp.SpawnSyncOptions = {}) => {
  const r = cp.spawnSync(command, args, { encoding: "utf8", cwd: ROOT, ...options })
  return { status: r.status, stdout: String(r.stdout ?? ""), stderr: String(r.stderr ?? "") }
}
/** Whether P exists, as a link too (fs.existsSync follows links: a dangling one is "not there"). */
const present = (p: string) => fs.lstatSync(p, { throwIfNoEntry: false }) !== undefined
const kibUnder = (dir: string) => Number(sh("du", ["-sk", dir]).stdout.split("\t")[0])

/** BIN, an installed pmjq, started as a user would, runs a job dropped in its spool: the spawner and all it loads are there. */
const runsAJob = async (bin: string) => {
  const t = workspace("installed")
  const daemon = watched(cp.spawn(bin, ["-o", t.archive, t.spool], { stdio: ["ignore", "pipe", "pipe"] }))
  submit(t.spool, "hello", "echo ran by an installed pmjq")
  const out = () => (fs.existsSync(t.archive) ? fs.readdirSync(t.archive).find((f) => f.endsWith("_hello.out")) : undefined)
  const said = () => `pmjq said:\n${daemon.output().stderr}`
  await waitFor("the job's output in the archive", () => out() !== undefined || daemon.child.exitCode !== null).catch((e: Error) => {
    throw new Error(`${e.message}; ${said()}`)
  })
  expect(daemon.child.exitCode, `pmjq ended before its job did; ${said()}`).toBe(null)
  expect(fs.readFileSync(path.join(t.archive, out()!), "utf8")).toBe("ran by an installed pmjq\n")
  daemon.child.kill("SIGTERM")
  expect((await daemon.exited).code).toBe(0)
}

describe("the npm package", () => {
  it("declares no runtime dependency (the bundle holds them), builds itself before packing, and packs dist/ without its source maps", () => {
    // Everything in dist/ is bundled by esbuild: what it would fetch, nothing loads.
    expect(PKG.dependencies ?? {}).toEqual({})
    // A fresh clone has no dist/: `npm pack` builds it first.
    expect(PKG.scripts.prepack).toBe("npm run build")
    expect(PKG.scripts.deb).toBe("npm run build && node scripts/deb.mjs")
    expect(PKG.man).toEqual(["dist/pmjq.1"])
    // --ignore-scripts: prepack would rebuild dist/ under the other test files.
    const packed = sh("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"])
    expect(packed.status, packed.stderr).toBe(0)
    const files: Array<string> = JSON.parse(packed.stdout)[0].files.map((f: { path: string }) => f.path)
    for (const file of ["package.json", "README.md", "dist/bin.js", "dist/spawner.js", "dist/pmjq.1", "dist/completions/pmjq.bash", "dist/completions/_pmjq", "dist/completions/pmjq.fish"])
      expect(files).toContain(file)
    // The metrics and trace exporters, which telemetry/settings.ts imports only when asked for: chunks of their own.
    expect(files.filter((f) => /^dist\/chunks\/exporter-.*\.js$/.test(f))).toHaveLength(1)
    expect(files.filter((f) => /^dist\/chunks\/tracing-.*\.js$/.test(f))).toHaveLength(1)
    expect(files.filter((f) => f.endsWith(".map"))).toEqual([])
  })

  it(`npm install -g of the tarball, offline, into a prefix of its own: pmjq --version, man pmjq, a job run, under ${MAX_INSTALLED_KIB / 1024} MB installed`, async () => {
    const dir = tempDir("npm-install")
    const packed = sh("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dir])
    expect(packed.status, packed.stderr).toBe(0)
    const tarball = path.join(dir, JSON.parse(packed.stdout)[0].filename)
    expect(fs.existsSync(tarball)).toBe(true)
    console.log(`${path.basename(tarball)}: ${Math.round(fs.statSync(tarball).size / 1024)} KiB`)

    // --offline: with no dependencies nothing is fetched; a fetch would fail (ENOTCACHED).
    const prefix = path.join(dir, "prefix")
    const installed = sh("npm", ["install", "-g", "--prefix", prefix, "--offline", "--no-audit", "--no-fund", tarball])
    expect(installed.status, installed.stderr).toBe(0)
    const home = path.join(prefix, "lib/node_modules/pmjq")
    // Nothing of the clone's: no node_modules there, and none above it
    // (tempDir is under /tmp) for Node to find what the bundle lacks.
    expect(fs.existsSync(path.join(home, "node_modules"))).toBe(false)

    const bin = path.join(prefix, "bin/pmjq")
    const version = sh(bin, ["--version"], { cwd: dir })
    expect(version.status, version.stderr).toBe(0)
    expect(version.stdout.trimEnd().split("\n")).toEqual([expect.stringContaining(PKG.version)])

    // npm links the page into PREFIX/share/man/man1, where `man` finds it with that MANPATH.
    expect(present(path.join(prefix, "share/man/man1/pmjq.1"))).toBe(true)
    if (has("man")) {
      const man = sh("man", ["-w", "pmjq"], { env: { ...process.env, MANPATH: path.join(prefix, "share/man") } })
      expect(man.status, man.stderr).toBe(0)
      expect(fs.realpathSync(man.stdout.trim())).toBe(fs.realpathSync(path.join(home, "dist/pmjq.1")))
    }

    const kib = kibUnder(home)
    console.log(`installed: ${kib} KiB in ${home}`)
    expect(kib).toBeLessThan(MAX_INSTALLED_KIB)
    await runsAJob(bin)
    fs.rmSync(dir, { recursive: true, force: true })
  })
})

// --- The .deb ----------------------------------------------------------------

const debMissing = has("dpkg-deb") ? null : "needs dpkg-deb (Debian's dpkg)"
const canBuildDeb = runsHere("the .deb", debMissing)
const canLint = runsHere("lintian on the .deb", debMissing ?? (has("lintian") ? null : "needs lintian (which .ci/run installs)"))

/** What the package puts on the machine, each of which dpkg --purge must take away. */
const SHIPPED = [
  "/usr/bin/pmjq",
  "/usr/lib/pmjq",
  "/usr/share/man/man1/pmjq.1.gz",
  "/lib/systemd/system/pmjq@.service",
  "/usr/share/bash-completion/completions/pmjq",
  "/usr/share/zsh/vendor-completions/_pmjq",
  "/usr/share/fish/vendor_completions.d/pmjq.fish",
  "/usr/share/doc/pmjq",
  "/usr/share/lintian/overrides/pmjq"
]

// The dpkg test installs into this machine, and takes away what it installed:
// it will not run over a pmjq that someone put there (it would purge theirs).
const dpkgMissing = (() => {
  if (debMissing) return debMissing
  if (process.getuid?.() !== 0) return "needs root (it installs the .deb with dpkg -i)"
  if (sh("dpkg-query", ["-W", "-f", "${Status}", "pmjq"]).stdout.includes("installed"))
    return "a pmjq package is installed here, which the test would purge (dpkg --purge pmjq to run it)"
  const there = SHIPPED.filter(present)
  if (there.length > 0) return `${there.join(", ")} exist already (an npm install -g with prefix /usr?): dpkg -i would overwrite them`
  return null
})()
const canInstall = runsHere("installing the .deb", dpkgMissing)

/**
 * Node may come from elsewhere than a nodejs package (nvm, nodejs.org's
 * tarball), or Debian's own nodejs be older than 20 while a newer node runs
 * this: dpkg -i would then refuse the package's Depends: nodejs (>= 20). Only
 * then does the test pass --force-depends, to test the rest.
 */
const nodejsPackaged = () => {
  const q = sh("dpkg-query", ["-W", "-f", "${Status}\t${Version}", "nodejs"])
  const [status, version] = q.stdout.split("\t")
  return q.status === 0 && status === "install ok installed" && sh("dpkg", ["--compare-versions", version, "ge", "20"]).status === 0
}

describe.runIf(canBuildDeb)("the .deb (scripts/deb.mjs)", () => {
  let dir = ""
  let deb = ""
  afterAll(() => dir && fs.rmSync(dir, { recursive: true, force: true }))
  beforeAll(() => {
    dir = tempDir("deb")
    const built = sh(process.execPath, ["scripts/deb.mjs", dir])
    expect(built.status, built.stderr).toBe(0)
    deb = path.join(dir, `pmjq_${PKG.version}_all.deb`)
    expect(fs.existsSync(deb)).toBe(true)
    console.log(built.stdout.trim())
  })

  it("is pmjq_VERSION_all.deb: Depends on nodejs (>= 20), the code in /usr/lib/pmjq without source maps, /usr/bin/pmjq a link to it", () => {
    const field = (name: string) => sh("dpkg-deb", ["-f", deb, name]).stdout.trim()
    expect(field("Package")).toBe("pmjq")
    expect(field("Version")).toBe(PKG.version)
    expect(field("Architecture")).toBe("all")
    expect(field("Depends")).toBe("nodejs (>= 20)")
    const listing = sh("dpkg-deb", ["-c", deb])
    expect(listing.status).toBe(0)
    const entries = listing.stdout.split("\n").filter(Boolean)
    const paths = entries.map((l) => l.split(/\s+/).slice(5).join(" ").replace(/^\.\//, "/"))
    expect(paths).toContain("/usr/bin/pmjq -> ../lib/pmjq/dist/bin.js")
    for (const file of ["/usr/lib/pmjq/package.json", "/usr/lib/pmjq/dist/spawner.js", "/usr/share/doc/pmjq/copyright", "/usr/share/doc/pmjq/changelog.gz", ...SHIPPED.slice(2)])
      expect(paths.some((p) => p === file || p === `${file}/`)).toBe(true)
    expect(paths.filter((p) => p.endsWith(".map"))).toEqual([])
    // Owned by root whoever built it (--root-owner-group); bin.js alone executable.
    expect(entries.filter((l) => !l.includes(" root/root "))).toEqual([])
    expect(entries.filter((l) => /^-..x/.test(l)).map((l) => l.split(/\s+/).pop())).toEqual(["./usr/lib/pmjq/dist/bin.js"])
  })

  it.runIf(canLint)("(needs lintian) lintian reports no error", () => {
    // Warnings are shown, not failed on: another lintian may know other tags.
    // scripts/deb.mjs overrides the two that bin.js's #! line and place bring.
    const lint = sh("lintian", ["--fail-on", "error", deb])
    if (lint.stdout.trim() !== "") console.log(`lintian:\n${lint.stdout}`)
    expect(lint.stdout.split("\n").filter((l) => l.startsWith("E: "))).toEqual([])
    expect(lint.status, lint.stderr).toBe(0)
  })

  it.runIf(canInstall)(
    "(as root: dpkg -i, then dpkg --purge) installed, pmjq --version and man pmjq work, its completions and unit are where they are looked for, a job runs; purged, nothing is left",
    async () => {
      const force = nodejsPackaged() ? [] : ["--force-depends"]
      const installed = sh("dpkg", ["-i", ...force, deb])
      let purged: ReturnType<typeof sh> | undefined
      try {
        expect(installed.status, installed.stderr).toBe(0)
        expect(fs.readlinkSync("/usr/bin/pmjq")).toBe("../lib/pmjq/dist/bin.js")
        const version = sh("/usr/bin/pmjq", ["--version"], { cwd: "/" })
        expect(version.status, version.stderr).toBe(0)
        expect(version.stdout.trimEnd().split("\n")).toEqual([expect.stringContaining(PKG.version)])
        if (has("man")) {
          // -a: every page of that name, wherever else one was installed.
          const env = { ...process.env }
          delete env.MANPATH
          const man = sh("man", ["-wa", "pmjq"], { env })
          expect(man.status, man.stderr).toBe(0)
          expect(man.stdout.split("\n")).toContain("/usr/share/man/man1/pmjq.1.gz")
        }
        // What bash-completion loads on demand for `pmjq <TAB>` completes pmjq.
        const bash = sh("bash", ["-c", ". /usr/share/bash-completion/completions/pmjq && complete -p pmjq"])
        expect(bash.status, bash.stderr).toBe(0)
        expect(bash.stdout).toMatch(/ pmjq\n$/)
        expect(fs.readFileSync("/usr/share/zsh/vendor-completions/_pmjq", "utf8")).toMatch(/^#compdef pmjq/)
        expect(fs.readFileSync("/usr/share/fish/vendor_completions.d/pmjq.fish", "utf8")).toContain("complete -c pmjq")
        // The unit runs the package's pmjq, and systemd finds all it names.
        const unit = fs.readFileSync("/lib/systemd/system/pmjq@.service", "utf8")
        expect(unit).toMatch(/^ExecStart=\/usr\/bin\/pmjq \$PMJQ_OPTS %f$/m)
        if (has("systemd-analyze")) {
          const verified = sh("systemd-analyze", ["verify", "--man=no", "/lib/systemd/system/pmjq@srv-spool.service"])
          expect(verified.stderr.trim()).toBe("")
          expect(verified.status).toBe(0)
        }
        await runsAJob("/usr/bin/pmjq")
      } finally {
        purged = sh("dpkg", ["--purge", "pmjq"])
      }
      expect(purged.status, purged.stderr).toBe(0)
      expect(sh("dpkg-query", ["-W", "-f", "${Status}", "pmjq"]).stdout).not.toContain("installed")
      expect(SHIPPED.filter(present)).toEqual([])
    }
  )
})
