/**
 * `pmjq submit [--name NAME] [--wait] JOB-SPOOL FILE`
 * `pmjq submit [--name NAME] [--wait] JOB-SPOOL -- CMD [ARGS...]`
 *
 * Writes the job under a hidden name, syncs it, makes it executable and renames
 * it to a unique name: pmjq never sees it half-written, and two submissions
 * never collide. Like at(1), the job first changes to the directory it was
 * submitted from. With --wait, waits for its record and exits with its status.
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, errnoCode, InputMissing, NotPermitted, UsageError } from "../errors/errors.js"
import { createNew, type Ownership, syncFolder } from "../filesystem/files.js"
import { submitAside, submittedName } from "../spool/layout.js"
import type { JobRecord } from "../record/record.js"
import { requireSpool } from "../spool/Spool.js"
import { findRecord, recordLookout, type Submitted, viewSpool } from "../spool/view.js"
import { Syscalls } from "../filesystem/syscalls.js"
import { directiveLines, withDirectives } from "../directives/directives.js"
import { printEnded } from "./log.js"
import { checkWants, wantsOptions } from "./wants.js"
import { endOf } from "./waited.js"

/** Single-quoted for /bin/sh: the only character to escape is ' itself. */
export const shellQuote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`

// Like at(1): the job starts where, and with the umask with which, it was submitted.
const contextLines = (dir: string, umask: number) =>
  `cd ${shellQuote(dir)} 2>/dev/null || { echo ${shellQuote(`pmjq: submitted from ${dir}, which does not exist on this node`)} >&2; exit 1; }\n` +
  `umask ${(umask & 0o777).toString(8).padStart(4, "0")}`

/** The job's text: a sh script for a command; a file keeps its own interpreter. */
export const jobText = (
  from: string,
  form: { readonly file: string; readonly text: string } | { readonly command: ReadonlyArray<string> },
  umask = 0o022
) => {
  const context = contextLines(from, umask)
  if ("command" in form) return `#!/bin/sh\n${context}\nexec ${form.command.map(shellQuote).join(" ")}\n`
  const lines = form.text.split("\n")
  const shebang = lines[0]!.startsWith("#!") ? lines[0]! : null
  // A cd and a umask only make sense to a shell; other interpreters start where
  // pmjq starts jobs (see README), with umask 022.
  const shell = shebang === null || /^#!\s*\/(usr\/)?bin\/(env\s+)?(ba|da|z|k)?sh\b/.test(shebang)
  if (!shell) return form.text
  // After the file's leading comments: its #PMJQ lines must stay in that block.
  const first = shebang === null ? 0 : 1
  let body = first
  while (body < lines.length && (lines[body]!.trim() === "" || lines[body]!.startsWith("#"))) body++
  return [...(shebang === null ? ["#!/bin/sh"] : [shebang]), ...lines.slice(first, body), context, ...lines.slice(body)].join("\n")
}

// A FILE that is not there is EX_NOINPUT (66), as for cat(1); one there but
// unreadable is the caller's to fix (77).
const readInput = (file: string) =>
  Effect.try({
    try: () => fs.readFileSync(file, "utf8"),
    catch: (e) =>
      errnoCode(e) === "ENOENT" || errnoCode(e) === "ENOTDIR"
        ? new InputMissing({ what: "file", path: file })
        : errnoCode(e) === "EACCES" || errnoCode(e) === "EPERM"
        ? new NotPermitted({ reason: `cannot read ${file}: permission denied` })
        : new UsageError({ reason: `cannot read ${file}: ${describe(e)}` })
  })

/** BASE-STAMP-HOST-PID-RANDOM, with only [A-Za-z0-9._-] and no leading dot. */
export const uniqueName = (base: string) => submittedName(base, new Date(), os.hostname(), process.pid, randomBytes(3).toString("hex"))

/**
 * The rename that queued a job on disk before submit answers: the spool's
 * folder synced. Queued already, so nothing here fails the submit: a user
 * who may not open the folder (a drop-box spool, mode 1733), or a filesystem
 * that cannot sync one, gets the job's file synced again instead, which on
 * ext4 and XFS commits its rename too (one journal transaction).
 */
const syncRename = (spool: string, fd: number) => {
  try {
    syncFolder(spool)
  } catch {
    try {
      fs.fsyncSync(fd)
    } catch {
      // Synced once before the rename; the rename itself is the kernel's now.
    }
  }
}

const write = (spool: string, name: string, text: string, owner: Ownership | null) =>
  Effect.try({
    try: () => {
      const hidden = path.join(spool, submitAside(name))
      // Its owner's alone: other users of a shared spool cannot read it. (Made
      // executable only once whole: pmjq never picks up a hidden name anyway.)
      const fd = createNew(hidden, 0o600, owner)
      try {
        fs.writeSync(fd, text)
        fs.fchmodSync(fd, 0o700)
        // Its bytes and its mode on disk before the rename that queues it.
        fs.fsyncSync(fd)
        const ino = fs.fstatSync(fd).ino
        // rename, not link + unlink: for a moment the job would have two links,
        // and a node that claimed it then would refuse it. The name is unique
        // (random), and in a sticky spool no rename replaces another user's file.
        fs.renameSync(hidden, path.join(spool, name))
        syncRename(spool, fd)
        return ino
      } finally {
        fs.closeSync(fd)
      }
    },
    catch: (e) => new UsageError({ reason: `cannot submit to ${spool}: ${(e as Error).message}` })
  })

