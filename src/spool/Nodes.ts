/**
 * The nodes sharing a spool, as the spool itself tells them:
 *
 *   job-spool/.pmjq/nodes/NODE          NODE's heartbeat, rewritten every lease/4 (via .NODE.tmp)
 *   job-spool/.pmjq/running/NODE/       what NODE has claimed
 *   job-spool/.pmjq/running/NODE/.from-DEAD/   a dead node's folder NODE took over
 *
 * (every name is layout.ts's). A takeover is one rename(2) of the dead node's
 * folder into the taker's own, so when several nodes notice the same death
 * exactly one wins, and what it took stays its responsibility (should it die
 * in turn, its folder goes, nested, to the next taker).
 *
 * A dead node's folder is listed once (inventory), then each leftover in it is
 * read on its own (gather): a record or script that cannot be read fails that
 * leftover alone, never the folder.
 */
import { Context, Effect, Either, Layer, Option } from "effect"
import * as path from "node:path"
import { decodeHeartbeat, decodeRecord, type Heartbeat } from "../record/decode.js"
import { listOrEmpty, ownDirsBelow, UntrustedDirectory } from "../filesystem/dirs.js"
import { describe, errnoCode, SpoolIOError } from "../errors/errors.js"
import type { JobRecord } from "../record/record.js"
import { Syscalls } from "../filesystem/syscalls.js"
import {
  type FolderEntry,
  adoptedName,
  asideNode,
  folderContents,
  heartbeatAside,
  heartbeatFile,
  isAdopted,
  isAside,
  isDoneMark,
  isHidden,
  type LeftoverNames,
  nodesDir as nodesDirOf,
  runningDir,
  runningRoot as runningRootOf,
  stateParts
} from "./layout.js"
import { makeTrustedReader } from "./quarantine.js"
import { refuseUntrusted } from "./Spool.js"

/** A node's heartbeat, as written and as decoded (decode.ts). */
export type { Heartbeat }

/** Another node, as seen in the spool. */
export interface NodeView {
  readonly node: string
  /**
   * Null when only its heartbeat is left (a takeover finished all but
   * forgetting it), or only its heartbeat's aside (killed in its first beat).
   */
  readonly folder: string | null
  /**
   * Last change to its running folder (claims, archivals), by the file
   * server's clock; for a node seen only by its aside, the aside's.
   */
  readonly folderChangedAt: number
  /** For a node seen only by its aside: the aside's, when it is whole. */
  readonly heartbeat: Heartbeat | null
}

/** What a claim left in a running folder, read (gather). */
export interface Leftover {
  /** The claimed script, if still there. */
  readonly file: string | null
  readonly name: string
  readonly record: JobRecord | null
  readonly recordFile: string
  /**
   * The record of an earlier recovery's entry for this job's cut run (its
   * output, archived before the job went back to the spool), if that recovery
   * was itself cut short. Kept apart from `recordFile`: it says nothing about
   * how the job ended.
   */
  readonly cutRecord: JobRecord | null
  readonly cutRecordFile: string
  readonly stdout: string | null
  readonly stderr: string | null
  /** When it was claimed (the claim's rename set its ctime). */
  readonly claimedAt: number
  /** Its script's owner and inode, when the script is there. */
  readonly uid: number | null
  readonly gid: number | null
  readonly inode: number | null
}

/** A running folder, by name: nothing in it is read yet, so nothing in it can fail the others. */
export interface Inventory {
  /** Each job's files, to `gather` and settle one by one. */
  readonly leftovers: ReadonlyArray<LeftoverNames>
  /** Folders of dead nodes this folder's owner had taken over. */
  readonly folders: ReadonlyArray<string>
}

export class Nodes extends Context.Tag("pmjq/Nodes")<
  Nodes,
  {
    /** This node's own running folder. */
    readonly ownFolder: string
    readonly beat: (heartbeat: Heartbeat) => Effect.Effect<void, SpoolIOError>
    /** Our own heartbeat as it is now (before our first beat: as the last process with this id left it). */
    readonly own: Effect.Effect<Option.Option<Heartbeat>, SpoolIOError>
    /** Every other node with a running folder. */
    readonly others: Effect.Effect<ReadonlyArray<NodeView>, SpoolIOError>
    /** Moves NODE's running folder into ours; none when another node took it first. */
    readonly takeOver: (node: string) => Effect.Effect<Option.Option<string>, SpoolIOError>
    /** Folders taken over earlier and not yet emptied (a round cut short). */
    readonly adopted: Effect.Effect<ReadonlyArray<string>, SpoolIOError>
    /** What FOLDER holds, by name (one listing). */
    readonly inventory: (folder: string) => Effect.Effect<Inventory, SpoolIOError>
    /** One leftover of FOLDER, read: its records and its script's facts. Fails for that leftover alone. */
    readonly gather: (folder: string, names: LeftoverNames) => Effect.Effect<Leftover, SpoolIOError>
    /** Removes an emptied folder; false if something is still in it. */
    readonly removeFolder: (folder: string) => Effect.Effect<boolean, SpoolIOError>
    readonly forget: (node: string) => Effect.Effect<void, SpoolIOError>
    /** A clean exit: our heartbeat and folder go, unless jobs are still kept in it. */
    readonly leave: Effect.Effect<void, SpoolIOError>
  }
