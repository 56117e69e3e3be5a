// Builds pmjq_VERSION_all.deb, for administrators, from the built dist/
// (`npm run deb` builds first; `node scripts/deb.mjs [OUT-DIR]` packs what is
// there). OUT-DIR defaults to the project's directory, where `npm pack` puts
// its tarball too.
//
// No debhelper and no network: the tree is staged by hand in a temporary
// directory and packed by `dpkg-deb --build --root-owner-group`, so that any
// machine with dpkg can build it. What goes where:
//
//   /usr/lib/pmjq/dist/                 the bundle: bin.js, spawner.js, chunks/
//   /usr/lib/pmjq/package.json          bin.js reads its version there, and its
//                                       "type": "module" makes Node load dist/ as ES modules
//   /usr/bin/pmjq                       -> ../lib/pmjq/dist/bin.js (its #! line runs node)
//   /usr/share/man/man1/pmjq.1.gz       every page package.json's "man" lists
//   /lib/systemd/system/pmjq@.service   contrib/systemd/pmjq@.service, ExecStart=/usr/bin/pmjq
//   /usr/share/bash-completion/completions/pmjq
//   /usr/share/zsh/vendor-completions/_pmjq
//   /usr/share/fish/vendor_completions.d/pmjq.fish
//   /usr/share/doc/pmjq/                copyright, changelog.gz, README.md.gz
//   /usr/share/lintian/overrides/pmjq   the two tags bin.js's #! line and place bring
//
// Source maps stay out: they are 3/4 of dist/ (~12 of ~15 MB) and Node reads
// them only when started with --enable-source-maps, which pmjq's #! line does
// not ask for. The bundle is not minified: a stack trace's file:line points to
// readable code with the original names, and the maps for a version are one
// `npm run build` of its tag away. The npm package leaves them out too
// (package.json "files").
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { gzipSync } from "node:zlib"

const ROOT = fileURLToPath(new URL("..", import.meta.url))
const DIST = path.join(ROOT, "dist")
const outDir = path.resolve(process.argv[2] ?? ROOT)
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"))

// Debian's own convention for who builds a package (dch reads the same two).
const MAINTAINER = process.env.DEBFULLNAME && process.env.DEBEMAIL
  ? `${process.env.DEBFULLNAME} <${process.env.DEBEMAIL}>`
  : "pmjq maintainers <maintainers@users.noreply.r-seed-4fa5373a.example>"

/** Stops the build, saying why (the staging directory is removed on the way out). */
const fail = (why) => {
  throw Object.assign(new Error(why), { refusal: true })
}

/** Every file under DIR, as paths relative to it. */
const walk = (dir, under = "") =>
  fs.readdirSync(path.join(dir, under), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(under, e.name)
    return e.isDirectory() ? walk(dir, rel) : [rel]
  })

// --- Staging ---------------------------------------------------------------

const stage = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-deb-stage-"))
// Modes are set here, not left to the umask: dpkg-deb packs what it finds
// (directories are made 0755 once all is staged).
const put = (rel, content, mode = 0o644) => {
  const to = path.join(stage, rel)
  fs.mkdirSync(path.dirname(to), { recursive: true })
  fs.writeFileSync(to, content)
  fs.chmodSync(to, mode)
}
// Man pages and any other documentation: gzip -9n, as Debian wants (no name, no time in the header).
const gz = (content) => gzipSync(content, { level: 9 })

