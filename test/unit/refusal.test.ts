import { describe, expect, it } from "vitest"
import type { FileFacts } from "../../src/filesystem/files.js"
import { refusal, type RefusalPolicy } from "../../src/owners/refusal.js"

const file = (over: Partial<FileFacts> = {}): FileFacts => ({ isFile: true, isSymlink: false, mode: 0o100755, uid: 1000, gid: 1000, nlink: 1, ino: 1, ...over })
const policy = (over: Partial<RefusalPolicy> = {}): RefusalPolicy => ({ asRoot: false, runAsOwner: false, allowUsers: null, allowGroups: null, ...over })
const noGroups = () => []

describe("refusal rules", () => {
  it("runs a plain file of one's own", () => {
    expect(refusal(file(), policy(), noGroups)).toBeNull()
  })
  it("refuses set-uid, set-gid and hard-linked files, whoever runs pmjq", () => {
    expect(refusal(file({ mode: 0o104755 }), policy(), noGroups)).toBe("set-uid or set-gid")
    expect(refusal(file({ mode: 0o102755 }), policy(), noGroups)).toBe("set-uid or set-gid")
    expect(refusal(file({ nlink: 2 }), policy(), noGroups)).toBe("it has 2 hard links")
    expect(refusal(file({ isFile: false }), policy(), noGroups)).toBe("not a regular file")
    expect(refusal(file({ isFile: false, isSymlink: true }), policy(), noGroups)).toBe("a symlink (never followed)")
  })
  it("as root: refuses files others may write, and others' files unless --run-as-owner", () => {
    expect(refusal(file({ uid: 0, mode: 0o100775 }), policy({ asRoot: true }), noGroups)).toMatch(/writable by group or others/)
    expect(refusal(file({ uid: 0, mode: 0o100757 }), policy({ asRoot: true }), noGroups)).toMatch(/writable by group or others/)
    expect(refusal(file({ uid: 0 }), policy({ asRoot: true }), noGroups)).toBeNull()
    expect(refusal(file({ uid: 1001 }), policy({ asRoot: true }), noGroups)).toBe("owned by uid 1001, and pmjq runs as root without --run-as-owner")
    expect(refusal(file({ uid: 1001 }), policy({ asRoot: true, runAsOwner: true }), noGroups)).toBeNull()
    // Not root: group-writable is the owner's business.
    expect(refusal(file({ mode: 0o100775 }), policy(), noGroups)).toBeNull()
  })
  it("with --allow-users or --allow-groups, only their files", () => {
    const allow = policy({ allowUsers: new Set([1000]), allowGroups: new Set([50]) })
    expect(refusal(file({ uid: 1000 }), allow, noGroups)).toBeNull()
    expect(refusal(file({ uid: 1002 }), allow, () => [1002, 50])).toBeNull()
    expect(refusal(file({ uid: 1002 }), allow, () => [1002])).toBe("owner uid 1002 is not in --allow-users or --allow-groups")
  })
})
