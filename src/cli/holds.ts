/**
 * `pmjq hold JOB-SPOOL NAME...` and `pmjq release JOB-SPOOL NAME...`.
 *
 * A held job is its file under a hidden name, `.pmjq-held-NAME`: no node
 * claims a hidden name, every node sharing the spool sees the same, and the
 * hold outlives any restart. Holding is one rename(2), made by the caller:
 * in a sticky spool only the file's owner (or root) can, so no user can hold
 * or release another's job, and a race with a node's claim has one winner
 * (the claim, and the job runs; or the hold, and it waits).
 *
 * A job dropped or submitted with `#PMJQ --hold` waits in the spool under its
 * own name (no node claims it); releasing it writes it again without that
 * word, as the same owner with the same mode, before the held copy goes.
 */
import { Args, Command } from "@effect/cli"
import { Console, Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { isJobName } from "../record/decode.js"
import { UsageError } from "../errors/errors.js"
import { createNew, readRegular } from "../filesystem/files.js"
import { parseDirectives, withoutHold } from "../directives/directives.js"
import { heldName, NAME_MAX } from "../spool/layout.js"
import { lstatOrNull } from "../spool/places.js"
import { requireSpool } from "../spool/Spool.js"
import { visible } from "../log/text.js"

/** What became of one name, and the status it gives: 0 done; 1 nothing to do; 66 no such job; 73 a name taken; 77 not yours. */
interface Result {
  readonly says: string
  readonly status: 0 | 1 | 66 | 73 | 77
}

// A job file released is written again whole: one this large is for its owner to edit.
const MAX_REWRITE = 16 << 20

const mayTouch = (me: number, owner: number) => me === 0 || me === owner

const heldByDirective = (file: string, owner: number) => {
  const text = readRegular(file, owner, MAX_REWRITE)
  if (text === null) return null
  const d = parseDirectives(text)
  return d._tag === "Right" && d.right.hold ? text : null
}

const holdOne = (spool: string, me: number, name: string): Result => {
  const queued = path.join(spool, name)
  const held = path.join(spool, heldName(name))
  const s = lstatOrNull(queued)
  if (s === null) {
    return lstatOrNull(held) !== null
      ? { says: `${visible(name)}: held already`, status: 0 }
      : { says: `${visible(name)}: not queued (running, ended, or no such job): it cannot be held`, status: 66 }
  }
  if (!s.isFile()) return { says: `${visible(name)}: not a job file`, status: 66 }
  if (!mayTouch(me, s.uid)) return { says: `${visible(name)}: not yours (uid ${s.uid}); only its owner or root may hold it`, status: 77 }
  if (lstatOrNull(held) !== null) return { says: `${visible(name)}: a held job of that name is there already (${visible(heldName(name))})`, status: 73 }
  try {
    fs.renameSync(queued, held)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === "ENOENT") return { says: `${visible(name)}: a node took it first: it runs`, status: 1 }
    return { says: `${visible(name)}: cannot hold it: ${code ?? String(e)}`, status: code === "EPERM" || code === "EACCES" ? 77 : 73 }
  }
  return { says: `held: ${visible(name)}`, status: 0 }
}

/** HELD back in the queue as NAME: renamed, or written again without its --hold words (TEXT). */
const publish = (spool: string, name: string, held: string, text: string | null, s: fs.Stats) => {
  const queued = path.join(spool, name)
  if (text === null) return fs.renameSync(held, queued)
  // A name of its own: one a user planted (O_EXCL fails on it) must not stop a release.
  const aside = path.join(spool, `.pmjq-release-${randomBytes(8).toString("hex")}`)
  const fd = createNew(aside, s.mode & 0o777, process.getuid?.() === 0 ? { uid: s.uid, gid: s.gid } : null)
  try {
    fs.writeSync(fd, withoutHold(text))
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  // rename, not link: a job with two links is refused by the node that claims it.
  fs.renameSync(aside, queued)
  fs.unlinkSync(held)
}

const releaseOne = (spool: string, me: number, name: string): Result => {
  const queued = path.join(spool, name)
  const held = path.join(spool, heldName(name))
  let s = lstatOrNull(held)
  if (s === null) {
    // Held where it is, by its own #PMJQ --hold: taken aside first, so no node claims it while it is written again.
    const q = lstatOrNull(queued)
    if (q === null) return { says: `${visible(name)}: not held (no such job queued)`, status: 66 }
    if (!q.isFile() || heldByDirective(queued, q.uid) === null) return { says: `${visible(name)}: not held`, status: 1 }
    if (!mayTouch(me, q.uid)) return { says: `${visible(name)}: not yours (uid ${q.uid}); only its owner or root may release it`, status: 77 }
    fs.renameSync(queued, held)
    s = lstatOrNull(held)!
  }
  if (!s.isFile()) return { says: `${visible(name)}: ${visible(heldName(name))} is not a job file`, status: 66 }
  if (!mayTouch(me, s.uid)) return { says: `${visible(name)}: not yours (uid ${s.uid}); only its owner or root may release it`, status: 77 }
  if (lstatOrNull(queued) !== null) return { says: `${visible(name)}: a job of that name is queued already; release it after that one`, status: 73 }
  publish(spool, name, held, heldByDirective(held, s.uid), s)
  return { says: `released: ${visible(name)}`, status: 0 }
}

const each = (verb: "hold" | "release", act: (spool: string, me: number, name: string) => Result) =>
  Command.make(
    verb,
    {
      spool: Args.text({ name: "job-spool" }).pipe(Args.withDescription("The spool of the jobs (required).")),
      names: Args.text({ name: "name" }).pipe(Args.withDescription("A job's name, as `pmjq submit` printed it or `pmjq status` shows it."), Args.atLeast(1))
    },
    ({ names, spool }) =>
      Effect.gen(function*() {
        const dir = path.resolve(spool)
        yield* requireSpool(dir)
        const bad = names.find((n) => !isJobName(n) || Buffer.byteLength(heldName(n)) > NAME_MAX)
        if (bad !== undefined) return yield* new UsageError({ reason: `not a job's name that can be held: ${visible(bad)}` })
        const me = process.getuid?.() ?? 0
        let status = 0
        for (const name of names) {
          const result = yield* Effect.try({
            try: () => act(dir, me, name),
            catch: (e) => new UsageError({ reason: `cannot ${verb} ${visible(name)}: ${(e as Error).message}` })
          })
          yield* result.status === 0 ? Console.log(result.says) : Console.error(`pmjq: ${result.says}`)
          if (status === 0) status = result.status
        }
        if (status !== 0) process.exitCode = status
      })
  )

export const holdCommand = each("hold", holdOne).pipe(
  Command.withDescription("Hold queued jobs: they stay queued, and no node starts them, until released.")
)
export const releaseCommand = each("release", releaseOne).pipe(
  Command.withDescription("Release held jobs: back in the queue, as if they had just arrived.")
)

export const HOLD = "pmjq hold JOB-SPOOL NAME..."
export const RELEASE = "pmjq release JOB-SPOOL NAME..."