try {
  // --- What must have been built ---------------------------------------------

  const COMPLETIONS = [
    ["pmjq.bash", "usr/share/bash-completion/completions/pmjq"],
    ["_pmjq", "usr/share/zsh/vendor-completions/_pmjq"],
    ["pmjq.fish", "usr/share/fish/vendor_completions.d/pmjq.fish"]
  ]
  const manPages = pkg.man ?? []
  for (const file of ["dist/bin.js", "dist/spawner.js", ...manPages, ...COMPLETIONS.map(([f]) => `dist/completions/${f}`)]) {
    if (!fs.existsSync(path.join(ROOT, file))) fail(`${file} is missing: run \`npm run build\` first (\`npm run deb\` does)`)
  }
  if (!fs.readFileSync(path.join(DIST, "bin.js"), "utf8").startsWith("#!")) fail("dist/bin.js has no #! line: /usr/bin/pmjq could not run it")

  // The code: dist/ without its maps, its man pages and completions (installed where they are looked for).
  const elsewhere = new Set([...manPages.map((m) => path.relative("dist", m)), ...COMPLETIONS.map(([f]) => path.join("completions", f))])
  for (const rel of walk(DIST)) {
    if (rel.endsWith(".map") || elsewhere.has(rel)) continue
    put(path.join("usr/lib/pmjq/dist", rel), fs.readFileSync(path.join(DIST, rel)), rel === "bin.js" ? 0o755 : 0o644)
  }
  // Only what Node and bin.js read: the build's scripts and devDependencies mean nothing there.
  const { name, version, description, license, type, engines } = pkg
  put("usr/lib/pmjq/package.json", JSON.stringify({ name, version, description, license, type, engines }, null, 2) + "\n")
  // Relative, as Debian policy wants a link within /usr; Node follows it to
  // /usr/lib/pmjq/dist/bin.js, from which ../package.json is found.
  fs.mkdirSync(path.join(stage, "usr/bin"), { recursive: true })
  fs.symlinkSync("../lib/pmjq/dist/bin.js", path.join(stage, "usr/bin/pmjq"))

  for (const page of manPages) {
    const section = page.match(/\.(\d)$/)?.[1] ?? fail(`${page}: a man page's name ends with its section`)
    put(`usr/share/man/man${section}/${path.basename(page)}.gz`, gz(fs.readFileSync(path.join(ROOT, page))))
  }
  for (const [file, to] of COMPLETIONS) put(to, fs.readFileSync(path.join(DIST, "completions", file)))

  // The unit runs this package's pmjq, not whichever `env` finds first on
  // systemd's PATH (an `npm install -g` one in /usr/local/bin, say).
  // /lib/systemd/system rather than /usr/lib: Debian 12's lintian wants it there.
  const unit = fs.readFileSync(path.join(ROOT, "contrib/systemd/pmjq@.service"), "utf8")
  const ownUnit = unit.replace(/^ExecStart=\/usr\/bin\/env pmjq /m, "ExecStart=/usr/bin/pmjq ")
  if (!/^ExecStart=\/usr\/bin\/pmjq /m.test(ownUnit)) fail("contrib/systemd/pmjq@.service: no `ExecStart=/usr/bin/env pmjq ...` line to point at /usr/bin/pmjq")
  put("lib/systemd/system/pmjq@.service", ownUnit)

  // What lintian says of bin.js is what it is meant to be. Its #! line is
  // `/usr/bin/env -S VAR=... node ...` (env -S splits the line: pmjq sets its
  // malloc arenas before node starts), which lintian reads as an interpreter
  // named "-S"; and it is the program /usr/bin/pmjq links to, kept next to
  // the chunks it imports.
  put(
    "usr/share/lintian/overrides/pmjq",
    `# /usr/bin/env -S VAR=... node ...: env splits the line and runs node (Depends: nodejs)
pmjq: unusual-interpreter -S [usr/lib/pmjq/dist/bin.js]
# /usr/bin/pmjq links to it; it imports the chunks beside it
pmjq: executable-in-usr-lib [usr/lib/pmjq/dist/bin.js]
`
  )

  // --- /usr/share/doc/pmjq ---------------------------------------------------

  // The changelog's date and the copyright year are those of the commit built
  // (or SOURCE_DATE_EPOCH), not of the build: two builds of it say the same.
  const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? gitCommitTime() ?? Math.floor(Date.now() / 1000))
  const date = new Date(epoch * 1000)
  // A native package (its version is pmjq's own, no Debian revision): its
  // changelog is changelog.gz, in the format dpkg-parsechangelog reads.
  put(
    "usr/share/doc/pmjq/changelog.gz",
    gz(`pmjq (${version}) unstable; urgency=medium

  * pmjq ${version}, packaged from its npm build by scripts/deb.mjs.
    What changed is in the project's history (git log).

 -- ${MAINTAINER}  ${rfc2822(date)}
`)
  )
  put("usr/share/doc/pmjq/copyright", copyright(date.getUTCFullYear()))
  put("usr/share/doc/pmjq/README.md.gz", gz(fs.readFileSync(path.join(ROOT, "README.md"))))

  // --- DEBIAN/ ---------------------------------------------------------------

  const files = walk(stage).filter((rel) => !fs.lstatSync(path.join(stage, rel)).isSymbolicLink())
  put("DEBIAN/md5sums", files.map((rel) => `${createHash("md5").update(fs.readFileSync(path.join(stage, rel))).digest("hex")}  ${rel}\n`).join(""))
  // Installed-Size in KiB, counted as dpkg-gencontrol does: each file rounded
  // up to a KiB, one for each directory and link.
  const installedSize = walkAll(stage)
    .filter((rel) => !rel.startsWith("DEBIAN"))
    .reduce((kib, rel) => {
      const st = fs.lstatSync(path.join(stage, rel))
      return kib + (st.isFile() ? Math.ceil(st.size / 1024) : 1)
    }, 0)
  const [major] = (engines?.node ?? ">=20").match(/\d+/)
  put(
    "DEBIAN/control",
    `Package: pmjq
Version: ${version}
Architecture: all
Maintainer: ${MAINTAINER}
Installed-Size: ${installedSize}
Depends: nodejs (>= ${major})
Section: admin
Priority: optional
Description: job queue that runs the executable files dropped in a directory
 pmjq watches one directory, the job spool, and runs every executable file
 that appears in it, once: a job queue with no server but a filesystem.
 Users submit work by writing a file; several machines that mount the same
 spool share its work. Outputs and records go to an archive directory.
 .
 This package has the pmjq command, its man page, completions for bash,
 zsh and fish, and a systemd template unit, pmjq@.service, one instance
 per spool.
`
  )

  for (const rel of ["", ...walkAll(stage)]) if (fs.lstatSync(path.join(stage, rel)).isDirectory()) fs.chmodSync(path.join(stage, rel), 0o755)
  fs.mkdirSync(outDir, { recursive: true })
  const deb = path.join(outDir, `pmjq_${version}_all.deb`)
  execFileSync("dpkg-deb", ["--root-owner-group", "-Zxz", "--build", stage, deb], { stdio: ["ignore", "ignore", "inherit"] })
  console.log(`${deb}: ${(fs.statSync(deb).size / 1024).toFixed(0)} KiB, ${installedSize} KiB installed`)
} catch (e) {
  if (!e.refusal) throw e
  console.error(`deb: ${e.message}`)
  process.exitCode = 1
} finally {
  fs.rmSync(stage, { recursive: true, force: true })
}

