import { describe, expect, it } from "vitest"
import { jobText, shellQuote, uniqueName, waitStatus } from "../../src/cli/submit.js"
import { isOwnRecord } from "../../src/spool/view.js"
import type { JobRecord } from "../../src/record/record.js"

describe("submit", () => {
  it("quotes words for /bin/sh exactly", () => {
    expect(shellQuote("a b")).toBe("'a b'")
    expect(shellQuote("it's")).toBe("'it'\\''s'")
    expect(shellQuote("$HOME `x` \"q\"")).toBe("'$HOME `x` \"q\"'")
  })

  it("a command becomes a sh script that first goes where it was submitted from, with the submitter's umask", () => {
    expect(jobText("/home/a b", { command: ["echo", "x y"] }, 0o027)).toBe(
      "#!/bin/sh\ncd '/home/a b' 2>/dev/null || { echo 'pmjq: submitted from /home/a b, which does not exist on this node' >&2; exit 1; }\numask 0027\nexec 'echo' 'x y'\n"
    )
  })

  it("--wait knows its own record by name, owner and inode, never a same-named job of another user", () => {
    const mine = { name: "j", uid: 1000, inode: 42 }
    const rec = (over: Partial<JobRecord>) => ({ name: "j", uid: 1000, inode: 42, ...over }) as JobRecord
    expect(isOwnRecord(rec({}), mine)).toBe(true)
    expect(isOwnRecord(rec({ uid: 1001 }), mine)).toBe(false)
    expect(isOwnRecord(rec({ inode: 43 }), mine)).toBe(false)
    expect(isOwnRecord(rec({ uid: null, inode: null }), mine)).toBe(false)
  })

  it("a shell file gets the cd after its #! line; another interpreter's file is left as it is", () => {
    expect(jobText("/w", { file: "f", text: "#!/bin/bash\npwd\n" }).split("\n").slice(0, 4)).toEqual(["#!/bin/bash", expect.stringMatching(/^cd '\/w' 2>\/dev\/null \|\|/), "umask 0022", "pwd"])
    expect(jobText("/w", { file: "f", text: "pwd\n" }).startsWith("#!/bin/sh\ncd '/w'")).toBe(true)
    expect(jobText("/w", { file: "f", text: "#!/usr/bin/env python3\nprint(1)\n" })).toBe("#!/usr/bin/env python3\nprint(1)\n")
  })

  it("names are unique and safe", () => {
    const a = uniqueName("../my job.sh")
    expect(a).toMatch(/^_my_job\.sh-\d{8}T\d{6}Z-[A-Za-z0-9_-]+-\d+-[0-9a-f]{6}$/)
    expect(uniqueName("x")).not.toBe(uniqueName("x"))
    expect(uniqueName("...")).toMatch(/^job-/)
  })

  it("--wait's exit status: the job's, 128+signal when killed, 1 when it never ran", () => {
    const r = (exitCode: number | null, signal: string | null) => ({ exitCode, signal }) as JobRecord
    expect(waitStatus(r(3, null))).toBe(3)
    expect(waitStatus(r(null, "SIGKILL"))).toBe(137)
    expect(waitStatus(r(null, null))).toBe(1)
  })
})
