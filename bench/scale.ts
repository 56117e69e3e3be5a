/**
 * Many nodes on one spool: `node --import tsx bench/scale.ts [--nodes 16] [--jobs 10000] [--dir DIR]`
 * (also run by `npm run bench`). N pmjq processes drain one spool of trivial
 * jobs; reported: lost claim races per won claim (goal < 0.5), and how far from
 * first-in first-out the start order was.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1]! : fallback
}
const BIN = path.resolve(import.meta.dirname, "../dist/bin.js")

export const scale = async (NODES: number, JOBS: number, BASE: string) => {
  const dir = fs.mkdtempSync(path.join(BASE, "pmjq-scale-"))
  const spool = path.join(dir, "spool")
  fs.mkdirSync(spool)
  const width = String(JOBS - 1).length
  for (let i = 0; i < JOBS; i++) {
    const hidden = path.join(spool, ".new")
    fs.writeFileSync(hidden, "#!/bin/sh\n:\n", { mode: 0o755 })
    fs.renameSync(hidden, path.join(spool, `j${String(i).padStart(width, "0")}`))
  }
  const started = performance.now()
  const runs = await Promise.all(Array.from({ length: NODES }, (_, n) =>
    new Promise<string>((resolve) => {
      const child = cp.spawn(BIN, ["--node-id", `n${n}`, "-j", "2", "-o", "archive", "--poll", "1s", "--drain", spool], {
        cwd: dir,
        stdio: ["ignore", "ignore", "pipe"]
      })
      let err = ""
      child.stderr.on("data", (d: Buffer) => (err += d.toString()))
      child.once("close", () => resolve(err))
    })))
  const seconds = (performance.now() - started) / 1000
  let won = 0
  let lost = 0
  for (const log of runs) {
    const m = /INFO drained claimed=(\d+) lostRaces=(\d+)/.exec(log)
    if (m === null) throw new Error(`a node did not drain:\n${log.slice(-2000)}`)
    won += Number(m[1])
    lost += Number(m[2])
  }
  // FIFO: how many places each job started away from its place in the queue.
  const archive = path.join(dir, "archive")
  const starts = fs.readdirSync(archive).filter((n) => n.endsWith(".json"))
    .map((n) => JSON.parse(fs.readFileSync(path.join(archive, n), "utf8")) as { name: string; startedAt: string | null })
    .sort((a, b) => (a.startedAt ?? "").localeCompare(b.startedAt ?? ""))
  const odd = starts.filter((r) => r.startedAt === null)
  if (odd.length > 0) throw new Error(`not started: ${JSON.stringify(odd.slice(0, 3))}`)
  const displacement = starts.map((r, rank) => Math.abs(rank - Number(r.name.slice(1)))).sort((a, b) => a - b)
  fs.rmSync(dir, { recursive: true, force: true })
  if (won !== JOBS || starts.length !== JOBS) throw new Error(`claimed ${won}, archived ${starts.length} of ${JOBS}`)
  return {
    nodes: NODES,
    jobs: JOBS,
    seconds,
    lostPerWon: lost / won,
    fifoDisplacement: { p50: displacement[Math.floor(JOBS / 2)]!, p99: displacement[Math.floor(JOBS * 0.99)]! }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (!fs.existsSync(BIN)) throw new Error("run `npm run build` first")
  const r = await scale(Number(arg("nodes", "16")), Number(arg("jobs", "10000")), path.resolve(arg("dir", "/dev/shm")))
  console.log(`${r.nodes} nodes, ${r.jobs} jobs in ${r.seconds.toFixed(1)} s (${os.availableParallelism()} CPUs): ` +
    `${r.lostPerWon.toFixed(3)} lost claims per won claim (goal < 0.5); ` +
    `start order vs queue order: p50 ${r.fifoDisplacement.p50} places, p99 ${r.fifoDisplacement.p99}`)
}
