/**
 * pmjq's log: one line per event on stderr, `text` for people, `json` for
 * journald/Loki and scripts. Job output never goes through here.
 */
import { HashMap, Logger } from "effect"

export type LogFormat = "text" | "json"

const render = (message: unknown): string =>
  Array.isArray(message) ? message.map(render).join(" ") : typeof message === "string" ? message : JSON.stringify(message)

// Values with spaces, quotes or '=' are JSON-quoted, so a line splits back unambiguously.
const field = (key: string, value: unknown) => {
  const text = typeof value === "string" ? value : JSON.stringify(value)
  return `${key}=${/^[^\s"=]+$/.test(text) ? text : JSON.stringify(text)}`
}

// The job first, so `grep job=NAME` and eyes find it in the same place.
const entries = (annotations: HashMap.HashMap<string, unknown>) =>
  [...HashMap.toEntries(annotations)].sort(([a], [b]) => (a === "job" ? -1 : b === "job" ? 1 : a.localeCompare(b)))

// On a terminal a line may hold --drain's progress: clear it first (it is redrawn).
const clearLine = process.stderr.isTTY === true ? "\r\x1b[K" : ""

const textLogger = Logger.make(({ annotations, date, logLevel, message }) => {
  const fields = entries(annotations).map(([k, v]) => field(k, v))
  process.stderr.write(clearLine + [date.toISOString(), logLevel.label, render(message), ...fields].join(" ") + "\n")
})

const jsonLogger = Logger.make(({ annotations, date, logLevel, message }) => {
  process.stderr.write(
    clearLine + JSON.stringify({ time: date.toISOString(), level: logLevel.label, message: render(message), ...Object.fromEntries(entries(annotations)) }) +
      "\n"
  )
})

export const logLayer = (format: LogFormat) =>
  Logger.replace(Logger.defaultLogger, format === "json" ? jsonLogger : textLogger)

