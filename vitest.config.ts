import { defineConfig } from "vitest/config"
import { BaseSequencer, type TestSpecification } from "vitest/node"

/**
 * The cluster filesystem tests first: they take the longest, so one worker
 * runs them while the others run the rest, instead of starting them last.
 */
class ClusterFirst extends BaseSequencer {
  override async sort(files: Array<TestSpecification>) {
    const cluster = (file: TestSpecification) => (file.moduleId.endsWith("clusterfs.test.ts") ? 0 : 1)
    return (await super.sort(files)).sort((a, b) => cluster(a) - cluster(b))
  }
}

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // End-to-end tests spawn the built CLI and hundreds of jobs. They fail on
    // what they wait for (a deadline of their own, or no progress for a stated
    // time), never on these budgets, which only catch a wait that never ends:
    // far above what a loaded 2-core machine twice as slow as ours needs.
    testTimeout: 600_000,
    hookTimeout: 300_000,
    // Three at a time on 2 cores: end-to-end tests mostly wait (on leases,
    // jobs, FUSE round trips), and two left a third of the CPU idle.
    pool: "forks",
    poolOptions: { forks: { maxForks: 3 } },
    sequence: { sequencer: ClusterFirst }
  }
})