// --- Helpers ---------------------------------------------------------------

/** Every entry under DIR, directories and links included. */
function walkAll(dir, under = "") {
  return fs.readdirSync(path.join(dir, under), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(under, e.name)
    return e.isDirectory() ? [rel, ...walkAll(dir, rel)] : [rel]
  })
}

function gitCommitTime() {
  try {
    return execFileSync("git", ["-C", ROOT, "log", "-1", "--format=%ct"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim() || null
  } catch {
    return null // a tarball, not a clone
  }
}

/** The date format of Debian changelogs: "Mon, 07 Dec 2026 10:59:38 +0000". */
function rfc2822(d) {
  const p = (n) => String(n).padStart(2, "0")
  const day = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][d.getUTCDay()]
  const month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][d.getUTCMonth()]
  return `${day}, ${p(d.getUTCDate())} ${month} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`
}

/**
 * debian/copyright in the machine-readable format. The bundle holds other
 * projects' code as well as pmjq's, and their licenses ask for their notices
 * to go with it: the packages are those the source maps name (every file
 * esbuild put in), with their versions, licenses and copyright lines.
 */
function copyright(year) {
  const bundled = new Map() // package dir -> { name, version, license, holders }
  for (const map of walk(DIST).filter((rel) => rel.endsWith(".map"))) {
    const { sources } = JSON.parse(fs.readFileSync(path.join(DIST, map), "utf8"))
    for (const source of sources) {
      const file = path.resolve(DIST, path.dirname(map), source)
      const at = file.lastIndexOf(`${path.sep}node_modules${path.sep}`)
      if (at < 0) continue // pmjq's own
      const parts = file.slice(at + 14).split(path.sep)
      const dir = file.slice(0, at + 14) + parts.slice(0, parts[0].startsWith("@") ? 2 : 1).join(path.sep)
      if (!bundled.has(dir)) bundled.set(dir, packageNotice(dir))
    }
  }
  if (bundled.size === 0) fail("no source maps in dist/ to list the bundled packages from: the copyright file needs them")
  const packages = [...bundled.values()].sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version))

  // SPDX names to the names debian/copyright uses.
  const debianName = { MIT: "Expat", ISC: "ISC", "Apache-2.0": "Apache-2.0" }
  const licenses = [...new Set(packages.map((p) => debianName[p.license] ?? fail(`${p.name}: license ${p.license} is not one this script knows how to state`)))]
  const all = ["Expat", ...licenses.filter((l) => l !== "Expat")]
  const indent = (text) => text.trim().split("\n").map((l) => (l.trim() === "" ? " ." : ` ${l}`)).join("\n")
  const texts = {
    Expat: `Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.`,
    ISC: `Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted, provided that the above
copyright notice and this permission notice appear in all copies.

THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR
IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.`,
    // Debian ships this one: the file says where, as Debian policy asks.
    "Apache-2.0": `On Debian systems, the complete text of the Apache License, Version 2.0
can be found in /usr/share/common-licenses/Apache-2.0.`
  }
  const ownHolder = `${year} the pmjq authors`
  const holders = [...new Set([ownHolder, ...packages.flatMap((p) => p.holders)])]
  return `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pmjq
Comment: pmjq's JavaScript in /usr/lib/pmjq/dist is one esbuild bundle of
 pmjq's own code and of these npm packages:
${packages.map((p) => ` ${p.name} ${p.version} (${p.license})`).join("\n")}

Files: *
Copyright: ${ownHolder}
License: Expat

Files: usr/lib/pmjq/dist/*
Copyright: ${holders.join("\n ")}
License: ${all.join(" and ")}
Comment: the bundle, with the bundled packages' code and notices listed above.

${all.map((l) => `License: ${l}\n${indent(texts[l])}`).join("\n\n")}
`
}

