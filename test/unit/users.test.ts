/**
 * The account lookups of --run-as-owner (job/Users.ts), with getent stood in
 * for by a script first on PATH: "no such user" is an answer, kept a minute;
 * a getent that fails otherwise (a fork refused, a signal) is asked again and
 * never kept, since "no account" refuses a job for good.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Users } from "../../src/job/Users.js"

/** A getent that fails FAILS times with STATUS, then exits with LAST, printing LINE; counts its runs. */
const fakeGetent = (fails: number, status: number, last: number, line: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-getent-"))
  const count = path.join(dir, "count")
  fs.writeFileSync(count, "")
  fs.writeFileSync(path.join(dir, "getent"), [
    "#!/bin/sh",
    `echo x >> '${count}'`,
    `[ "$(wc -l < '${count}')" -le ${fails} ] && exit ${status}`,
    `[ ${last} -eq 0 ] && echo '${line}'`,
    `exit ${last}`
  ].join("\n") + "\n", { mode: 0o755 })
  return { dir, runs: () => fs.readFileSync(count, "utf8").split("\n").filter(Boolean).length }
}

const withPath = <A, E>(dir: string, effect: Effect.Effect<A, E, Users>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const before = process.env.PATH
      process.env.PATH = `${dir}:${before ?? ""}`
      return before
    }),
    () => Effect.provide(effect, Users.Live),
    (before) => Effect.sync(() => void (process.env.PATH = before))
  )

const LINE = "alice:x:1234:1234::/home/alice:/bin/sh"

describe("account lookups", () => {
  it.live("a getent that fails for a moment is asked again: the account is found", () =>
    Effect.gen(function*() {
      const getent = fakeGetent(2, 3, 0, LINE)
      const account = yield* withPath(getent.dir, Effect.flatMap(Users, (users) => users.account(1234)))
      expect(Option.map(account, (a) => [a.name, a.gid, a.home])).toEqual(Option.some(["alice", 1234, "/home/alice"]))
      expect(getent.runs()).toBe(3)
    }))

  it.live("'no such user' is an answer: asked once, kept", () =>
    Effect.gen(function*() {
      const getent = fakeGetent(0, 0, 2, LINE)
      const twice = yield* withPath(getent.dir, Effect.flatMap(Users, (users) => Effect.all([users.account(1234), users.account(1234)])))
      expect(twice).toEqual([Option.none(), Option.none()])
      expect(getent.runs()).toBe(1)
    }))

  it.live("a getent that keeps failing gives no account, and is not believed later: the next look asks again", () =>
    Effect.gen(function*() {
      const getent = fakeGetent(1000, 3, 3, LINE)
      const twice = yield* withPath(getent.dir, Effect.flatMap(Users, (users) => Effect.all([users.account(1234), users.account(1234)])))
      expect(twice).toEqual([Option.none(), Option.none()])
      // Four tries each: the first and three more.
      expect(getent.runs()).toBe(8)
    }))
})
