/**
 * The password and group databases, for running a job as its file's owner.
 * Asked through getent(1) and id(1), so NSS users (LDAP, sssd) count too.
 */
import { Context, Effect, Layer, Option, Schedule } from "effect"
import * as cp from "node:child_process"
import { promisify } from "node:util"

export interface Account {
  readonly uid: number
  readonly gid: number
  readonly name: string
  readonly home: string
  readonly shell: string
}

export class Users extends Context.Tag("pmjq/Users")<
  Users,
  {
    /** The account of UID, or none when the password database has no such user. */
    readonly account: (uid: number) => Effect.Effect<Option.Option<Account>>
    /** The gids UID belongs to (primary and supplementary). */
    readonly groups: (uid: number) => Effect.Effect<ReadonlyArray<number>>
  }
>() {
  static readonly layer = Layer.sync(Users, () => makeUsers(Date.now))
}

/** The Users service on getent(1) and id(1); NOW tells how long an answer has been kept. */
export const makeUsers = (now: () => number) => {
  const execFile = promisify(cp.execFile)
  // Each answer is kept a minute: asking forks a process, and a busy spool
  // asks for the same few owners over and over. A failed look is kept 5 s,
  // so that a host refusing forks is not asked four times a job.
  const answers = new Map<string, { readonly text: string; readonly until: number }>()
  // "No such user" is an answer (getent: status 2; id: status 1 saying so);
  // any other failure (a fork refused, a signal, an LDAP server that does
  // not answer within 10 s) says nothing about the user: asked again, since
  // "no account" refuses a job for good.
  const noSuchUser = (command: string, e: NodeJS.ErrnoException & { readonly stderr?: unknown }) =>
    command === "getent" ? e.code === 2 as unknown : e.code === 1 as unknown && /no such user/i.test(String(e.stderr))
  const asked = (command: string, args: ReadonlyArray<string>) =>
    Effect.tryPromise({
      try: () => execFile(command, [...args], { timeout: 10_000, killSignal: "SIGKILL" }).then((r) => r.stdout.trim()),
      catch: (e) => e as NodeJS.ErrnoException
    }).pipe(
      Effect.map((text) => ({ text, keep: 60_000 })),
      Effect.catchIf((e) => noSuchUser(command, e), () => Effect.succeed({ text: "", keep: 60_000 })),
      Effect.retry({ times: 3, schedule: Schedule.exponential("50 millis") }),
      Effect.orElseSucceed(() => ({ text: "", keep: 5_000 }))
    )
  const ask = (command: string, args: ReadonlyArray<string>) =>
    Effect.suspend(() => {
      const key = [command, ...args].join(" ")
      const known = answers.get(key)
      if (known !== undefined && now() < known.until) return Effect.succeed(known.text)
      return Effect.map(asked(command, args), ({ keep, text }) => {
        answers.set(key, { text, until: now() + keep })
        return text
      })
    })
  return Users.of({
    account: (uid) =>
      Effect.map(ask("getent", ["passwd", String(uid)]), (line) => {
        // name:password:uid:gid:gecos:home:shell
        const f = line.split("\n")[0]!.split(":")
        return f.length < 7
          ? Option.none()
          : Option.some({ uid, gid: Number(f[3]), name: f[0]!, home: f[5]!, shell: f[6]! })
      }),
    groups: (uid) => Effect.map(ask("id", ["-G", String(uid)]), (out) => (out === "" ? [] : out.split(/\s+/).map(Number)))
  })
}

/** A user or group name, or a number, as a uid/gid; none when unknown. */
export const resolveId = (database: "passwd" | "group", nameOrId: string) =>
  Effect.promise(() =>
    promisify(cp.execFile)("getent", [database, nameOrId]).then(
      (r) => Option.some(Number(r.stdout.split(":")[2])),
      () => (/^\d+$/.test(nameOrId) ? Option.some(Number(nameOrId)) : Option.none<number>())
    )
  )
