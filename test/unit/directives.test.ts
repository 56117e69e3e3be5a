import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { judgeDependencies, loopsAmong } from "../../src/directives/dependencies.js"
import {
  directiveLines, type Directives, HEAD_MAX, LINE_MAX, NO_DIRECTIVES, parseDirectives, readDirectives, withDirectives, withoutHold
} from "../../src/directives/directives.js"
import type { EndedNote } from "../../src/record/decode.js"
import { makePending } from "../../src/spool/Pending.js"

const parsed = (text: string) => Either.getOrThrow(parseDirectives(text))
const problem = (text: string, cut = false) => Either.getLeft(parseDirectives(text, cut)).pipe((o) => (o._tag === "Some" ? o.value : null))

describe("#PMJQ directives", () => {
  it("reads the leading comment block after #!, in both option forms, and stops at the first command", () => {
    const d = parsed("#!/bin/sh\n# a build\n\n#PMJQ --after=a,b --priority -5\n#PMJQ --after-any c --hold\nmake\n#PMJQ --priority=9\n")
    expect(d).toEqual({ after: ["a", "b"], afterAny: ["c"], priority: -5, hold: true })
    expect(parsed("#!/bin/sh\necho hi\n")).toEqual({ after: [], afterAny: [], priority: 0, hold: false })
    // #PMJQX is a comment like any other; so is a #PMJQ line after the first command.
    expect(parsed("#!/bin/sh\n#PMJQX --bogus\ntrue\n#PMJQ --bogus\n")).toEqual(NO_DIRECTIVES)
  })

  it("refuses what it does not understand, naming the line", () => {
    expect(problem("#!/bin/sh\n#\n#PMJQ --bogus\n")).toEqual({ line: 3, reason: "unknown directive --bogus" })
    expect(problem("#!/bin/sh\n#PMJQ --priority=21\n")?.reason).toMatch(/from -20 to 20, not '21'/)
    expect(problem("#!/bin/sh\n#PMJQ --priority=1e1\n")?.reason).toMatch(/integer/)
    expect(problem("#!/bin/sh\n#PMJQ --after=../etc/passwd\n")?.reason).toBe("--after: '../etc/passwd' is not a job's name")
    expect(problem("#!/bin/sh\n#PMJQ --after=.hidden\n")?.reason).toMatch(/not a job's name/)
    expect(problem("#!/bin/sh\n#PMJQ --after\n")?.reason).toBe("--after needs a value")
    expect(problem("#!/bin/sh\n#PMJQ --hold=yes\n")?.reason).toBe("--hold takes no value")
    expect(problem("#!/bin/sh\n#PMJQ hold\n")?.reason).toMatch(/unexpected 'hold'/)
    expect(problem(`#!/bin/sh\n#PMJQ --after=${Array.from({ length: 101 }, (_, i) => `j${i}`).join(",")}\n`)?.reason).toBe("more than 100 dependencies")
  })

  it("refuses a line of 1 MB, and one cut by the read", () => {
    expect(problem(`#!/bin/sh\n#PMJQ --after=${"x".repeat(1 << 20)}\n`)).toEqual({ line: 2, reason: `longer than ${LINE_MAX} bytes` })
    const head = `#!/bin/sh\n${"# pad\n".repeat(10)}#PMJQ --after=ab`
    expect(problem(head, true)).toEqual({ line: 12, reason: `longer than ${LINE_MAX} bytes` })
    expect(HEAD_MAX).toBeGreaterThan(LINE_MAX)
  })

  it("caps a priority above 0 unless its owner may raise one", () => {
    const text = "#!/bin/sh\n#PMJQ --priority=7\n"
    const user = readDirectives(text, false, 1000, (uid) => uid === 0)
    expect(user.directives.priority).toBe(0)
    expect(user.capped).toBe(7)
    expect(readDirectives(text, false, 0, (uid) => uid === 0).directives.priority).toBe(7)
    expect(readDirectives("#!/bin/sh\n#PMJQ --priority=-3\n", false, 1000, () => false).directives.priority).toBe(-3)
  })

  it("writes directives after the #! line, and takes --hold out again", () => {
    const d: Directives = { after: ["a"], afterAny: [], priority: -2, hold: true }
    const text = withDirectives("#!/bin/sh\necho hi\n", directiveLines(d))
    expect(text).toBe("#!/bin/sh\n#PMJQ --after=a\n#PMJQ --priority=-2\n#PMJQ --hold\necho hi\n")
    expect(parsed(text)).toEqual(d)
    const released = withoutHold(text)
    expect(parsed(released)).toEqual({ ...d, hold: false })
    expect(released.endsWith("echo hi\n")).toBe(true)
  })
})

const note = (name: string, outcome: EndedNote["outcome"]): EndedNote => ({ name, uid: 1000, outcome, exitCode: null, endedAt: "2026-12-07T00:00:00.000Z", node: "n" })
const after = (...names: Array<string>): Directives => ({ ...NO_DIRECTIVES, after: names })

describe("dependencies", () => {
  it("wait while a job of the name is queued, held or running; then its ended note decides", () => {
    const facts = (presence: Array<[string, "queued" | "held" | "running"]>, ended: Array<EndedNote>) => ({
      presence: new Map(presence),
      ended: new Map(ended.map((n) => [n.name, n]))
    })
    expect(judgeDependencies(after("b"), facts([["b", "running"]], [note("b", "failed")]))).toEqual({ _tag: "Waiting", reason: "after b (running)" })
    expect(judgeDependencies(after("b"), facts([], [note("b", "succeeded")]))._tag).toBe("Ready")
    expect(judgeDependencies(after("b"), facts([], [note("b", "cancelled")]))).toEqual({ _tag: "Failed", reason: "not run: b ended cancelled" })
    expect(judgeDependencies(after("b"), facts([], []))).toEqual({ _tag: "Waiting", reason: "after b (no such job yet)" })
    // A failed one decides at once, even while another still runs.
    expect(judgeDependencies(after("x", "b"), facts([["x", "running"]], [note("b", "failed")]))._tag).toBe("Failed")
    const any: Directives = { ...NO_DIRECTIVES, afterAny: ["b"] }
    expect(judgeDependencies(any, facts([], [note("b", "dependency-failed")]))._tag).toBe("Ready")
    expect(judgeDependencies(any, facts([["b", "held"]], []))._tag).toBe("Waiting")
  })

  it("finds every job in a loop, and only those", () => {
    const waiting = new Map<string, Directives>([
      ["a", after("b")],
      ["b", after("c")],
      ["c", after("a")],
      ["d", after("a")], // waits on the loop, is not in it
      ["self", after("self")],
      ["e", after("gone")]
    ])
    const loops = loopsAmong(waiting)
    expect([...loops.keys()].sort()).toEqual(["a", "b", "c", "self"])
    expect(loops.get("self")).toBe("not run: dependency loop: self → self")
    expect(loops.get("a")).toMatch(/dependency loop: a → b → c → a/)
  })

  it("finds a loop at the end of a chain of 100,000 without running out of stack", () => {
    const waiting = new Map<string, Directives>()
    for (let i = 0; i < 100_000; i++) waiting.set(`j${i}`, after(`j${i + 1}`))
    waiting.set("j100000", after("j99999"))
    expect([...loopsAmong(waiting).keys()].sort()).toEqual(["j100000", "j99999"])
  })
})

describe("priorities in the queue", () => {
  it.effect("the higher runs first; equal ones oldest first", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      yield* q.offerAll([
        { name: "old-low", readyAt: 1, uid: 1, priority: -5 },
        { name: "old", readyAt: 2, uid: 1 },
        { name: "new-high", readyAt: 9, uid: 1, priority: 10 },
        { name: "young", readyAt: 5, uid: 1, priority: 0 }
      ])
      const order: Array<string> = []
      for (let c = yield* q.poll(); c !== undefined; c = yield* q.poll()) order.push(c.name)
      expect(order).toEqual(["new-high", "old", "young", "old-low"])
    }))

  it.effect("with peers, a node's preference chooses among the first priority only", () =>
    Effect.gen(function*() {
      const q = yield* makePending()
      yield* q.offerAll([
        { name: "urgent", readyAt: 9, uid: 1, priority: 5 },
        { name: "low-1", readyAt: 1, uid: 1, priority: -20 },
        { name: "low-2", readyAt: 2, uid: 1, priority: -20 }
      ])
      // The node prefers the low ones: the urgent one goes first all the same.
      const prefer = (name: string) => (name.startsWith("low") ? 100 : 0)
      expect((yield* q.pollAmong(4, prefer))?.name).toBe("urgent")
      expect((yield* q.pollAmong(4, (name) => (name === "low-2" ? 100 : 0)))?.name).toBe("low-2")
    }))

  it.effect("with turns, a user's priority orders only that user's own jobs", () =>
    Effect.gen(function*() {
      const q = yield* makePending({ turns: true })
      yield* q.offerAll([
        { name: "alice-1", readyAt: 1, uid: 1 },
        { name: "alice-urgent", readyAt: 8, uid: 1, priority: 20 },
        { name: "bob-1", readyAt: 2, uid: 2 },
        { name: "bob-2", readyAt: 3, uid: 2 }
      ])
      const order: Array<string> = []
      for (let c = yield* q.poll(); c !== undefined; c = yield* q.poll()) order.push(c.name)
      expect(order).toEqual(["alice-urgent", "bob-1", "alice-1", "bob-2"])
    }))
})
