/**
 * The account lookups of --run-as-owner (owners/Users.ts), with getent stood in
 * for by a script first on PATH: "no such user" is an answer, kept a minute;
 * a getent that fails otherwise (a fork refused, a signal) is asked again and
 * never kept, since "no account" refuses a job for good.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { makeUsers, Users } from "../../src/owners/Users.js"

/** A getent that fails FAILS times with STATUS, then exits with LAST, printing LINE; counts its runs. */
const fakeGetent = (fails: number, status: number, last: number, line: string, command = "getent", said = "") => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmjq-getent-"))
  const count = path.join(dir, "count")
  fs.writeFileSync(count, "")
  fs.writeFileSync(path.join(dir, command), [
    "#!/bin/sh",
    `echo x >> '${count}'`,
    `[ "$(wc -l < '${count}')" -le ${fails} ] && exit ${status}`,
    `[ ${last} -eq 0 ] && echo '${line}'`,
    `[ -n '${said}' ] && echo '${said}' >&2`,
    `exit ${last}`
  ].join("\n") + "\n", { mode: 0o755 })
  return { dir, runs: () => fs.readFileSync(count, "utf8").split("\n").filter(Boolean).length }
}

/** The clock the lookups' answers are kept by, moved by hand. */
const clock = { now: 0 }

const withPath = <A, E>(dir: string, effect: Effect.Effect<A, E, Users>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const before = process.env.PATH
      process.env.PATH = `${dir}:${before ?? ""}`
      return before
    }),
    () => Effect.provideService(effect, Users, makeUsers(() => clock.now)),
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

  it.live("'no such user' is an answer: asked once, kept a minute", () =>
    Effect.gen(function*() {
      const getent = fakeGetent(0, 0, 2, LINE)
      const looks = yield* withPath(getent.dir, Effect.flatMap(Users, (users) =>
        Effect.gen(function*() {
          const first = yield* users.account(1234)
          clock.now += 59_000
          const kept = yield* users.account(1234)
          expect(getent.runs()).toBe(1)
          clock.now += 1_001
          return [first, kept, yield* users.account(1234)]
        })))
      expect(looks).toEqual([Option.none(), Option.none(), Option.none()])
      expect(getent.runs()).toBe(2)
    }))

  it.live("a getent that keeps failing gives no account after four tries, kept 5 s only, not a minute", () =>
    Effect.gen(function*() {
      const getent = fakeGetent(1000, 3, 3, LINE)
      const twice = yield* withPath(getent.dir, Effect.flatMap(Users, (users) =>
        Effect.gen(function*() {
          const first = yield* users.account(1234)
          // Within 5 s: the failure is not asked again (a host refusing forks is not asked four times a job).
          const again = yield* users.account(1234)
          expect(getent.runs()).toBe(4)
          clock.now += 5_001
          return [first, again, yield* users.account(1234)]
        })))
      expect(twice).toEqual([Option.none(), Option.none(), Option.none()])
      expect(getent.runs()).toBe(8)
    }))

  it.live("id: 'no such user' is an answer, kept; its other failures (status 1 too) are asked again", () =>
    Effect.gen(function*() {
      const unknown = fakeGetent(0, 0, 1, "", "id", "id: '1234': no such user")
      const groups = yield* withPath(unknown.dir, Effect.flatMap(Users, (users) => Effect.all([users.groups(1234), users.groups(1234)])))
      expect(groups).toEqual([[], []])
      expect(unknown.runs()).toBe(1)
      const failing = fakeGetent(2, 1, 0, "1234 27", "id", "")
      expect(yield* withPath(failing.dir, Effect.flatMap(Users, (users) => users.groups(1234)))).toEqual([1234, 27])
      expect(failing.runs()).toBe(3)
    }))
})
