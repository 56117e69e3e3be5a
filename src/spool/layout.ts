/**
 * Every name pmjq gives a file, and what counts as a job: the spool's layout
 * on disk, in one place. Pure functions of names (no I/O), so that the daemon,
 * recovery, `pmjq status` and `pmjq submit` can never disagree about a name.
 *
 *   job-spool/NAME                              a job: not hidden, not a directory, an execute bit
 *   job-spool/.pmjq-submit-NAME                 pmjq submit's job while it is written (hidden: ignored)
 *   job-spool/.pmjq/running/NODE/NAME           claimed by NODE; NAME.~N~ when NAME was taken there
 *   job-spool/.pmjq/running/NODE/.NAME.out      beside the claim: its output (.out, .err), its
 *                     .NAME.err .NAME.json      record (.json), the record of a cut run's
 *                     ..NAME.json               output (recovery: one more dot), and once its
 *                     .NAME.done ..NAME.done    archive entry is whole, where (.done); a long
 *                                               NAME cut and hashed
 *   job-spool/.pmjq/running/NODE/.from-DEAD/    a dead node's folder NODE took over (.from-DEAD.~N~ again)
 *   job-spool/.pmjq/nodes/NODE                  NODE's heartbeat, written as .NODE.tmp and renamed
 *   job-spool/.pmjq/attempts/NAME               recovery's notes on a requeued NAME
 *   job-spool/.pmjq/rejected/STAMP_NAME         refused jobs, when there is no error dir
 *   job-spool/.pmjq/quarantine/                 state pmjq could not trust
 *   job-spool/.pmjq/ended/UID/NAME              how UID's last job named NAME ended (its dependents read it)
 *   job-spool/.pmjq/paused/spool                `pmjq pause`: no node claims; paused/NODE: that node
 *   job-spool/.pmjq-held-NAME                   a job held by `pmjq hold` (hidden: never claimed)
 *   archive-dir/STAMP_NAME{,.out,.err,.json}    an archive entry; STAMP-N_NAME on a clash
 */
import { createHash } from "node:crypto"
import * as path from "node:path"

/** Longest file name most filesystems take (NAME_MAX, in bytes). */
export const NAME_MAX = 255

// ---- what is a job ----

/** Hidden names are never jobs: a user writes one there, then renames it in. */
export const isHidden = (name: string) => name.startsWith(".")

/** What an lstat tells about a file, as far as being a job goes. */
export interface JobShape {
  readonly isDirectory: () => boolean
  readonly mode: number
}

/**
 * A job, or something to refuse once claimed (a symlink, a FIFO...): not
 * hidden, not a directory (a spool may hold folders), with an execute bit
 * (`cat > job; chmod +x job` is fine: it is not one until the chmod).
 */
export const isJob = (name: string, stat: JobShape) => !isHidden(name) && !stat.isDirectory() && (stat.mode & 0o111) !== 0

// ---- pmjq's state: job-spool/.pmjq ----

export const STATE_DIR = ".pmjq"

/** The folders of .pmjq as components below the spool, for a walk that checks each level (dirs.ts: ownDirsBelow). */
export const stateParts = {
  state: [STATE_DIR],
  running: [STATE_DIR, "running"],
  nodes: [STATE_DIR, "nodes"],
  attempts: [STATE_DIR, "attempts"],
  ended: [STATE_DIR, "ended"],
  paused: [STATE_DIR, "paused"],
  node: (node: string) => [STATE_DIR, "running", node]
} as const

/** Below .pmjq itself: made private (0700), see quarantine.ts. */
export const QUARANTINE = "quarantine"

export const stateDir = (spool: string) => path.join(spool, STATE_DIR)
export const runningRoot = (spool: string) => path.join(spool, ...stateParts.running)
export const runningDir = (spool: string, node: string) => path.join(spool, ...stateParts.node(node))
export const nodesDir = (spool: string) => path.join(spool, ...stateParts.nodes)
export const attemptsDir = (spool: string) => path.join(spool, ...stateParts.attempts)
export const rejectedDir = (spool: string) => path.join(spool, STATE_DIR, "rejected")
export const quarantineDir = (spool: string) => path.join(spool, STATE_DIR, QUARANTINE)

/** A file set aside in quarantine: unique (a time and random tag), so no earlier one is replaced. */
export const quarantineName = (at: number, tag: string, file: string) => `${at}-${tag}-${path.basename(file)}`

/**
 * What a file is written as before it is renamed over its name, so readers see
 * it whole or not at all. The only files in pmjq's folders that may be removed
 * unread: a crash can leave one half-written.
 */
