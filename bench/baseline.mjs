// The bare-Node loops pmjq is measured against: the least a spool runner can do.
//   node baseline.mjs watch SPOOL        fs.watch -> rename -> spawn, forever
//   node baseline.mjs drain SPOOL N      readdir -> rename -> spawn (N at once) -> unlink, until empty
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const [mode, spool, width = "8"] = process.argv.slice(2)
const running = path.join(spool, ".running")
fs.mkdirSync(running, { recursive: true })

const runOne = (name) =>
  new Promise((resolve) => {
    const claimed = path.join(running, name)
    try {
      fs.renameSync(path.join(spool, name), claimed)
    } catch {
      return resolve()
    }
    const child = cp.spawn(claimed, [], { stdio: "ignore" })
    child.once("exit", () => {
      fs.unlinkSync(claimed)
      resolve()
    })
    child.once("error", () => resolve())
  })

if (mode === "watch") {
  fs.watch(spool, (_event, name) => {
    if (name && !name.startsWith(".") && fs.existsSync(path.join(spool, name))) void runOne(name)
  })
} else {
  const queue = fs.readdirSync(spool).filter((n) => !n.startsWith("."))
  const worker = async () => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) await runOne(name)
  }
  await Promise.all(Array.from({ length: Number(width) }, worker))
}
