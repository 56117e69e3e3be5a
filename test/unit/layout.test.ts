/** Every name pmjq gives a file, and what counts as a job (src/spool/layout.ts). */
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  adoptedName,
  asideNode,
  besideClaim,
  besideName,
  claimedName,
  claimName,
  deadOf,
  entryName,
  entryOfRecord,
  folderContents,
  heartbeatAside,
  heartbeatFile,
  isAdopted,
  isHidden,
  isJob,
  NAME_MAX,
  notesAside,
  notesFile,
  rejectedDir,
  runningDir,
  stamp,
  stampSeconds,
  submitAside,
  submittedName
} from "../../src/spool/layout.js"

const bytes = (name: string) => Buffer.byteLength(name)
const stat = (mode: number, isDirectory = false) => ({ mode, isDirectory: () => isDirectory })
const entry = (name: string, isDirectory = false) => ({ name, isDirectory })

describe("what is a job", () => {
  it("a name that is not hidden, on a file that is not a directory and has an execute bit", () => {
    expect(isJob("job", stat(0o100755))).toBe(true)
    expect(isJob("job", stat(0o100100))).toBe(true)
    // A symlink or a FIFO with an execute bit is one too: refused once claimed, never run.
    expect(isJob("link", stat(0o120777))).toBe(true)
    expect(isJob("not-yet", stat(0o100644))).toBe(false)
    expect(isJob("folder", stat(0o40755, true))).toBe(false)
    expect(isJob(".hidden", stat(0o100755))).toBe(false)
    expect(isHidden(".pmjq")).toBe(true)
    expect(isHidden(submitAside("x"))).toBe(true)
  })
})

describe("pmjq's state in the spool", () => {
  it("lives under .pmjq, by node and by job name", () => {
    expect(runningDir("/s", "n1")).toBe("/s/.pmjq/running/n1")
    expect(heartbeatFile("/s", "n1")).toBe("/s/.pmjq/nodes/n1")
    expect(heartbeatAside("/s", "n1")).toBe("/s/.pmjq/nodes/.n1.tmp")
    expect(notesFile("/s", "job")).toBe("/s/.pmjq/attempts/job")
    expect(notesAside("/s", 42, 7)).toBe("/s/.pmjq/attempts/.42.7.tmp")
    expect(rejectedDir("/s")).toBe("/s/.pmjq/rejected")
  })

  it("a heartbeat's aside names its node; no other name in .pmjq/nodes does", () => {
    expect(asideNode(path.basename(heartbeatAside("/s", "build1-4242")))).toBe("build1-4242")
    expect(asideNode(path.basename(heartbeatAside("/s", "a.b")))).toBe("a.b")
    expect(asideNode("build1-4242")).toBeNull()
    expect(asideNode(".tmp")).toBeNull()
    expect(asideNode("x.tmp")).toBeNull()
  })
})

