/** Control characters in names never reach a terminal raw: the text and JSON logs, and `pmjq status`. */
import { Effect } from "effect"
import { describe, expect, it, vi } from "vitest"
import { render } from "../../src/cli/status.js"
import { escapedName, visible } from "../../src/log/text.js"
import { type LogFormat, logLayer } from "../../src/log/log.js"
import type { SpoolView } from "../../src/spool/view.js"

/** An OSC that retitles the terminal, and a C1 CSI (one byte, 0x9b) that recolours it. */
const TITLE = "\u001b]0;owned\u0007x"
const C1 = "a\u007fb\u009b31mc"
/** Any control character but the newline that ends a line. */
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/

/** What the logger writes to stderr while `effect` runs, minus --drain's line clearing on a terminal. */
const logged = (format: LogFormat, effect: Effect.Effect<void>) => {
  const lines: Array<string> = []
  const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk).replace(/^\r\u001b\[K/, ""))
    return true
  })
  try {
    Effect.runSync(effect.pipe(Effect.provide(logLayer(format))))
  } finally {
    spy.mockRestore()
  }
  return lines
}

const claimed = (job: string) => Effect.logInfo("claimed").pipe(Effect.annotateLogs({ job, path: `/spool/.pmjq/running/n1/${job}` }))

describe("log lines", () => {
  it("text: a value with an escape sequence and no space is JSON-escaped, not printed raw", () => {
    const [line] = logged("text", claimed(TITLE))
    expect(line).not.toMatch(RAW)
    expect(line).toContain(String.raw`job="\u001b]0;owned\u0007x"`)
    expect(line).toContain(String.raw`path="/spool/.pmjq/running/n1/\u001b]0;owned\u0007x"`)
  })

  it("text: DEL and C1 controls, which JSON.stringify leaves alone, are escaped too; plain values stay bare", () => {
    const [line, plain] = logged("text", Effect.zipRight(claimed(C1), claimed("plain-name")))
    expect(line).not.toMatch(RAW)
    expect(line).toContain(String.raw`job="a\u007fb\u009b31mc"`)
    expect(plain).toMatch(/ INFO claimed job=plain-name path=\/spool\/\.pmjq\/running\/n1\/plain-name\n$/)
  })

  it("text: a message with a control character is quoted as a whole", () => {
    const [line] = logged("text", Effect.logWarning(`bad ${TITLE}`))
    expect(line).not.toMatch(RAW)
    expect(line).toContain(String.raw`WARN "bad \u001b]0;owned\u0007x"`)
  })

  it("json: no control character raw, and the line parses back to the exact name", () => {
    const [line] = logged("json", claimed(TITLE + C1))
    expect(line).not.toMatch(RAW)
    expect(JSON.parse(line!)).toMatchObject({ message: "claimed", job: TITLE + C1 })
  })
})

const at = "2026-11-29T10:00:00.000Z"
const record = (name: string, reason: string | null) => ({
  entry: `20261129T095959.000Z_${name}`, name, node: "n1", host: "h", pid: 1, user: "u", uid: 1000, inode: 1, attempt: 1,
  claimedAt: at, startedAt: at, endedAt: at, durationMs: 1, outcome: "rejected" as const, exitCode: null, signal: null, reason
})
const view: SpoolView = {
  spool: "/spool",
  at,
  queued: [
    { name: TITLE, readyAt: at, uid: 1000, user: "u", reason: "next", detail: "next", held: false, after: [], afterAny: [], priority: 0 },
    { name: C1, readyAt: at, uid: 1000, user: "u", reason: "after", detail: `after ${TITLE} (running)`, held: false, after: [TITLE], afterAny: [], priority: 0 }
  ],
  running: [{ name: TITLE, node: "n\u001b[2J1", claimedAt: at, forMs: 5, pid: 7, state: "running", uid: 1000, user: "u" }],
  cancelling: [{ name: C1, uid: 1000 }],
  nodes: [],
  finished: [record(TITLE, null)],
  rejected: [record(C1, `refused: ${TITLE}`)],
  untrusted: null,
  paused: { spool: { by: "root", at, reason: `fix ${TITLE}` }, nodes: { "n\u001b[2J1": { by: C1, at, reason: null } } }
}

describe("pmjq status", () => {
  it("shows names, nodes and reasons with their control characters as \\xHH", () => {
    const text = render(view)
    expect(text).not.toMatch(RAW)
    expect(text).toContain(String.raw`(\x1b]0;owned\x07x)`)
    expect(text).toContain(String.raw`a\x7fb\x9b31mc`)
    expect(text).toContain(String.raw`n\x1b[2J1`)
    expect(text).toContain(String.raw`refused: \x1b]0;owned\x07x`)
    expect(text).toContain(String.raw`paused: the spool, by root at 2026-11-29T10:00:00.000Z (fix \x1b]0;owned\x07x)`)
    expect(text).toContain(String.raw`paused: node n\x1b[2J1, by a\x7fb\x9b31mc at`)
  })

  it("visible leaves ordinary text, spaces and non-ASCII letters alone", () => {
    expect(visible("build-42 été ü")).toBe("build-42 été ü")
    expect(visible("a\tb\nc")).toBe(String.raw`a\x09b\x0ac`)
  })
})

describe("a file name's bytes", () => {
  it("valid UTF-8 stays as it is; stray bytes are written %XX", () => {
    expect(escapedName(Buffer.from("build-42 été ü"))).toBeNull()
    expect(escapedName(Buffer.from("bad\xffname", "latin1"))).toBe("bad%FFname")
    // A lone continuation byte, a truncated sequence, an overlong form, a surrogate.
    expect(escapedName(Buffer.from([0x61, 0x80]))).toBe("a%80")
    expect(escapedName(Buffer.from([0xe2, 0x82]))).toBe("%E2%82")
    expect(escapedName(Buffer.from([0xc0, 0xaf]))).toBe("%C0%AF")
    expect(escapedName(Buffer.from([0xed, 0xa0, 0x80]))).toBe("%ED%A0%80")
    expect(escapedName(Buffer.from([0xe2, 0x82, 0xac, 0xff]))).toBe("€%FF")
  })
})