export const asideOf = (file: string) => `${file}.tmp`
export const isAside = (name: string) => name.endsWith(".tmp")

// ---- heartbeats: .pmjq/nodes ----

export const heartbeatFile = (spool: string, node: string) => path.join(nodesDir(spool), node)
/** Hidden, so no reader takes it for a node's heartbeat while it is written. */
export const heartbeatAside = (spool: string, node: string) => path.join(nodesDir(spool), `.${node}.tmp`)

/** The node whose heartbeat aside NAME is (".NODE.tmp"), or null for any other name. */
export const asideNode = (name: string): string | null => {
  const m = /^\.(.+)\.tmp$/s.exec(name)
  return m === null ? null : m[1]!
}

// ---- how jobs ended, for their dependents: .pmjq/ended ----

/**
 * A user's own folder of notes: a dependency names one of its owner's jobs, so
 * no other user's job of that name can stand in for it or overwrite its note.
 */
export const endedParts = (uid: number) => [...stateParts.ended, String(uid)]
/** The note of how UID's last job named NAME ended, replaced by each later one (rename). */
export const endedFile = (spool: string, uid: number, name: string) => path.join(spool, ...endedParts(uid), name)
/** Unique to the writer, hidden (no job's name starts with a dot). */
export const endedAside = (spool: string, uid: number, pid: number, token: string) => path.join(spool, ...endedParts(uid), `.${pid}.${token}.tmp`)

// ---- pauses: .pmjq/paused ----

/** The pause of the whole spool; a node's own is paused/NODE (a node id is never "spool": see pausedFile). */
export const SPOOL_PAUSE = "spool"
export const pausedDir = (spool: string) => path.join(spool, ...stateParts.paused)
/** NODE's pause file, or the whole spool's for null. */
export const pausedFile = (spool: string, node: string | null) => path.join(pausedDir(spool), node === null ? SPOOL_PAUSE : `node-${node}`)

// ---- holds: job-spool/.pmjq-held-NAME ----

export const HELD_PREFIX = ".pmjq-held-"
/** Where `pmjq hold` moves job NAME: hidden, so no node claims it, and still its owner's file in the spool. */
export const heldName = (name: string) => `${HELD_PREFIX}${name}`
/** The job a held file's name holds, or null. */
export const heldJob = (fileName: string): string | null =>
  fileName.startsWith(HELD_PREFIX) && !isAside(fileName) && fileName.length > HELD_PREFIX.length ? fileName.slice(HELD_PREFIX.length) : null

// ---- recovery's attempt notes: .pmjq/attempts ----

export const notesFile = (spool: string, name: string) => path.join(attemptsDir(spool), name)
/** Unique to the writer (its pid and the time), hidden so it is never taken for a job's notes. */
export const notesAside = (spool: string, pid: number, at: number) => path.join(attemptsDir(spool), `.${pid}.${at}.tmp`)

// ---- claims: .pmjq/running/NODE ----

/** Numbered like GNU backups (NAME, NAME.~1~, NAME.~2~...), so a second same-named claim never replaces the first. */
export const claimName = (name: string, n: number) => (n === 0 ? name : `${name}.~${n}~`)

const CLAIM_COPY = /\.~\d+~$/

/** The job's name as submitted, from its claimed file's name (the record, when there is one, keeps it too). */
export const claimedName = (fileName: string) => fileName.replace(CLAIM_COPY, "")

/**
 * The files kept beside a claim: its output, its record, and its done mark;
 * and the record of a cut run's output, with its own done mark (see besideName).
 */
export type Beside = ".out" | ".err" | ".json" | ".done" | "cutRecord" | "cutDone"

/** Every name a claim's files may take: a new claim is made only where none is taken (a crash can leave any of them). */
export const BESIDE: ReadonlyArray<Beside> = [".out", ".err", ".json", ".done", "cutRecord", "cutDone"]

/**
 * `.NAME.out`, `.NAME.err`, `.NAME.json`, `.NAME.done`: hidden, so a job called
 * "x.out" never meets the output of a job called "x". Derived from the claim's
 * name alone, so recovery finds them. A cut run's record and its mark take one
 * more dot in front, `..NAME.json` and `..NAME.done`: no job's file can have
 * such a name, since a job's NAME never starts with a dot (`.x.cut.json`, their
 * name once, was also the record of a job called "x.cut").
 *
 * A name too long for NAME_MAX with its additions and an aside's ".tmp" is cut
 * and made unique by a hash of the whole name: one base for every file of the
 * claim, so each is found from any other (a base per suffix once differed at
 * 246 bytes, and a cut record of a 242-byte name could not be written at all).
 */
