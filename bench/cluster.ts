/**
 * Drains on a cluster volume (GlusterFS, MooseFS), set up as the cluster tests
 * set them up (test/e2e/clusterfs.ts: GlusterFS with the README's recommended
 * settings, attribute, entry and negative timeouts 0). There each metadata call
 * is a round trip to a server process, so what a job costs in calls shows.
 * Run alone (`node --import tsx bench/cluster.ts [--bin PATH] [--jobs N] [--only glusterfs|moosefs]`) or
 * from `npm run bench`, as root, when the servers are installed.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { glusterMissing, makeMooseVolume, makeVolume, mooseMissing, startGlusterd, stopGlusterd, type Volume } from "../test/e2e/volumes.js"

const ROOT = path.resolve(import.meta.dirname, "..")
const BASELINE = path.join(ROOT, "bench/baseline.mjs")

export interface ClusterDrain {
  readonly fs: string
  readonly jobs: number
  /** jobs/s of each run; the ratios are to the loop, measured between them. */
  readonly loop: number
  readonly noArchive: number
  readonly archiveOnVolume: number
  readonly archiveLocal: number
}

const drainOn = (mount: string, label: string, jobs: number, command: (spool: string, dir: string) => ReadonlyArray<string>) => {
  const dir = fs.mkdtempSync(path.join(mount, `bench-${label}-`))
  const spool = path.join(dir, "spool")
  fs.mkdirSync(spool)
  for (let i = 0; i < jobs; i++) fs.writeFileSync(path.join(spool, `j${i}`), "#!/bin/sh\n:\n", { mode: 0o755 })
  const local = fs.mkdtempSync(path.join(os.tmpdir(), `pmjq-bench-${label}-`))
  const [file, ...args] = command(spool, local)
  const started = performance.now()
  const result = cp.spawnSync(file!, args, { cwd: dir, stdio: "ignore" })
  const seconds = (performance.now() - started) / 1000
  const left = fs.readdirSync(spool).filter((n) => !n.startsWith(".")).length
  fs.rmSync(dir, { recursive: true, force: true })
  fs.rmSync(local, { recursive: true, force: true })
  if (result.status !== 0 || left !== 0) throw new Error(`${label}: exit ${result.status}, ${left} jobs left`)
  return jobs / seconds
}

/** The four drains on VOLUME's first mount, the loop first and last (its mean is the reference). */
const drains = (volume: Volume, fsName: string, bin: string, jobs: number): ClusterDrain => {
  const mount = volume.mounts[0]
  const loop = () => drainOn(mount, "loop", jobs, (spool) => [process.execPath, BASELINE, "drain", spool, "8"])
  const first = loop()
  const noArchive = drainOn(mount, "pmjq", jobs, (spool) => [bin, "-j", "8", "--drain", spool])
  const archiveOnVolume = drainOn(mount, "pmjq-o", jobs, (spool) => [bin, "-j", "8", "-o", path.join(path.dirname(spool), "archive"), "--drain", spool])
  const archiveLocal = drainOn(mount, "pmjq-local", jobs, (spool, local) => [bin, "-j", "8", "-o", path.join(local, "archive"), "--drain", spool])
  const last = loop()
  return { fs: fsName, jobs, loop: (first + last) / 2, noArchive, archiveOnVolume, archiveLocal }
}

/** Every volume this machine can make; empty (with why on stderr) when none. */
export const clusterDrains = async (bin: string, jobs: number, only: "GlusterFS" | "MooseFS" | null = null): Promise<Array<ClusterDrain>> => {
  const results: Array<ClusterDrain> = []
  const gluster = only === "MooseFS" ? "not asked for" : glusterMissing()
  if (gluster !== null) console.error(`cluster bench: GlusterFS skipped: ${gluster}`)
  else {
    const started = await startGlusterd()
    const volume = makeVolume("bench", true)
    try {
      results.push(drains(volume, "GlusterFS", bin, jobs))
    } finally {
      await volume.remove()
      if (started) stopGlusterd()
    }
  }
  const moose = only === "GlusterFS" ? "not asked for" : mooseMissing()
  if (moose !== null) console.error(`cluster bench: MooseFS skipped: ${moose}`)
  else {
    const volume = await makeMooseVolume("bench")
    try {
      results.push(drains(volume, "MooseFS", bin, jobs))
    } finally {
      await volume.remove()
    }
  }
  return results
}

export const clusterTable = (results: ReadonlyArray<ClusterDrain>) =>
  results.map((r) => {
    const x = (n: number) => `${n.toFixed(1)} jobs/s, ${(n / r.loop).toFixed(2)}x`
    return `| ${r.fs}, ${r.jobs} jobs, -j 8: loop ${r.loop.toFixed(1)} jobs/s | no archive ${x(r.noArchive)} | archive on the volume ${x(r.archiveOnVolume)} (goal >= 0.6x) | archive on a local disk ${x(r.archiveLocal)} (goal >= 0.5x) |`
  }).join("\n")

if (import.meta.url === `file://${process.argv[1]}`) {
  const binArg = process.argv.indexOf("--bin")
  const bin = binArg > 0 ? path.resolve(process.argv[binArg + 1]!) : path.join(ROOT, "dist/bin.js")
  const jobsArg = process.argv.indexOf("--jobs")
  const jobs = jobsArg > 0 ? Number(process.argv[jobsArg + 1]) : 300
  const onlyArg = process.argv.indexOf("--only")
  const only = onlyArg > 0 ? (process.argv[onlyArg + 1] === "moosefs" ? "MooseFS" : "GlusterFS") : null
  const results = await clusterDrains(bin, jobs, only)
  console.log(clusterTable(results))
  console.log(JSON.stringify(results))
}