// process.umask() without an argument is deprecated: set and restore.
const currentUmask = () => {
  const mask = process.umask(0o022)
  process.umask(mask)
  return mask
}

// --wait's status, shared with `pmjq log -f` (waited.ts).
export { CANCELLED_STATUS, waitStatus } from "./waited.js"

// Found by identity in every dir a node said it archives to (remembered: a
// node that ends takes its heartbeat with it), however many entries arrived
// since the last look: never among only the newest.
const waitFor = (spool: string, job: Submitted) =>
  Effect.gen(function*() {
    const name = job.name
    const tty = process.stderr.isTTY === true
    let shown = ""
    const lookout = recordLookout(spool)
    const look = Effect.gen(function*() {
      const done = yield* lookout((dirs, uid) => findRecord(dirs, uid, job))
      if (done !== null) return Option.some(done)
      if (tty) {
        const view = yield* viewSpool(spool, 0).pipe(Effect.provide(Syscalls.forDirectories([spool])))
        const running = view.running.find((r) => r.name === name)
        const state = running !== undefined ? `running on ${running.node}` : view.queued.some((q) => q.name === name) ? "queued" : "claimed"
        if (state !== shown) process.stderr.write(`\r\x1b[K${name}: ${state}`)
        shown = state
      }
      return Option.none<JobRecord & { entry: string }>()
    })
    const poll: Effect.Effect<JobRecord & { entry: string }> = Effect.flatMap(look, Option.match({
      onSome: Effect.succeed,
      onNone: () => Effect.zipRight(Effect.sleep("200 millis"), Effect.suspend(() => poll))
    }))
    const record = yield* poll
    if (tty) process.stderr.write(`\r\x1b[K`)
    return record
  })

/**
 * Writes TEXT into the spool as a new job named after BASE (OWNER's: null for
 * the caller) and prints its name; with WAIT, waits for its record, prints its
 * output, and exits as it did.
 */
export const enqueue = (dir: string, base: string, text: string, wait: boolean, owner: Ownership | null) =>
  Effect.gen(function*() {
    const job = uniqueName(base)
    const inode = yield* write(dir, job, text, owner)
    // With --wait, stdout is the job's output alone: out=$(pmjq submit --wait ...).
    if (!wait) return yield* Console.log(job)
    yield* Console.error(job)
    const record = yield* waitFor(dir, { name: job, uid: owner?.uid ?? process.getuid?.() ?? 0, inode })
    // As `pmjq log` reads it: the job's files only, never through a symlink planted at their names.
    yield* printEnded(dir, record)
    // A rejected job has no output to print; a cancelled one's is printed first.
    const end = endOf(job, record)
    if (end.says !== null) yield* Console.error(end.says)
    process.exitCode = end.status
  })

export const submitCommand = (command: ReadonlyArray<string>) =>
  Command.make(
    "submit",
    {
      name: Options.text("name").pipe(
        Options.withPseudoName("NAME"),
        Options.withDescription("the name's start (default: the file's or command's)"),
        Options.optional
      ),
      wait: Options.boolean("wait").pipe(Options.withDescription("wait for the job; print its output; exit as it did")),
      ...wantsOptions,
      spool: Args.text({ name: "job-spool" }).pipe(Args.withDescription("the spool to submit to")),
      file: Args.text({ name: "file" }).pipe(
        Args.withDescription("the script to submit"),
        Args.optional
      )
    },
    ({ file, name, spool, wait, ...wants }) =>
      Effect.gen(function*() {
        const dir = path.resolve(spool)
        yield* requireSpool(dir)
        const directives = directiveLines(yield* checkWants(dir, wants))
        if (Option.isSome(file) === (command.length > 0)) {
          return yield* new UsageError({ reason: "give a FILE, or -- and a command: pmjq submit JOB-SPOOL FILE | pmjq submit JOB-SPOOL -- CMD [ARGS...]" })
        }
        const from = process.cwd()
        const umask = currentUmask()
        const text = Option.isSome(file)
          ? jobText(from, { file: file.value, text: yield* readInput(file.value) }, umask)
          : jobText(from, { command }, umask)
        const base = Option.getOrElse(name, () => (Option.isSome(file) ? path.basename(file.value) : path.basename(command[0]!)))
        yield* enqueue(dir, base, withDirectives(text, directives), wait, null)
      })
  ).pipe(Command.withDescription("Queue FILE, or the command after --, as a job under a unique name."))
