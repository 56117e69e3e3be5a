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

/** The length of the valid UTF-8 sequence at BYTES[AT], or 0 when there is none. */
const utf8Length = (bytes: Uint8Array, at: number): number => {
  const b = bytes[at]!
  const n = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0
  if (n <= 1 || at + n > bytes.length) return at + n > bytes.length ? 0 : n
  for (let i = 1; i < n; i++) if ((bytes[at + i]! & 0xc0) !== 0x80) return 0
  // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8 either.
  const second = bytes[at + 1]!
  if (b === 0xe0 && second < 0xa0) return 0
  if (b === 0xed && second > 0x9f) return 0
  if (b === 0xf0 && second < 0x90) return 0
  if (b === 0xf4 && second > 0x8f) return 0
  return n
}

/**
 * A file name's BYTES as a name Node can hand back to the kernel: null when
 * they are valid UTF-8 (the name as it is), else the name with each byte
 * outside a valid sequence written `%XX` (`bad\xffname` → `bad%FFname`).
 */
export const escapedName = (bytes: Uint8Array): string | null => {
  let out = ""
  let escaped = false
  for (let at = 0; at < bytes.length;) {
    const n = utf8Length(bytes, at)
    if (n === 0) {
      out += `%${bytes[at]!.toString(16).toUpperCase().padStart(2, "0")}`
      escaped = true
      at++
    } else {
      out += Buffer.from(bytes.subarray(at, at + n)).toString("utf8")
      at += n
    }
  }
  return escaped ? out : null
}
