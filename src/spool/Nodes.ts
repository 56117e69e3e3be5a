/**
 * The nodes sharing a spool, as the spool itself tells them:
 *
 *   job-spool/.pmjq/nodes/NODE          NODE's heartbeat, rewritten every lease/4
 *   job-spool/.pmjq/running/NODE/       what NODE has claimed
 *   job-spool/.pmjq/running/NODE/.from-DEAD/   a dead node's folder NODE took over
 *
 * A takeover is one rename(2) of the dead node's folder into the taker's own, so
 * when several nodes notice the same death exactly one wins, and what it took
 * stays its responsibility (should it die in turn, its folder goes, nested, to
 * the next taker).
 */
import { Context, Effect, Layer, Option } from "effect"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { decodeHeartbeat, decodeRecord, type Heartbeat } from "../decode.js"
import { listOrEmpty, ownDirsBelow, UntrustedDirectory } from "../dirs.js"
import { describe, errnoCode, SpoolIOError } from "../errors.js"
import { makeTrustedReader } from "./quarantine.js"
import type { JobRecord } from "../job/Record.js"
import { Syscalls } from "../syscalls.js"
import { besideClaim, refuseUntrusted, runningDir, STATE_DIR } from "./Spool.js"

/** A node's heartbeat, as written and as decoded (decode.ts). */
export type { Heartbeat }

/** Another node, as seen in the spool. */
export interface NodeView {
  readonly node: string
  /** Null when only its heartbeat is left (a takeover finished all but forgetting it). */
  readonly folder: string | null
  /** Last change to its running folder (claims, archivals), by the file server's clock. */
  readonly folderChangedAt: number
  readonly heartbeat: Heartbeat | null
}

/** What a claim left in a running folder, keyed by the hidden base of its files. */
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

export interface Inventory {
  readonly leftovers: ReadonlyArray<Leftover>
  /** Folders of dead nodes this folder's owner had taken over. */
  readonly folders: ReadonlyArray<string>
}

export class Nodes extends Context.Tag("pmjq/Nodes")<
  Nodes,
  {
    /** This node's own running folder. */
    readonly ownFolder: string
    readonly beat: (heartbeat: Heartbeat) => Effect.Effect<void, SpoolIOError>
    /** Every other node with a running folder. */
    readonly others: Effect.Effect<ReadonlyArray<NodeView>, SpoolIOError>
    /** Moves NODE's running folder into ours; none when another node took it first. */
    readonly takeOver: (node: string) => Effect.Effect<Option.Option<string>, SpoolIOError>
    /** Folders taken over earlier and not yet emptied (a round cut short). */
    readonly adopted: Effect.Effect<ReadonlyArray<string>, SpoolIOError>
    readonly inventory: (folder: string) => Effect.Effect<Inventory, SpoolIOError>
    /** Removes an emptied folder; false if something is still in it. */
    readonly removeFolder: (folder: string) => Effect.Effect<boolean, SpoolIOError>
    readonly forget: (node: string) => Effect.Effect<void, SpoolIOError>
    /** A clean exit: our heartbeat and folder go, unless jobs are still kept in it. */
    readonly leave: Effect.Effect<void, SpoolIOError>
  }
>() {}

export const ADOPTED_PREFIX = ".from-"
const CLAIM_COPY = /\.~\d+~$/

const ioCall = <A>(operation: string, file: string, run: () => Promise<A>) =>
  Effect.tryPromise({ try: run, catch: (e) => new SpoolIOError({ operation, path: file, reason: describe(e) }) })

const ignoreMissing = (e: unknown) => (errnoCode(e) === "ENOENT" ? undefined : Promise.reject(e))

