/**
 * What survives a power cut (README: Durability), checked on the real binary:
 * strace records the order of pmjq's own system calls, and each promised
 * transition must have its sync finished before the call that publishes it
 * starts. A killed process keeps its writes in the kernel; a power cut keeps
 * only what was synced, so the order is the whole promise.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, has, publicBin, runsHere, submit, workspace } from "./harness.js"
import { addUsers, asUser, removeUsers, rootMissing, sharedSpool } from "./users.js"

const TRACED = "fsync,fdatasync,rename,renameat,renameat2,link,linkat,unlink,unlinkat,execve"

interface Call {
  readonly name: string
  /** Its arguments and result as strace printed them (-y: a descriptor with its path, 5</x/y>). */
  text: string
  /** Its lines in the log: where it started and where it returned (an interrupted call is resumed later). */
  readonly start: number
  end: number
}

/** The calls of every process in LOG (strace -f), in the log's order. */
const callsIn = (log: string): Array<Call> => {
  const calls: Array<Call> = []
  const pending = new Map<string, Call>()
  log.split("\n").forEach((line, i) => {
    const resumed = /^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$/.exec(line)
    if (resumed !== null) {
      const [, pid, name, rest] = resumed
      const call = pending.get(`${pid} ${name}`)
      if (call === undefined) return
      pending.delete(`${pid} ${name}`)
      call.text += rest
      call.end = i
      return
    }
    const started = /^(\d+)\s+(\w+)\((.*)$/.exec(line)
    if (started === null) return
    const [, pid, name, text] = started
    const call: Call = { name: name!, text: text!, start: i, end: i }
    calls.push(call)
    if (text!.endsWith("<unfinished ...>")) pending.set(`${pid} ${name}`, call)
  })
  return calls
}

/** Runs pmjq ARGS under strace; its calls, once it exited 0. */
const traced = (args: ReadonlyArray<string>, cwd: string) => {
  const log = path.join(cwd, `strace-${Date.now()}.log`)
  const result = cp.spawnSync("strace", ["-f", "-y", "-s", "4096", "-e", `trace=${TRACED}`, "-o", log, process.execPath, BIN, ...args], {
    cwd,
    encoding: "utf8"
  })
  expect(result.status, result.stderr).toBe(0)
  return { calls: callsIn(fs.readFileSync(log, "utf8")), stdout: result.stdout }
}

const quoted = (text: string) => JSON.stringify(text)
const syncs = (c: Call) => c.name === "fsync" || c.name === "fdatasync"
/** A sync of the descriptor open on FILE. */
const syncOf = (file: string) => (c: Call) => syncs(c) && new RegExp(`^\\d+<${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}>\\)`).test(c.text)
const first = (calls: ReadonlyArray<Call>, what: string, matches: (c: Call) => boolean, after = -1) => {
  const call = calls.find((c) => c.start > after && matches(c))
  if (call === undefined) throw new Error(`no ${what} in the trace${after >= 0 ? ` after line ${after}` : ""}`)
  return call
}

describe.runIf(runsHere("power-cut order", has("strace") ? null : "needs strace (Debian package strace, which .ci/run installs)"))(
  "what survives a power cut: each sync returns before the call that publishes its transition",
  () => {
    it("pmjq submit: the job's bytes before the rename that queues it, and the spool's folder after it, before submit returns", () => {
      const t = workspace("durable-submit")
      const { calls, stdout } = traced(["submit", t.spool, "--", "true"], t.root)
      const name = stdout.trim()
      const queued = first(calls, "rename that queues the job", (c) => c.name === "rename" && c.text.includes(`, ${quoted(path.join(t.spool, name))})`))
      const hidden = JSON.parse(/^("[^"]+")/.exec(queued.text)![1]!) as string
      const bytes = first(calls, "sync of the job's file", syncOf(hidden))
      expect(bytes.end).toBeLessThan(queued.start)
      first(calls, "sync of the spool's folder", syncOf(t.spool), queued.end)
      expect(fs.readdirSync(t.spool)).toEqual([name])
    })

    it("a drain: the claim before the job starts; the record's bytes before its name, its name before its archival; the archive entry before the job leaves its running folder", () => {
      const t = workspace("durable-drain")
      submit(t.spool, "job", "true")
      const { calls } = traced(["--node-id", "n1", "-o", t.archive, "--drain", t.spool], t.root)
      const running = path.join(t.spool, ".pmjq", "running", "n1")
      const claimed = path.join(running, "job")

      const claim = first(calls, "claim's rename", (c) => c.name === "rename" && c.text.startsWith(`${quoted(path.join(t.spool, "job"))}, ${quoted(claimed)})`))
      const claimSynced = first(calls, "sync of the running folder", syncOf(running), claim.end)
      const exec = first(calls, "job's exec", (c) => c.name === "execve" && c.text.startsWith(quoted(claimed)))
      expect(claimSynced.end).toBeLessThan(exec.start)

      const record = path.join(running, ".job.json")
      const named = first(calls, "record's rename", (c) => c.name === "rename" && c.text.startsWith(`${quoted(`${record}.tmp`)}, ${quoted(record)})`))
      const recordSynced = first(calls, "sync of the record's bytes", syncOf(`${record}.tmp`))
      expect(recordSynced.end).toBeLessThan(named.start)
      // Its output before it: a record never stands beside output a power cut lost.
      expect(first(calls, "sync of the job's output", syncOf(path.join(running, ".job.out"))).end).toBeLessThan(named.start)
      // Its name too, before the archival: a job that ended is never run again.
      const nameSynced = first(calls, "sync of the running folder after the record's rename", syncOf(running), named.end)
      expect(nameSynced.end).toBeLessThan(first(calls, "link into the archive", (c) => c.name === "link" && c.text.includes(`, "${t.archive}/`)).start)

      const [entry] = fs.readdirSync(t.archive).filter((n) => n.endsWith("_job.json"))
      const whole = first(calls, "link that makes the entry whole", (c) => c.name === "link" && c.text.includes(`, ${quoted(path.join(t.archive, entry!))})`))
      const archiveSynced = first(calls, "sync of the archive dir", syncOf(t.archive), whole.end)
      const gone = first(calls, "job's unlink from its running folder", (c) => c.name === "unlink" && c.text.startsWith(`${quoted(claimed)})`))
      expect(archiveSynced.end).toBeLessThan(gone.start)
      // Drained: the node took its folder with it as it left.
      expect(fs.existsSync(claimed)).toBe(false)
      expect(fs.readdirSync(t.archive).sort()).toEqual([entry!.replace(/\.json$/, ""), ...[".err", ".json", ".out"].map((s) => entry!.replace(/\.json$/, s))])
    })
  }
)

describe.runIf(runsHere("submit into a drop-box spool", rootMissing))("(as root: creates a user) pmjq submit into a spool its user may not list", () => {
  const USER = "pmjqdrop1"
  let bin = ""
  beforeAll(() => {
    addUsers([USER])
    bin = publicBin()
  })
  afterAll(() => removeUsers([USER]))

  it("a drop-box spool (mode 1733): the folder cannot be synced by its user, the job is queued all the same and submit says only its name", () => {
    const t = sharedSpool("durable-dropbox")
    fs.chmodSync(t.spool, 0o1733)
    const submitted = asUser(USER, [process.execPath, bin, "submit", t.spool, "--", "true"])
    expect(submitted.stderr).toBe("")
    expect(submitted.status).toBe(0)
    const name = submitted.stdout.trim()
    expect(fs.readdirSync(t.spool)).toEqual([name])
  })
})
