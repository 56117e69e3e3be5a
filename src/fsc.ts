/**
 * The filesystem calls on pmjq's per-job path, as promises over Node's callback
 * API: measured here at about half the CPU per call of node:fs/promises, and a
 * daemon that forks hundreds of jobs a second on two cores feels the difference.
 */
import * as fs from "node:fs"
import { promisify } from "node:util"

export const lstat = promisify(fs.lstat)
export const rename = promisify(fs.rename)
export const link = promisify(fs.link)
export const unlink = promisify(fs.unlink)
export const writeFile = promisify(fs.writeFile)
export const copyFile = promisify(fs.copyFile)
export const readdir = promisify(fs.readdir)