>() {
  static readonly layer = (settings: NodesSettings) => Layer.effect(Nodes, make(settings))
}

interface NodesSettings {
  readonly spool: string
  readonly node: string
}

const ignoreMissing = (e: unknown) => (errnoCode(e) === "ENOENT" ? undefined : Promise.reject(e))

const make = ({ spool, node }: NodesSettings) =>
  Effect.gen(function*() {
    const calls = yield* Syscalls
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    // Heartbeats and records pmjq did not write, or that do not decode, are
    // set aside and logged by the operation that met them.
    const { io, readOwn } = makeTrustedReader(spool, calls, now)
    const uid = process.getuid?.() ?? 0
    const nodesDir = nodesDirOf(spool)
    const runningRoot = runningRootOf(spool)
    const mine = runningDir(spool, node)
    // A startup refusal, like the Spool's (whichever layer meets it first).
    yield* Effect.tryPromise({
      try: () => ownDirsBelow(calls, spool, stateParts.nodes),
      catch: (e) => (e instanceof UntrustedDirectory ? refuseUntrusted(e) : new SpoolIOError({ operation: "create", path: nodesDir, reason: describe(e) }))
    })

    // Written aside and renamed over: readers see a whole heartbeat, old or new.
    // Uninterruptible: an interrupted promise would still rename its file in,
    // after a clean exit had removed the heartbeat.
    const beat = (heartbeat: Heartbeat) =>
      Effect.uninterruptible(io("heartbeat", nodesDir, async () => {
        const aside = heartbeatAside(spool, node)
        // Made again if the spool was removed and made again under us.
        await ownDirsBelow(calls, spool, stateParts.nodes)
        await calls.unlink(aside).catch(ignoreMissing)
        // Readable by all: pmjq status, run by any user, shows the nodes.
        await calls.writeNew(aside, JSON.stringify(heartbeat) + "\n", 0o644)
        await calls.rename(aside, heartbeatFile(spool, node))
      }))

    // A heartbeat that cannot be believed: the node is judged by its folder's
    // age instead. It is left where it is: a live node of another version
    // rewrites it every beat, and moving it would make that node look dead.
    const readHeartbeat = (other: string): Promise<Heartbeat | null> => readOwn(heartbeatFile(spool, other), decodeHeartbeat, true)

    // A node killed in its very first beat, between writing its heartbeat's
    // aside and renaming it in, left that aside alone: no heartbeat, no
    // folder, nothing else for recovery to find, so it would stay for ever.
    // A whole one is judged as the heartbeat it was to be. A torn one goes at
    // once (judged as ancient): a live node's write takes microseconds, and
    // should one be caught in it, its rename fails, it says so, and its next
    // beat writes the heartbeat (it has no folder yet that anyone could take).
    // Not read through readOwn: a torn aside is a normal leftover of a kill,
    // nothing to set aside or to log.
    const asideView = async (other: string): Promise<NodeView | null> => {
      const aside = heartbeatAside(spool, other)
      const stat = await calls.lstat(aside).catch(() => null)
      if (stat === null) return null
      const text = await calls.readText(aside, uid).catch(() => null)
      const heartbeat = text === null ? null : Either.getOrNull(decodeHeartbeat(text))
      return { node: other, folder: null, folderChangedAt: heartbeat === null ? 0 : stat.mtimeMs, heartbeat }
    }

    const others = io("list nodes", runningRoot, async () => {
      const [folders, beats] = await Promise.all([listOrEmpty(calls, runningRoot), listOrEmpty(calls, nodesDir)])
      const names = new Set([...folders, ...beats].filter((n) => n !== node && !isHidden(n)))
      const views = await Promise.all([...names].map(async (other): Promise<NodeView | null> => {
        const folder = path.join(runningRoot, other)
        const stat = await calls.lstat(folder).catch(() => null)
        const heartbeat = await readHeartbeat(other)
        if (stat !== null && stat.isDirectory()) return { node: other, folder, folderChangedAt: stat.mtimeMs, heartbeat }
        return heartbeat === null ? null : { node: other, folder: null, folderChangedAt: 0, heartbeat }
      }))
      const asideOnly = beats.flatMap((n) => {
        const other = asideNode(n)
        return other === null || other === node || names.has(other) ? [] : [other]
      })
      const orphans = await Promise.all(asideOnly.map(asideView))
      return [...views, ...orphans].filter((v): v is NodeView => v !== null)
    })

    const takeOver = (dead: string) =>
      io("take over", path.join(runningRoot, dead), async () => {
        await ownDirsBelow(calls, spool, stateParts.node(node))
        // A node id used again (--node-id) can die again before its last
        // folder was emptied: the next one is numbered.
        for (let n = 0;; n++) {
          const target = path.join(mine, adoptedName(dead, n))
          try {
            await calls.rename(path.join(runningRoot, dead), target)
            return Option.some(target)
          } catch (e) {
            const code = errnoCode(e)
            if (code === "ENOTEMPTY" || code === "EEXIST") continue
            // ENOENT: another node took it first.
            if (code === "ENOENT") return Option.none<string>()
            throw e
          }
        }
      })

    // Real folders only: a symlink named like one is never followed.
    const adopted = io("list", mine, async () =>
      (await calls.entries(mine).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? [] : Promise.reject(e))))
        .filter((e) => e.isDirectory && isAdopted(e.name)).map((e) => path.join(mine, e.name)))

    const inventory = (folder: string) =>
      io("inventory", folder, async (): Promise<Inventory> => {
        const entries = await calls.entries(folder).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? [] : Promise.reject(e)))
        const contents = folderContents(entries)
        return { leftovers: contents.leftovers, folders: contents.adopted.map((name) => path.join(folder, name)) }
      })

    const gather = (folder: string, names: LeftoverNames) =>
      io("gather", path.join(folder, names.claim ?? names.record), async (): Promise<Leftover> => {
        const inFolder = (name: string) => path.join(folder, name)
        const file = names.claim === null ? null : inFolder(names.claim)
        // Read whatever the listing said: a job may have ended (its spawner
        // writing its record) since the folder was listed.
        const record = await readOwn(inFolder(names.record), decodeRecord)
        const cutRecord = names.hasCutRecord ? await readOwn(inFolder(names.cutRecord), decodeRecord) : null
        const stat = file === null ? null : await calls.lstat(file)
        return {
          file,
          name: record?.name ?? names.name,
          record,
          recordFile: inFolder(names.record),
          cutRecord,
          cutRecordFile: inFolder(names.cutRecord),
          stdout: names.stdout === null ? null : inFolder(names.stdout),
          stderr: names.stderr === null ? null : inFolder(names.stderr),
          claimedAt: stat?.ctimeMs ?? now(),
          uid: stat?.uid ?? null,
          gid: stat?.gid ?? null,
          inode: stat?.ino ?? null
        }
      })

    const removeFolder = (folder: string) =>
      io("remove", folder, async () => {
        // Half-written asides (.tmp) are the only files that may go unread;
        // done marks too, once nothing else is left (their jobs' files gone).
        const entries = await calls.entries(folder).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? null : Promise.reject(e)))
        if (entries === null) return true
        // Hidden files only: a claim (never hidden) of a job named x.tmp is a
        // job, and a taken-over folder may be named like an aside (node id x.tmp).
        const aside = (e: FolderEntry) => !e.isDirectory && isHidden(e.name) && isAside(e.name)
        const onlyMarks = entries.every((e) => aside(e) || isDoneMark(e))
        for (const e of entries) {
          if (aside(e) || (onlyMarks && isDoneMark(e))) await calls.unlink(path.join(folder, e.name)).catch(ignoreMissing)
        }
        try {
          await calls.rmdir(folder)
          return true
        } catch (e) {
          const code = errnoCode(e)
          if (code === "ENOTEMPTY" || code === "EEXIST") return false
          if (code === "ENOENT") return true
          throw e
        }
      })

    const forget = (other: string) =>
      io("forget", heartbeatFile(spool, other), async () => {
        await calls.unlink(heartbeatFile(spool, other)).catch(ignoreMissing)
        await calls.unlink(heartbeatAside(spool, other)).catch(ignoreMissing)
      })

    const leave = Effect.gen(function*() {
      if (yield* removeFolder(mine)) yield* forget(node)
    })

    const own = io("read heartbeat", heartbeatFile(spool, node), () => readHeartbeat(node)).pipe(Effect.map(Option.fromNullable))

    return Nodes.of({ ownFolder: mine, beat, own, others, takeOver, adopted, inventory, gather, removeFolder, forget, leave })
  })
