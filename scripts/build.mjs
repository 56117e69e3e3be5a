// Bundles pmjq into dist/: one file for the CLI and one for the spawner.
// A bundle starts in ~0.3 s where the same code as ~500 ES modules takes ~0.7 s,
// and every pmjq command a user types pays that. Types are checked by tsc first.
import { build } from "esbuild"
import { rmSync } from "node:fs"

rmSync(new URL("../dist", import.meta.url), { recursive: true, force: true })

const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: true,
  logLevel: "warning",
  // Some dependencies are CommonJS and call require().
  banner: { js: "import { createRequire as __pmjqRequire } from 'node:module'; const require = __pmjqRequire(import.meta.url);" }
}

// esbuild keeps the entry point's #! line first. What is imported only when
// asked for (the metrics and trace exporters: telemetry/settings.ts) goes to
// chunks of its own, never read otherwise: dist/chunks/.
await build({
  ...common,
  entryPoints: ["src/bin.ts"],
  outdir: "dist",
  splitting: true,
  chunkNames: "chunks/[name]-[hash]"
})
// The spawner stays a separate, dependency-free process: see src/spawner/spawner.ts.
await build({ ...common, entryPoints: ["src/spawner/spawner.ts"], outfile: "dist/spawner.js" })

// Shell completions, captured from the built CLI itself (`--completions`), so
// that they always know what this build's pmjq knows. dist/completions/ has
// one file per shell: pmjq.bash, _pmjq (zsh's name for it) and pmjq.fish. The
// npm package ships them (they are under dist/) and scripts/deb.mjs installs
// them where each shell looks. In a block of its own, with its own imports, so
// that its names clash with no other step's.
{
  const { execFileSync } = await import("node:child_process")
  const { mkdirSync, writeFileSync } = await import("node:fs")
  mkdirSync("dist/completions", { recursive: true })
  for (const [shell, file] of [["bash", "pmjq.bash"], ["zsh", "_pmjq"], ["fish", "pmjq.fish"]]) {
    const script = execFileSync(process.execPath, ["dist/bin.js", "--completions", shell], { encoding: "utf8" })
    if (!script.includes("pmjq")) throw new Error(`pmjq --completions ${shell} printed no completion for pmjq`)
    writeFileSync(`dist/completions/${file}`, script)
  }
}

// The man page (issue #20). doc/pmjq.1 is written in man(7) macros, the
// format man pages are written in: no converter between it and man(1). It is
// copied to dist/pmjq.1 (package.json "man") with every @VERSION@ replaced by
// the version in package.json (its .TH line, and what --version prints).
// A block of its own, with its own imports, as the completions' above.
{
  const { readFileSync, writeFileSync } = await import("node:fs")
  const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
  const page = readFileSync(new URL("../doc/pmjq.1", import.meta.url), "utf8")
  writeFileSync(new URL("../dist/pmjq.1", import.meta.url), page.replaceAll("@VERSION@", version))
}
