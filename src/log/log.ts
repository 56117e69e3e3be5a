/**
 * pmjq's log: one line per event on stderr, `text` for people, `json` for
 * journald/Loki and scripts. Job output never goes through here.
 */
import { HashMap, Logger } from "effect"

export type LogFormat = "text" | "json"

// C0 controls, DEL and C1 controls: a job's name may hold an escape sequence
// that retitles, recolours or rewrites the terminal of whoever reads the log.
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]/
const DEL_AND_C1 = /[\u007f-\u009f]/g

export const hasControls = (text: string) => CONTROLS.test(text)

/**
 * JSON text with no control character left raw: JSON.stringify escapes C0
 * but leaves DEL and C1 (0x9b is a one-byte CSI) as they are.
 */
export const escapeJson = (json: string) =>
  json.replace(DEL_AND_C1, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)

/** A string as a JSON literal, controls escaped. */
export const quote = (text: string) => escapeJson(JSON.stringify(text))

const render = (message: unknown): string =>
  Array.isArray(message) ? message.map(render).join(" ") : typeof message === "string" ? message : JSON.stringify(message)

/** A message as the text log shows it: as it is, unless it holds a control character. */
const shown = (text: string) => (hasControls(text) ? quote(text) : text)

// Values with spaces, quotes, '=' or controls are JSON-quoted, so a line splits
// back unambiguously and nothing in it reaches a terminal raw.
const field = (key: string, value: unknown) => {
  const text = typeof value === "string" ? value : JSON.stringify(value)
  return `${key}=${/^[^\s"=]+$/.test(text) && !hasControls(text) ? text : quote(text)}`
}

// The job first, so `grep job=NAME` and eyes find it in the same place.
const entries = (annotations: HashMap.HashMap<string, unknown>) =>
  [...HashMap.toEntries(annotations)].sort(([a], [b]) => (a === "job" ? -1 : b === "job" ? 1 : a.localeCompare(b)))

// On a terminal a line may hold --drain's progress: clear it first (it is redrawn).
const clearLine = process.stderr.isTTY === true ? "\r\x1b[K" : ""

const textLogger = Logger.make(({ annotations, date, logLevel, message }) => {
  const fields = entries(annotations).map(([k, v]) => field(k, v))
  process.stderr.write(clearLine + [date.toISOString(), logLevel.label, shown(render(message)), ...fields].join(" ") + "\n")
})

const jsonLogger = Logger.make(({ annotations, date, logLevel, message }) => {
  process.stderr.write(
    clearLine + escapeJson(JSON.stringify({ time: date.toISOString(), level: logLevel.label, message: render(message), ...Object.fromEntries(entries(annotations)) })) +
      "\n"
  )
})

export const logLayer = (format: LogFormat) =>
  Logger.replace(Logger.defaultLogger, format === "json" ? jsonLogger : textLogger)

