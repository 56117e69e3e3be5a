/**
 * Which claimed files pmjq refuses to run. The checks are made on the file as
 * claimed: after the rename it sits in a folder only pmjq can write, so what
 * was checked is what runs (no check-then-run race with the file's owner).
 */
import type { FileFacts } from "../filesystem/files.js"

export interface RefusalPolicy {
  /** pmjq runs as root. */
  readonly asRoot: boolean
  /** Jobs run as their file's owner (only as root). */
  readonly runAsOwner: boolean
  /** --allow-users, as uids; null when not given. */
  readonly allowUsers: ReadonlySet<number> | null
  /** --allow-groups, as gids; null when not given. */
  readonly allowGroups: ReadonlySet<number> | null
}

const S_ISUID = 0o4000
const S_ISGID = 0o2000

/**
 * Why the file is refused, or null to run it. `ownerGroups` gives the owner's
 * groups (asked only when --allow-groups needs them).
 */
export const refusal = (file: FileFacts, policy: RefusalPolicy, ownerGroups: () => ReadonlyArray<number>): string | null => {
  if (file.isSymlink) return "a symlink (never followed)"
  if (!file.isFile) return "not a regular file"
  if ((file.mode & (S_ISUID | S_ISGID)) !== 0) return "set-uid or set-gid"
  // Another name for the same file lets its owner change it after the checks.
  if (file.nlink > 1) return `it has ${file.nlink} hard links`
  if (policy.asRoot && (file.mode & 0o022) !== 0) return "writable by group or others, and pmjq runs as root"
  if (policy.asRoot && !policy.runAsOwner && file.uid !== 0) {
    return `owned by uid ${file.uid}, and pmjq runs as root without --run-as-owner`
  }
  if (policy.allowUsers !== null || policy.allowGroups !== null) {
    const byUser = policy.allowUsers?.has(file.uid) ?? false
    const byGroup = policy.allowGroups !== null && ownerGroups().some((g) => policy.allowGroups!.has(g))
    if (!byUser && !byGroup) return `owner uid ${file.uid} is not in --allow-users or --allow-groups`
  }
  return null
}