export const NodesLive = ({ spool, node }: { readonly spool: string; readonly node: string }) =>
  Layer.effect(
    Nodes,
    Effect.gen(function*() {
      const calls = yield* Syscalls
      // Heartbeats and records pmjq did not write, or that do not decode, are
      // set aside and logged by the operation that met them.
      const { flush, readOwn } = makeTrustedReader(spool, calls)
      const io = <A>(operation: string, file: string, run: () => Promise<A>) => Effect.ensuring(ioCall(operation, file, run), flush)
      const nodesDir = path.join(spool, STATE_DIR, "nodes")
      const runningRoot = path.join(spool, STATE_DIR, "running")
      const mine = runningDir(spool, node)
      // A startup refusal, like the Spool's (whichever layer meets it first).
      yield* Effect.tryPromise({
        try: () => ownDirsBelow(spool, [STATE_DIR, "nodes"]),
        catch: (e) => (e instanceof UntrustedDirectory ? refuseUntrusted(e) : new SpoolIOError({ operation: "create", path: nodesDir, reason: describe(e) }))
      })

      // Written aside and renamed over: readers see a whole heartbeat, old or new.
      // Uninterruptible: an interrupted promise would still rename its file in,
      // after a clean exit had removed the heartbeat.
      const beat = (heartbeat: Heartbeat) =>
        Effect.uninterruptible(io("heartbeat", nodesDir, async () => {
          const aside = path.join(nodesDir, `.${node}.tmp`)
          // Made again if the spool was removed and made again under us.
          await ownDirsBelow(spool, [STATE_DIR, "nodes"])
          await calls.unlink(aside).catch(ignoreMissing)
          // Readable by all: pmjq status, run by any user, shows the nodes.
          await calls.writeNew(aside, JSON.stringify(heartbeat) + "\n", 0o644)
          await calls.rename(aside, path.join(nodesDir, node))
        }))

      // A heartbeat that cannot be believed: the node is judged by its folder's
      // age instead. It is left where it is: a live node of another version
      // rewrites it every beat, and moving it would make that node look dead.
      const readHeartbeat = (other: string): Promise<Heartbeat | null> => readOwn(path.join(nodesDir, other), decodeHeartbeat, true)

      const others = io("list nodes", runningRoot, async () => {
        const [folders, beats] = await Promise.all([listOrEmpty(runningRoot), listOrEmpty(nodesDir)])
        const names = new Set([...folders, ...beats].filter((n) => n !== node && !n.startsWith(".")))
        const views = await Promise.all([...names].map(async (other): Promise<NodeView | null> => {
          const folder = path.join(runningRoot, other)
          const stat = await fsp.lstat(folder).catch(() => null)
          const heartbeat = await readHeartbeat(other)
          if (stat !== null && stat.isDirectory()) return { node: other, folder, folderChangedAt: stat.mtimeMs, heartbeat }
          return heartbeat === null ? null : { node: other, folder: null, folderChangedAt: 0, heartbeat }
        }))
        return views.filter((v): v is NodeView => v !== null)
      })

      const takeOver = (dead: string) =>
        io("take over", path.join(runningRoot, dead), async () => {
          await ownDirsBelow(spool, [STATE_DIR, "running", node])
          // A node id used again (--node-id) can die again before its last
          // folder was emptied: the next one is numbered.
          for (let n = 0;; n++) {
            const target = path.join(mine, ADOPTED_PREFIX + dead + (n === 0 ? "" : `.~${n}~`))
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
        (await fsp.readdir(mine, { withFileTypes: true }).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? [] : Promise.reject(e))))
          .filter((e) => e.isDirectory() && e.name.startsWith(ADOPTED_PREFIX)).map((e) => path.join(mine, e.name)))

      const inventory = (folder: string) =>
        io("inventory", folder, async (): Promise<Inventory> => {
          const entries = await fsp.readdir(folder, { withFileTypes: true }).catch((e: unknown) =>
            errnoCode(e) === "ENOENT" ? [] : Promise.reject(e)
          )
          const names = new Set(entries.map((e) => e.name))
          const folders = entries.filter((e) => e.isDirectory() && e.name.startsWith(ADOPTED_PREFIX)).map((e) => path.join(folder, e.name))
          const leftovers: Array<Leftover> = []
          const seen = new Set<string>()
          const gather = async (file: string | null, hiddenBase: string, fallbackName: string) => {
            seen.add(hiddenBase)
            const read = (file: string) => (names.has(path.basename(file)) ? readOwn(file, decodeRecord) : null)
            const recordFile = path.join(folder, `${hiddenBase}.json`)
            const cutRecordFile = path.join(folder, `${hiddenBase}.cut.json`)
            const record = await read(recordFile)
            const cutRecord = await read(cutRecordFile)
            const stat = file === null ? null : await fsp.lstat(file)
            leftovers.push({
              file,
              name: record?.name ?? fallbackName,
              record,
              recordFile,
              cutRecord,
              cutRecordFile,
              stdout: names.has(`${hiddenBase}.out`) ? path.join(folder, `${hiddenBase}.out`) : null,
              stderr: names.has(`${hiddenBase}.err`) ? path.join(folder, `${hiddenBase}.err`) : null,
              claimedAt: stat?.ctimeMs ?? Date.now(),
              uid: stat?.uid ?? null,
              gid: stat?.gid ?? null,
              inode: stat?.ino ?? null
            })
          }
          for (const e of entries) {
            if (e.name.startsWith(".") || e.isDirectory()) continue
            const file = path.join(folder, e.name)
            await gather(file, path.basename(besideClaim(file, ".json"), ".json"), e.name.replace(CLAIM_COPY, ""))
          }
          // Outputs and records whose script already left (a crash mid-archival).
          for (const e of entries) {
            const m = /^(\..*)\.(json|out|err)$/.exec(e.name)
            if (m === null || seen.has(m[1]!) || e.name.endsWith(".cut.json")) continue
            await gather(null, m[1]!, m[1]!.slice(1).replace(CLAIM_COPY, ""))
          }
          return { leftovers, folders }
        })

      const removeFolder = (folder: string) =>
        io("remove", folder, async () => {
          // Half-written asides (.tmp) are the only files that may go unread.
          const names = await fsp.readdir(folder).catch((e: unknown) => (errnoCode(e) === "ENOENT" ? null : Promise.reject(e)))
          if (names === null) return true
          for (const n of names) if (n.endsWith(".tmp")) await calls.unlink(path.join(folder, n)).catch(ignoreMissing)
          try {
            await fsp.rmdir(folder)
            return true
          } catch (e) {
            const code = errnoCode(e)
            if (code === "ENOTEMPTY" || code === "EEXIST") return false
            if (code === "ENOENT") return true
            throw e
          }
        })

      const forget = (other: string) =>
        io("forget", path.join(nodesDir, other), async () => {
          await calls.unlink(path.join(nodesDir, other)).catch(ignoreMissing)
          await calls.unlink(path.join(nodesDir, `.${other}.tmp`)).catch(ignoreMissing)
        })

      const leave = Effect.gen(function*() {
        if (yield* removeFolder(mine)) yield* forget(node)
      })

      return Nodes.of({ ownFolder: mine, beat, others, takeOver, adopted, inventory, removeFolder, forget, leave })
    })
  )