export const besideName = (claimFile: string, kind: Beside) =>
  kind === "cutRecord" ? `${cutBase(besideBase(claimFile))}.json` : kind === "cutDone" ? `${cutBase(besideBase(claimFile))}.done` : `${besideBase(claimFile)}${kind}`

/** A cut run's files: its job's base with one more dot, a name no job's file can have. */
const cutBase = (base: string) => `.${base}`
const isCutBase = (base: string) => base.startsWith("..")

/** Whether a record file is a cut run's (recovery's, `..NAME.json`): it says nothing of how the job ended. */
export const isCutRecord = (recordFile: string) => isCutBase(path.basename(recordFile))

// The room once kept for ".cut.json", the longest addition then. Kept, though
// the additions are shorter now: a smaller room would hash other names than
// it did, and a spool written before could no longer be read back.
const ADDED = ".cut.json".length

const besideBase = (claimFile: string) => {
  const room = NAME_MAX - 1 - ADDED - ".tmp".length
  const short = Buffer.byteLength(claimFile) <= room
    ? claimFile
    : Buffer.from(claimFile).subarray(0, room - 17).toString().replace(/\uFFFD+$/, "") + "-" + createHash("sha256").update(claimFile).digest("hex").slice(0, 16)
  return `.${short}`
}

/**
 * `.NAME.done` beside `.NAME.json` (`..NAME.done` beside `..NAME.json`):
 * written once the entry of that record is whole in an archive dir, before
 * the running folder is cleared, and removed last. Whoever finishes the
 * clearing (this node after a crash, or another node, whose archive dir may be
 * another host's) then finds the job archived, and does not archive it again.
 */
export const doneMarkOf = (recordFile: string) => {
  if (!recordFile.endsWith(".json")) throw new Error(`not a record's name: ${recordFile}`)
  return `${recordFile.slice(0, -".json".length)}.done`
}

/**
 * A done mark: a hidden file named so. One whose job's files are all gone
 * says nothing any more: a folder holding only those (and asides) may go.
 */
export const isDoneMark = (entry: FolderEntry) => !entry.isDirectory && isHidden(entry.name) && entry.name.endsWith(".done")

/** besideName, in the claim's folder. */
export const besideClaim = (claimPath: string, suffix: Beside) => path.join(path.dirname(claimPath), besideName(path.basename(claimPath), suffix))

/** One job's files in a running folder, by name. */
export interface LeftoverNames {
  /** The claimed file, if it is still there. */
  readonly claim: string | null
  /** The job's name as far as file names tell; its record, when there is one, says better. */
  readonly name: string
  /** Its record's name (where it is, or will be, written), and whether the folder holds it. */
  readonly record: string
  readonly hasRecord: boolean
  /**
   * `..NAME.json`: the record of the entry recovery made of a cut run's
   * output, kept apart from `.NAME.json` (it says nothing about how the job
   * ended); and whether the folder holds it.
   */
  readonly cutRecord: string
  readonly hasCutRecord: boolean
  /** Its output files, when the folder holds them. */
  readonly stdout: string | null
  readonly stderr: string | null
}

/** A name in a running folder, and whether it is a folder. */
export interface FolderEntry {
  readonly name: string
  readonly isDirectory: boolean
}

/**
 * What a running folder holds, by name: each claim with the files beside it;
 * outputs and records whose claim already left (a crash in the middle of
 * archival); and the folders of dead nodes its owner had taken over. Other
 * hidden files (asides, a cut record without its claim, a done mark whose
 * job's files are gone) belong to none.
 */
export const folderContents = (entries: ReadonlyArray<FolderEntry>): {
  readonly leftovers: ReadonlyArray<LeftoverNames>
  readonly adopted: ReadonlyArray<string>
} => {
  const names = new Set(entries.map((e) => e.name))
  const leftovers: Array<LeftoverNames> = []
  const seen = new Set<string>()
  const add = (claim: string | null, base: string, name: string) => {
    seen.add(base)
    const [record, cutRecord, stdout, stderr] = [`${base}.json`, `${cutBase(base)}.json`, `${base}.out`, `${base}.err`]
    leftovers.push({
      claim,
      name,
      record,
      hasRecord: names.has(record),
      cutRecord,
      hasCutRecord: names.has(cutRecord),
      stdout: names.has(stdout) ? stdout : null,
      stderr: names.has(stderr) ? stderr : null
    })
  }
  for (const e of entries) {
    if (isHidden(e.name) || e.isDirectory) continue
    add(e.name, besideBase(e.name), claimedName(e.name))
  }
  for (const e of entries) {
    const m = /^(\..*)\.(json|out|err)$/.exec(e.name)
    // A cut run's record ("..NAME.json") is found from its job's files.
    if (m === null || seen.has(m[1]!) || isCutBase(m[1]!)) continue
    add(null, m[1]!, claimedName(m[1]!.slice(1)))
  }
  return { leftovers, adopted: entries.filter((e) => e.isDirectory && isAdopted(e.name)).map((e) => e.name) }
}

