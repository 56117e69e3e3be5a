/**
 * pmjq's own malloc settings, kept from the jobs it runs.
 *
 * The #! line of bin.js starts pmjq with one glibc malloc arena
 * (MALLOC_ARENA_MAX=1). glibc gives each thread that allocates its own arena,
 * up to 8 per core, and memory freed in an arena stays mapped in it: with
 * 100,000 queued jobs (bench/backlog.ts) pmjq held 165-175 MiB with the
 * default and 137 with one arena, with the same first-job time and drain.
 * pmjq's allocations are from one thread; libuv's pool only does syscalls.
 *
 * The setting is pmjq's, not its jobs': the #! line saves the value pmjq was
 * started with in SAVED, and `restoreEnvironment` puts it back in
 * `process.env` before anything is spawned, so jobs and hooks see the
 * environment of the command that started pmjq.
 */
export const ARENAS = "MALLOC_ARENA_MAX"
export const SAVED = "PMJQ_SAVED_MALLOC_ARENA_MAX"

/** Undoes what the #! line set; a no-op when pmjq was started some other way. */
export const restoreEnvironment = (env: NodeJS.ProcessEnv = process.env): void => {
  const saved = env[SAVED]
  if (saved === undefined) return
  delete env[SAVED]
  if (saved === "") delete env[ARENAS]
  else env[ARENAS] = saved
}

/** The environment to start pmjq again with, as its #! line would (a restart in place). */
export const asStartedByShebang = (env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv => ({
  ...env,
  [ARENAS]: "1",
  [SAVED]: env[ARENAS] ?? ""
})
