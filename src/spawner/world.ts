/**
 * The world a job starts in: its environment, working directory, command line
 * and descriptors. Pure (the spawner imports it, and imports nothing heavy).
 *
 * pmjq often runs as root. A job run as its owner must not inherit root's
 * world, as sudo's env_reset and closefrom make sure a command does not:
 * - root's environment may hold secrets (tokens, proxy passwords) and variables
 *   that change what programs run (LD_PRELOAD, PATH with root's own bin, PERL5LIB...);
 * - root's working directory may be one the user must not see, or write into;
 * - descriptors pmjq inherited (a supervisor's socket, a shell's redirection)
 *   would give the job whatever they reach.
 * A job that runs as pmjq (no --run-as-owner) keeps pmjq's environment and
 * working directory, as before: it is pmjq's own user's job.
 */

/** A job's owner, as the password database gives it. */
export interface JobUser {
  readonly uid: number
  readonly gid: number
  readonly name: string
  readonly home: string
  readonly shell: string
}

export type Environment = Readonly<Record<string, string | undefined>>

/** The PATH of a job run as its owner: the system's, never root's own (sudo's secure_path). */
export const OWNER_PATH = "/usr/local/bin:/usr/bin:/bin"

// The locale and time zone are kept for every job: they are the machine's
// settings, not secrets, and output in another language or zone is a surprise.
const isLocale = (name: string) => name === "LANG" || name === "LANGUAGE" || name === "TZ" || name.startsWith("LC_")

const defined = (env: Environment): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(env)) if (value !== undefined) out[name] = value
  return out
}

/**
 * The environment of a job. Run as pmjq (`user` null): pmjq's environment plus
 * the job's variables. Run as its owner: a fixed PATH, the locale and TZ, the
 * names listed in `keep` (--keep-env; PATH among them keeps pmjq's PATH), the
 * owner's HOME, USER, LOGNAME and SHELL, and the job's variables (PMJQ_*);
 * nothing else of pmjq's.
 */
export const jobEnvironment = (
  pmjq: Environment,
  user: JobUser | null,
  job: Readonly<Record<string, string>>,
  keep: ReadonlyArray<string>
): Record<string, string> => {
  if (user === null) return { ...defined(pmjq), ...job }
  const kept = new Set(keep)
  const inherited: Record<string, string> = {}
  for (const [name, value] of Object.entries(defined(pmjq))) {
    if (isLocale(name) || kept.has(name)) inherited[name] = value
  }
  return { PATH: OWNER_PATH, ...inherited, HOME: user.home, USER: user.name, LOGNAME: user.name, SHELL: user.shell, ...job }
}

/**
 * Where a job starts: run as pmjq, in pmjq's working directory; run as its
 * owner, in the owner's home when it is a directory, else in "/" (like login(1)).
 */
export const jobDirectory = (user: JobUser | null, pmjqCwd: string, isDirectory: (dir: string) => boolean): string => {
  if (user === null) return pmjqCwd
  return user.home.startsWith("/") && isDirectory(user.home) ? user.home : "/"
}

/**
 * The command that starts the job file `path`. Run as its owner: through
 * setpriv(1), which sets uid, gid and the user's supplementary groups (Node's
 * own spawn({uid, gid}) would drop them); with `nproc`, through prlimit(1)
 * first, so RLIMIT_NPROC caps the processes of the job's user: a fork bomb in
 * one user's job cannot use up the process table and stop pmjq starting other
 * users' jobs. (Root ignores RLIMIT_NPROC, so it means nothing for a job run as
 * pmjq-as-root; pmjq refuses --job-nproc without --run-as-owner.)
 *
 * An exec error of the job itself (a missing #! interpreter) then happens
 * inside setpriv, which reports it on the job's stderr and exits 127 (126 for
 * other errors): the job is failed with that status.
 */
export const jobCommand = (
  path: string,
  user: JobUser | null,
  nproc: number | null
): readonly [string, ReadonlyArray<string>] => {
  if (user === null) return [path, []]
  const setpriv = ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--init-groups", "--", path]
  if (nproc === null) return [setpriv[0]!, setpriv.slice(1)]
  return ["prlimit", [`--nproc=${nproc}:${nproc}`, "--", ...setpriv]]
}

/** O_CLOEXEC as /proc/PID/fdinfo shows it (octal "flags:"), on Linux. */
export const O_CLOEXEC = 0o2000000

/** The "flags:" field of a /proc/PID/fdinfo/FD text; null when there is none. */
export const fdinfoFlags = (fdinfo: string): number | null => {
  const match = /^flags:\s*([0-7]+)\s*$/m.exec(fdinfo)
  return match === null ? null : parseInt(match[1]!, 8)
}

/**
 * Of a process's open descriptors and their flags, those a child would
 * inherit without being given them: above 2 and not close-on-exec; `keep`
 * (the IPC channel to pmjq) excepted.
 */
export const strayDescriptors = (
  open: ReadonlyArray<{ readonly fd: number; readonly flags: number }>,
  keep: ReadonlySet<number>
): Array<number> =>
  open.filter(({ fd, flags }) => fd > 2 && (flags & O_CLOEXEC) === 0 && !keep.has(fd)).map(({ fd }) => fd)