// ---- takeovers: .pmjq/running/NODE/.from-DEAD ----

const ADOPTED_PREFIX = ".from-"

/** Where a dead node's folder goes in its taker's: `.from-DEAD`, numbered when a reused node id died again. */
export const adoptedName = (dead: string, n: number) => claimName(ADOPTED_PREFIX + dead, n)

export const isAdopted = (name: string) => name.startsWith(ADOPTED_PREFIX)

/** The dead node a taken-over folder came from: `.from-NODE` or `.from-NODE.~N~`. */
export const deadOf = (folder: string) => {
  const name = path.basename(folder)
  return claimedName(isAdopted(name) ? name.slice(ADOPTED_PREFIX.length) : name)
}

// ---- archive entries: DIR/STAMP_NAME ----

/** UTC YYYYMMDDTHHMMSS.mmmZ: sorts by time, and has no ':' to trouble shells or SMB. */
export const stamp = (date: Date): string => date.toISOString().replace(/[-:]/g, "")

/** UTC YYYYMMDDTHHMMSSZ: `stamp` to the second, for names people type (pmjq submit). */
export const stampSeconds = (date: Date): string => stamp(date).replace(/\.\d+Z$/, "Z")

/** The files of the entry at BASE (DIR/STAMP_NAME). */
export const entryFiles = (base: string) => ({ script: base, stdout: `${base}.out`, stderr: `${base}.err`, record: `${base}.json` })

// The entry name leaves room for its longest part.
const LONGEST_PART = ".json".length

const fitName = (prefix: string, name: string): string => {
  const room = NAME_MAX - LONGEST_PART - Buffer.byteLength(prefix)
  if (Buffer.byteLength(name) <= room) return name
  // Cut on a character boundary; the record keeps the full name.
  let cut = ""
  for (const ch of name) {
    if (Buffer.byteLength(cut + ch) > room) break
    cut += ch
  }
  return cut
}

/** STAMP_NAME, then STAMP-1_NAME, STAMP-2_NAME... NAME cut to fit NAME_MAX with its parts. */
export const entryName = (entryStamp: string, name: string, clash: number): string => {
  const prefix = clash === 0 ? `${entryStamp}_` : `${entryStamp}-${clash}_`
  return prefix + fitName(prefix, name)
}

/**
 * What is placed in an archive dir is first made under a short hidden name
 * beside the entry (DIR may already hold names NAME_MAX long), then linked in:
 * no reader sees an entry's file half written. TOKEN: 16 random hex digits.
 */
export const archiveAside = (dir: string, token: string) => path.join(dir, `.pmjq-copy-${token}.tmp`)
export const isArchiveAside = (name: string) => /^\.pmjq-copy-[0-9a-f]{16}\.tmp$/.test(name)

/** The entry a record's file name belongs to (STAMP_NAME.json → STAMP_NAME), or null when it is no entry's record. */
export const entryOfRecord = (fileName: string): string | null =>
  fileName.endsWith(".json") && !isHidden(fileName) ? fileName.slice(0, -".json".length) : null

// ---- pmjq submit ----

/**
 * A submitted job's name, BASE-STAMP-HOST-PID-RANDOM, with only [A-Za-z0-9._-]
 * and no leading dot: unique across hosts and processes, and safe to type.
 */
export const submittedName = (base: string, at: Date, host: string, pid: number, random: string) => {
  const clean = base.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "").slice(0, 100) || "job"
  return `${clean}-${stampSeconds(at)}-${host.replace(/[^A-Za-z0-9-]/g, "_")}-${pid}-${random}`
}

/** Where pmjq submit writes a job before it is whole: hidden, so never taken for a job. */
export const submitAside = (name: string) => `.pmjq-submit-${name}`

/**
 * A request of `pmjq cancel`: a hidden file in the spool (never a job), made by
 * the user who asks (its owner says who), naming one job. Written aside
 * (`.tmp`) and renamed, so a node never reads half of one.
 */
export const CANCEL_PREFIX = ".pmjq-cancel-"
export const cancelRequestName = (uid: number, at: number, random: string) => `${CANCEL_PREFIX}${uid}-${at}-${random}`
export const isCancelRequest = (name: string) => name.startsWith(CANCEL_PREFIX) && !isAside(name)
