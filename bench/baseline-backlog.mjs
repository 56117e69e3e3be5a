// The plain Node daemon pmjq's start on a long queue is measured against
// (bench/backlog.ts): it lists the spool, lstats every entry, and runs the
// oldest executable files first, WIDTH at once (each claimed by a rename,
// spawned, and unlinked when it ends), until it is stopped. No archive, no
// records, no notifications: the least a daemon can do with 100,000 queued.
//   node baseline-backlog.mjs SPOOL [WIDTH]
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const [spool, width = "2"] = process.argv.slice(2)
const running = path.join(spool, ".running")
fs.mkdirSync(running, { recursive: true })

const queue = []
for (const name of fs.readdirSync(spool)) {
  if (name.startsWith(".")) continue
  const stat = fs.lstatSync(path.join(spool, name), { throwIfNoEntry: false })
  if (stat !== undefined && stat.isFile() && (stat.mode & 0o111) !== 0) queue.push({ name, at: stat.ctimeMs })
}
queue.sort((a, b) => a.at - b.at || (a.name < b.name ? -1 : 1))

let next = 0
const runNext = () => {
  while (next < queue.length) {
    const { name } = queue[next++]
    const claimed = path.join(running, name)
    try {
      fs.renameSync(path.join(spool, name), claimed)
    } catch {
      continue
    }
    const child = cp.spawn(claimed, [], { stdio: "ignore" })
    child.once("exit", () => {
      fs.unlinkSync(claimed)
      runNext()
    })
    child.once("error", runNext)
    return
  }
}
for (let i = 0; i < Number(width); i++) runNext()
// A daemon: it stays until it is stopped.
setInterval(() => undefined, 60_000)
process.once("SIGTERM", () => process.exit(0))
