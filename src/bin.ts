#!/usr/bin/env -S PMJQ_SAVED_MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX} MALLOC_ARENA_MAX=1 node --max-semi-space-size=4
/**
 * Entry point: wires the CLI (cli/Cli.ts) to Node and runs it.
 *
 * The young generation is kept small (4 MB semi-spaces, 16 MB by default):
 * pmjq's live data is a few MB per 10,000 queued jobs, and V8 otherwise grows
 * the nursery to its maximum under the allocation of a long spool's scans and
 * never gives it back. Measured with 100,000 queued (bench/backlog.ts):
 * resident memory ~205 MiB without, ~170 with; first job at 0.85-0.9 s
 * (2 MB semi-spaces: ~170 MiB too, but 1.0 s); drain throughput the same.
 * One malloc arena takes it to ~140 (allocator.ts says why and how the jobs'
 * environment is kept as it was).
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeTerminal from "@effect/platform-node/NodeTerminal"
import { Effect, Layer } from "effect"
import { createRequire } from "node:module"
import { restoreEnvironment } from "./process/allocator.js"
import { exitCode, run } from "./cli/Cli.js"

restoreEnvironment()

// `pmjq status --watch | head`: once the reader is gone, there is no one to
// tell anything; end quietly, as a Unix filter does on SIGPIPE.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(0)
  throw error
})

const { version } = createRequire(import.meta.url)("../package.json") as { version: string }

// Only what @effect/cli needs, imported by subpath: the platform-node barrel
// loads HTTP, workers and more, and every megabyte of pmjq's memory makes each
// fork(2) of a job slower (about 5 ms per 100 MB measured here).
const MainLive = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer, NodeTerminal.layer)

run(process.argv, version).pipe(
  Effect.provide(MainLive),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    // pmjq installs its own text/json logger (--log-format).
    disablePrettyLogger: true,
    teardown: (exit, onExit) => onExit(exitCode(exit))
  })
)