/** A bundled package: its name, version, license and copyright holders. */
function packageNotice(dir) {
  const { name, version, license, main, module } = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"))
  const file = fs.readdirSync(dir).find((f) => /^licen[cs]e/i.test(f))
  const holders = file ? holdersIn(path.join(dir, file)) : []
  // Apache's LICENSE names no holder: theirs head each source file (OpenTelemetry's do).
  return { name, version, license, holders: holders.length > 0 ? holders : holdersIn(path.join(dir, module ?? main ?? "index.js"), name) }
}

/** The holders in FILE's "Copyright ..." lines; else, with ORELSE, "the ORELSE authors". */
function holdersIn(file, orElse) {
  const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : ""
  const found = text
    .split("\n")
    .map((l) => l.replace(/^[\s*/#]+/, "").trim())
    // "Copyright" then "(c)", a year or a name; not "copyright notice", nor
    // Apache's "copyright license to reproduce" or "Copyright [yyyy] [name of copyright owner]".
    .filter((l) => /^Copyright\s+(\(c\)|©|\d{4}|[A-Z])/.test(l) && !/\[yyyy\]/.test(l) && l.length < 100)
    .map((l) => l.replace(/^copyright\s+(\(c\)\s*|©\s*)?/i, ""))
  return found.length > 0 ? [...new Set(found)] : orElse ? [`the ${orElse} authors`] : []
}
