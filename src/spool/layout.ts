/** Where pmjq keeps its own state in a spool. */
import * as path from "node:path"

export const STATE_DIR = ".pmjq"

export const runningDir = (spool: string, node: string) => path.join(spool, STATE_DIR, "running", node)