describe("claims", () => {
  it("a second same-named claim is numbered, and the number is not part of the job's name", () => {
    expect(claimName("job", 0)).toBe("job")
    expect(claimName("job", 2)).toBe("job.~2~")
    expect(claimedName("job.~2~")).toBe("job")
    expect(claimedName("job")).toBe("job")
  })

  it("the files beside a claim are hidden, so a job called x.out never meets the output of x", () => {
    expect(besideClaim("/r/n1/x", ".out")).toBe("/r/n1/.x.out")
    expect(besideClaim("/r/n1/x", ".json")).toBe("/r/n1/.x.json")
    expect(besideName("x.~1~", ".err")).toBe(".x.~1~.err")
  })

  it("a long name's are cut and hashed, and fit NAME_MAX with an aside's .tmp; two long names never share them", () => {
    const a = "a".repeat(250)
    const b = "a".repeat(249) + "b"
    for (const suffix of [".out", ".err", ".json"] as const) {
      expect(bytes(besideName(a, suffix) + ".tmp")).toBeLessThanOrEqual(NAME_MAX)
      expect(besideName(a, suffix)).not.toBe(besideName(b, suffix))
    }
    // Cut on a character boundary: no half of a multi-byte character.
    expect(besideName("é".repeat(127), ".json")).not.toContain("\uFFFD")
  })

  it("every name length has one base for all the files beside its claim, and a cut run's record with its .tmp fits too", () => {
    for (let length = 230; length <= 255; length++) {
      const name = "n".repeat(length)
      const base = besideName(name, ".json").slice(0, -".json".length)
      for (const suffix of [".out", ".err"] as const) expect([length, besideName(name, suffix)]).toEqual([length, base + suffix])
      expect([length, besideName(name, "cutRecord")]).toEqual([length, `.${base}.json`])
      expect([length, bytes(besideName(name, "cutRecord") + ".tmp") <= NAME_MAX]).toEqual([length, true])
    }
  })

  it("a running folder is read as claims with their files, files whose claim left, and adopted folders", () => {
    const long = "l".repeat(250)
    const { adopted, leftovers } = folderContents([
      entry("done"),
      entry(".done.json"),
      entry(".done.out"),
      entry("cut.~1~"),
      entry("..cut.~1~.json"),
      entry(".cut.~1~.err"),
      entry(long),
      entry(besideName(long, ".json")),
      entry(".gone.json"),
      entry(".gone.out"),
      entry("..stray.json"),
      entry(".late.cut.json"),
      entry(".done.json.tmp"),
      entry(".from-dead", true),
      entry(".from-dead.~1~", true),
      entry("a-folder", true)
    ])
    expect(adopted).toEqual([".from-dead", ".from-dead.~1~"])
    expect(leftovers).toEqual([
      { claim: "done", name: "done", record: ".done.json", hasRecord: true, cutRecord: "..done.json", hasCutRecord: false, stdout: ".done.out", stderr: null },
      {
        claim: "cut.~1~",
        name: "cut",
        record: ".cut.~1~.json",
        hasRecord: false,
        cutRecord: "..cut.~1~.json",
        hasCutRecord: true,
        stdout: null,
        stderr: ".cut.~1~.err"
      },
      expect.objectContaining({ claim: long, name: long, record: besideName(long, ".json"), hasRecord: true }),
      { claim: null, name: "gone", record: ".gone.json", hasRecord: true, cutRecord: "..gone.json", hasCutRecord: false, stdout: ".gone.out", stderr: null },
      // The record of a job called "late.cut" (once taken for a cut record of "late", and left behind).
      { claim: null, name: "late.cut", record: ".late.cut.json", hasRecord: true, cutRecord: "..late.cut.json", hasCutRecord: false, stdout: null, stderr: null }
    ])
  })
})

describe("takeovers", () => {
  it("a dead node's folder is .from-DEAD in its taker's, numbered when the id died again", () => {
    expect(adoptedName("n1", 0)).toBe(".from-n1")
    expect(adoptedName("n1", 3)).toBe(".from-n1.~3~")
    expect(isAdopted(adoptedName("n1", 3))).toBe(true)
    expect(deadOf("/r/n2/.from-n1")).toBe("n1")
    expect(deadOf("/r/n2/.from-n1.~3~")).toBe("n1")
    expect(deadOf(".from-host-1.example")).toBe("host-1.example")
  })
})

describe("archive entries", () => {
  it("stamps are UTC, millisecond, sortable; submit's are to the second", () => {
    const at = new Date(Date.UTC(2026, 10, 29, 9, 5, 7, 42))
    expect(stamp(at)).toBe("20261129T090507.042Z")
    expect(stampSeconds(at)).toBe("20261129T090507Z")
  })

  it("a clash takes the next counter, never the same name", () => {
    expect(entryName("S", "job", 0)).toBe("S_job")
    expect(entryName("S", "job", 2)).toBe("S-2_job")
  })

  it("names that would pass NAME_MAX are cut on a character boundary", () => {
    const long = "é".repeat(200)
    const name = entryName("20261129T090507.042Z", long, 12)
    expect(bytes(name + ".json")).toBeLessThanOrEqual(NAME_MAX)
    expect(name.startsWith("20261129T090507.042Z-12_é")).toBe(true)
    expect(name).not.toContain("\uFFFD")
  })

  it("a record's file names its entry; a hidden or other file names none", () => {
    expect(entryOfRecord("20261129T090507.042Z_job.json")).toBe("20261129T090507.042Z_job")
    expect(entryOfRecord("20261129T090507.042Z_job.out")).toBeNull()
    expect(entryOfRecord(".x.json")).toBeNull()
  })
})

describe("submitted names", () => {
  it("BASE-STAMP-HOST-PID-RANDOM, with only safe characters and no leading dot", () => {
    const at = new Date(Date.UTC(2026, 10, 29, 9, 5, 7, 42))
    expect(submittedName("build.sh", at, "host1", 42, "a1b2c3")).toBe("build.sh-20261129T090507Z-host1-42-a1b2c3")
    expect(submittedName("..a b/c", at, "h.local", 1, "ff")).toBe("a_b_c-20261129T090507Z-h_local-1-ff")
    expect(submittedName("...", at, "h", 1, "ff")).toBe("job-20261129T090507Z-h-1-ff")
    expect(bytes(submittedName("x".repeat(300), at, "h", 1, "ff"))).toBeLessThan(NAME_MAX)
  })
})
