/**
 * .pmjq/quarantine/: state pmjq could not trust or decode (a record that does
 * not parse, a file in .pmjq it did not make, a FIFO where a record should
 * be), set aside under a unique name so that nothing is lost and nothing
 * untrusted is believed. Only pmjq (and root) can look inside.
 */
import { Effect, Either } from "effect"
import { randomBytes } from "node:crypto"
import * as path from "node:path"
import { ownDirsBelow } from "../filesystem/dirs.js"
import { describe, errnoCode, spoolIO } from "../errors/errors.js"
import { Untrusted } from "../filesystem/files.js"
import type { Calls } from "../filesystem/syscalls.js"
import { QUARANTINE, quarantineDir, quarantineName, stateDir, stateParts } from "./layout.js"

/** Moves FILE (in the spool's .pmjq, so on its filesystem) aside; returns where it went. */
const quarantine = async (calls: Calls, spool: string, file: string, at: number): Promise<string> => {
  await ownDirsBelow(calls, spool, stateParts.state)
  await ownDirsBelow(calls, stateDir(spool), [QUARANTINE], 0o700)
  // Unique, so no earlier quarantined file is replaced by the rename.
  const target = path.join(quarantineDir(spool), quarantineName(at, randomBytes(4).toString("hex"), file))
  await calls.rename(file, target)
  return target
}

/** A file set aside (or left in place, ignored), and why: for the caller's log. */
interface Quarantined {
  readonly file: string
  readonly reason: string
  /** Where it went; "left" when it is ignored where it is (by choice, or because it could not be moved). */
  readonly to: string
}

/** Quarantines FILE, never failing: what could not be moved is ignored where it is. */
const setAside = async (calls: Calls, spool: string, file: string, reason: string, at: number): Promise<Quarantined> => {
  try {
    return { file, reason, to: await quarantine(calls, spool, file, at) }
  } catch {
    return { file, reason, to: "left" }
  }
}

/** The log line for a file set aside. */
const logSetAside = (q: Quarantined) =>
  q.to === "left"
    ? Effect.logWarning("untrusted state ignored").pipe(Effect.annotateLogs({ file: q.file, reason: q.reason }))
    : Effect.logWarning("untrusted state quarantined").pipe(Effect.annotateLogs({ file: q.file, reason: q.reason, to: q.to }))

/**
 * Reads pmjq's own state files in SPOOL's .pmjq, and sets aside what cannot be
 * believed; the Effect around the reads runs `flush` to log what was set aside.
 * `now` dates what is set aside (the caller's Clock).
 */
export const makeTrustedReader = (spool: string, calls: Calls, now: () => number) => {
  const uid = process.getuid?.() ?? 0
  const pending: Array<Quarantined> = []
  const report = async (file: string, reason: string) => {
    pending.push(await setAside(calls, spool, file, reason, now()))
  }
  // Files left in place are said once per reason, not every round.
  const said = new Set<string>()
  const ignore = (file: string, reason: string) => {
    const key = `${file}\0${reason}`
    if (!said.has(key)) pending.push({ file, reason, to: "left" })
    said.add(key)
  }
  /**
   * The text of one of pmjq's own files, decoded; null when there is none.
   * Another's file, a symlink, a FIFO, or text that does not decode is set
   * aside (with `leave`, ignored where it is) and judged absent; other I/O
   * errors fail as usual.
   */
  const readOwn = async <A>(
    file: string,
    decode: (text: string) => Either.Either<A, string>,
    leave = false
  ): Promise<A | null> => {
    const distrust = (reason: string) => (leave ? ignore(file, reason) : report(file, reason))
    let text: string | null
    try {
      text = await calls.readText(file, uid)
    } catch (e) {
      // Only what is not pmjq's own file is set aside; an I/O error is an I/O error.
      if (!(e instanceof Untrusted) && errnoCode(e) !== "ELOOP") throw e
      await distrust(describe(e))
      return null
    }
    if (text === null) return null
    const decoded = decode(text)
    if (Either.isRight(decoded)) return decoded.right
    await distrust(decoded.left)
    return null
  }
  const flush = Effect.suspend(() => Effect.forEach(pending.splice(0), logSetAside, { discard: true }))
  /** An operation on the spool (spoolIO) that logs what it set aside, however it ends. */
  const io = <A>(operation: string, file: string, run: () => Promise<A>) => Effect.ensuring(spoolIO(operation, file, run), flush)
  return { readOwn, setAside: report, flush, io }
}
