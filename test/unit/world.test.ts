import { describe, expect, it } from "vitest"
import { PRIVATE, recordKeeping, SHARED_WITH_GROUP } from "../../src/filesystem/files.js"
import {
  fdinfoFlags,
  jobCommand,
  jobDirectory,
  jobEnvironment,
  type JobUser,
  O_CLOEXEC,
  OWNER_PATH,
  strayDescriptors
} from "../../src/spawner/world.js"

const alice: JobUser = { uid: 1001, gid: 1002, name: "alice", home: "/home/alice", shell: "/bin/bash" }
const pmjqEnv = {
  PATH: "/root/bin:/usr/sbin:/usr/bin",
  HOME: "/root",
  USER: "root",
  SECRET_OF_ROOT: "x",
  LD_PRELOAD: "/tmp/evil.so",
  LANG: "fr_FR.UTF-8",
  LC_TIME: "C",
  TZ: "Europe/Paris",
  HTTP_PROXY: "http://proxy:3128",
  UNSET: undefined
}
const jobVars = { PMJQ_JOB: "j", PMJQ_SPOOL: "/s", PMJQ_NODE: "n", PMJQ_ATTEMPT: "1" }

describe("a job's environment", () => {
  it("run as its owner: a fixed PATH, the owner's account, the locale and TZ, PMJQ_*, and nothing else of pmjq's", () => {
    expect(jobEnvironment(pmjqEnv, alice, jobVars, [])).toEqual({
      PATH: OWNER_PATH,
      HOME: "/home/alice",
      USER: "alice",
      LOGNAME: "alice",
      SHELL: "/bin/bash",
      LANG: "fr_FR.UTF-8",
      LC_TIME: "C",
      TZ: "Europe/Paris",
      ...jobVars
    })
  })

  it("--keep-env passes named variables on; a name pmjq's environment lacks is left out; PATH can be kept", () => {
    const env = jobEnvironment(pmjqEnv, alice, jobVars, ["HTTP_PROXY", "NOT_SET_ANYWHERE", "UNSET"])
    expect(env["HTTP_PROXY"]).toBe("http://proxy:3128")
    expect("NOT_SET_ANYWHERE" in env).toBe(false)
    expect("UNSET" in env).toBe(false)
    expect(env["SECRET_OF_ROOT"]).toBeUndefined()
    expect(jobEnvironment(pmjqEnv, alice, jobVars, ["PATH"])["PATH"]).toBe("/root/bin:/usr/sbin:/usr/bin")
  })

  it("the owner's account and the job's own variables win over anything kept", () => {
    const env = jobEnvironment({ ...pmjqEnv, PMJQ_JOB: "forged" }, alice, jobVars, ["HOME", "USER", "PMJQ_JOB"])
    expect(env).toMatchObject({ HOME: "/home/alice", USER: "alice", PMJQ_JOB: "j" })
  })

  it("run as pmjq: pmjq's whole environment plus PMJQ_*, as before", () => {
    const { UNSET: _, ...defined } = pmjqEnv
    expect(jobEnvironment(pmjqEnv, null, jobVars, ["ignored"])).toEqual({ ...defined, ...jobVars })
  })
})

describe("where a job starts", () => {
  it("run as its owner: the owner's home when it is a directory, else /", () => {
    expect(jobDirectory(alice, "/srv/pmjq", () => true)).toBe("/home/alice")
    expect(jobDirectory(alice, "/srv/pmjq", () => false)).toBe("/")
    expect(jobDirectory({ ...alice, home: "relative" }, "/srv/pmjq", () => true)).toBe("/")
  })
  it("run as pmjq: pmjq's working directory", () => {
    expect(jobDirectory(null, "/srv/pmjq", () => false)).toBe("/srv/pmjq")
  })
})

describe("the command that starts a job", () => {
  it("as pmjq: the file itself", () => {
    expect(jobCommand("/s/job", null, 20)).toEqual(["/s/job", []])
  })
  it("as its owner: setpriv with the owner's ids and groups; with an nproc limit, prlimit first", () => {
    expect(jobCommand("/s/job", alice, null)).toEqual(["setpriv", ["--reuid=1001", "--regid=1002", "--init-groups", "--", "/s/job"]])
    expect(jobCommand("/s/job", alice, 20)).toEqual([
      "prlimit",
      ["--nproc=20:20", "--", "setpriv", "--reuid=1001", "--regid=1002", "--init-groups", "--", "/s/job"]
    ])
  })
})

describe("descriptors a job must not inherit", () => {
  it("reads the octal flags of /proc/PID/fdinfo", () => {
    expect(fdinfoFlags("pos:\t0\nflags:\t02100001\nmnt_id:\t25\nino:\t42\n")).toBe(0o2100001)
    expect(fdinfoFlags("pos:\t0\n")).toBeNull()
  })
  it("above 2 and not close-on-exec, except the IPC channel", () => {
    const open = [
      { fd: 0, flags: 0o100000 },
      { fd: 1, flags: 0o100001 },
      { fd: 2, flags: 0o100001 },
      { fd: 3, flags: 0o4002 }, // the IPC channel
      { fd: 4, flags: O_CLOEXEC | 0o2 }, // Node's own
      { fd: 5, flags: 0o1 }, // left open by whoever started pmjq
      { fd: 251, flags: 0o100000 }
    ]
    expect(strayDescriptors(open, new Set([3]))).toEqual([5, 251])
  })
})

describe("who owns a job's record", () => {
  it("as root, for another user's job: pmjq keeps it, the owner's group may read it (0640); otherwise pmjq's alone (0600)", () => {
    const asRoot = process.getuid?.() === 0
    expect(recordKeeping(null)).toEqual({ mode: PRIVATE, owner: null })
    expect(recordKeeping({ uid: 1001, gid: 1002 })).toEqual(
      asRoot ? { mode: SHARED_WITH_GROUP, owner: { uid: 0, gid: 1002 } } : { mode: PRIVATE, owner: null }
    )
  })
})
