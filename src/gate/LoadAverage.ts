/**
 * Where load samples come from. The live source asks the kernel through
 * os.loadavg() (sysinfo(2) on Linux): no `uptime`, so no locale to parse around,
 * which was the seed's bug.
 */
import { Context, Effect, Layer } from "effect"
import * as os from "node:os"

export class LoadAverage extends Context.Tag("pmjq/LoadAverage")<
  LoadAverage,
  {
    /** The 1-minute load average now. */
    readonly oneMinute: Effect.Effect<number>
  }
>() {
  static readonly layer = Layer.succeed(LoadAverage, {
    oneMinute: Effect.sync(() => os.loadavg()[0] ?? 0)
  })
}
