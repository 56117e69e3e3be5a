/**
 * Text that users choose (job names, a job's error output) on its way to a
 * terminal or pmjq's log. Pure Node: the spawner imports it too.
 */
import { StringDecoder } from "node:string_decoder"
import { Transform, type TransformCallback } from "node:stream"

/**
 * TEXT as a terminal may see it: C0 controls, DEL and C1 controls as `\xHH`
 * (with `keepTabs`, a tab stays a tab). An escape sequence printed raw could
 * retitle or rewrite the reader's terminal.
 */
export const visible = (text: string, keepTabs = false) =>
  text.replace(keepTabs ? /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g : /[\u0000-\u001f\u007f-\u009f]/g, (c) =>
    `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)

// A job that never writes a newline must not make pmjq hold its output in memory.
const LONGEST_LINE = 64 * 1024

/**
 * A job's error output, made fit for pmjq's log (its stderr): each line starts
 * with `[NAME] ` and has its control characters escaped, so that no job can
 * write a line that reads as pmjq's own, or drive the terminal that shows it.
 */
export const logLines = (name: string): Transform => {
  const prefix = `[${visible(name)}] `
  const decoder = new StringDecoder("utf8")
  let partial = ""
  const lines = (text: string, push: (line: string) => void) => {
    const parts = (partial + text).split("\n")
    partial = parts.pop()!
    for (const line of parts) push(line)
    while (partial.length > LONGEST_LINE) {
      push(partial.slice(0, LONGEST_LINE))
      partial = partial.slice(LONGEST_LINE)
    }
  }
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback) {
      let out = ""
      lines(decoder.write(chunk), (line) => (out += `${prefix}${visible(line, true)}\n`))
      done(null, out === "" ? undefined : out)
    },
    flush(done: TransformCallback) {
      let out = ""
      lines(decoder.end(), (line) => (out += `${prefix}${visible(line, true)}\n`))
      if (partial !== "") out += `${prefix}${visible(partial, true)}\n`
      partial = ""
      done(null, out === "" ? undefined : out)
    }
  })
}
