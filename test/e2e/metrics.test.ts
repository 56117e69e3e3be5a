/**
 * What operators see: Prometheus metrics served (--metrics-listen) and written
 * (--metrics-file) during a real drain, checked by promtool; the Grafana
 * dashboard against what pmjq exports; a trace per job sent to an OTLP/HTTP
 * receiver run by the test.
 */
import * as cp from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, has, records, run, runsHere, start, submit, waitFor, workspace } from "./harness.js"
import { addUsers, removeUsers, rootMissing, sharedSpool, submitAs } from "./users.js"

const ROOT = path.resolve(import.meta.dirname, "../..")
const hasPromtool = runsHere("metrics checked by promtool", has("promtool") ? null : "needs promtool (Debian package prometheus, which .ci/run installs)")

/** A port nothing listens on (the kernel's pick, released at once). */
const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const scrape = async (port: number) => {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`)
  expect(response.status).toBe(200)
  return response.text()
}

/** Every sample in an exposition, as `name{labels}` → value. */
const samples = (text: string) =>
  new Map(text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).map((l) => {
    const at = l.lastIndexOf(" ")
    return [l.slice(0, at), Number(l.slice(at + 1))] as const
  }))

const value = (text: string, series: string) => samples(text).get(series) ?? 0

const promtool = (text: string) => cp.spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" })

describe("metrics", () => {
  // The exposition the drain below was served, for promtool after it (tests in a file run in order).
  let served = ""

  it("served during a drain: the counts move, end right, pass promtool; the dashboard queries only what pmjq exports", async () => {
    const t = workspace("metrics")
    const jobs = 12
    for (let i = 0; i < jobs; i++) submit(t.spool, `ok${String(i).padStart(2, "0")}`, `sleep 0.5`)
    submit(t.spool, "fails", "exit 3")
    const port = await freePort()
    const daemon = start(["-j", "2", "-o", t.archive, "--metrics-listen", String(port), t.spool], t.root)
    const finished = (text: string) => value(text, 'pmjq_jobs_finished_total{outcome="succeeded"}') + value(text, 'pmjq_jobs_finished_total{outcome="failed"}')

    // Scrapes until one shows the drain under way: some jobs counted, not all,
    // and the sampled gauges (every 2 s) showing work left.
    let early = ""
    const underWay = (text: string) =>
      finished(text) > 0 && finished(text) < jobs + 1 && value(text, "pmjq_jobs_queued") + value(text, 'pmjq_jobs_running{user="root"}') > 0
    for (const deadline = Date.now() + 60_000; !underWay(early) && Date.now() < deadline;) {
      await new Promise((r) => setTimeout(r, 50))
      early = await scrape(port).catch(() => "")
    }
    expect(underWay(early)).toBe(true)

    let late = ""
    for (const deadline = Date.now() + 60_000; finished(late) < jobs + 1 && Date.now() < deadline;) {
      await new Promise((r) => setTimeout(r, 100))
      late = await scrape(port)
    }
    served = late
    expect(value(late, 'pmjq_jobs_finished_total{outcome="succeeded"}')).toBe(jobs)
    expect(value(late, 'pmjq_jobs_finished_total{outcome="failed"}')).toBe(1)
    expect(value(late, 'pmjq_jobs_finished_total{outcome="cancelled"}')).toBe(0)
    expect(value(late, 'pmjq_claims_total{result="won"}')).toBe(jobs + 1)
    expect(value(late, 'pmjq_job_duration_seconds_count{outcome="succeeded"}')).toBe(jobs)
    // Real run times, not claim to end nor zero. Timed in the spawner from
    // spawn(2)'s return to the reaped exit: on a loaded machine either end can
    // come late by the scheduler's latency (the sum was once 5.97 s for 6 s of
    // sleep), so a tenth less is allowed.
    expect(value(late, 'pmjq_job_duration_seconds_sum{outcome="succeeded"}')).toBeGreaterThanOrEqual(jobs * 0.5 * 0.9)
    expect(value(late, "pmjq_dispatch_latency_seconds_count")).toBe(jobs + 1)
    expect(value(late, "pmjq_resident_memory_bytes")).toBeGreaterThan(10_000_000)
    expect(value(late, 'pmjq_nodes{state="live"}')).toBe(1)
    // Nothing waited: each reason there, at 0.
    expect(["held", "dependency", "paused"].map((r) => samples(late).get(`pmjq_jobs_waiting{reason="${r}"}`))).toEqual([0, 0, 0])


    // Every metric name the dashboard queries is one this pmjq exported.
    const dashboard = fs.readFileSync(path.join(ROOT, "contrib/grafana/pmjq.json"), "utf8")
    const queried = new Set([...dashboard.matchAll(/\bpmjq_[a-z_]+/g)].map((m) => m[0]))
    const exported = new Set([...samples(late).keys()].map((series) => series.replace(/\{.*$/, "")))
    expect(queried.size).toBeGreaterThan(10)
    expect([...queried].filter((name) => !exported.has(name))).toEqual([])

    daemon.child.kill("SIGTERM")
    expect((await daemon.exited).code).toBe(0)
  })

  it.runIf(hasPromtool)("(needs promtool) what was served passes promtool check metrics", () => {
    expect(served).toContain("pmjq_jobs_finished_total")
    const checked = promtool(served)
    expect(checked.stdout + checked.stderr).toBe("")
    expect(checked.status).toBe(0)
  })

  it.runIf(hasPromtool)("(needs promtool) written to --metrics-file whole, replacing a symlink there rather than following it", async () => {
    const t = workspace("metrics-file")
    submit(t.spool, "one", "true")
    const victim = path.join(t.root, "victim")
    fs.writeFileSync(victim, "untouched\n")
    const file = path.join(t.root, "pmjq.prom")
    fs.symlinkSync(victim, file)
    const daemon = start(["-o", t.archive, "--metrics-file", file, t.spool], t.root)
    await waitFor("a metrics file that counts the job", () =>
      fs.lstatSync(file).isFile() && value(fs.readFileSync(file, "utf8"), 'pmjq_jobs_finished_total{outcome="succeeded"}') === 1)
    expect(fs.readFileSync(victim, "utf8")).toBe("untouched\n")
    expect(fs.statSync(file).mode & 0o777).toBe(0o644)
    const checked = promtool(fs.readFileSync(file, "utf8"))
    expect(checked.status).toBe(0)
    // Its asides never linger beside it (node_exporter reads only *.prom, but a folder of them would grow).
    expect(fs.readdirSync(t.root).filter((n) => n.startsWith("pmjq.prom."))).toEqual([])
    daemon.child.kill("SIGTERM")
    await daemon.exited
  })

  it("without -C the load estimate is still reported (a running job counts 1 in it); a user's running jobs read 0 once idle, not \"no data\"", async () => {
    const t = workspace("metrics-idle")
    const release = path.join(t.root, "release")
    const port = await freePort()
    const me = os.userInfo().username
    const daemon = start(["-o", t.archive, "--grace", "1s", "--metrics-listen", String(port), t.spool], t.root)
    try {
      submit(t.spool, "slow", `while [ ! -e "${release}" ]; do sleep 0.1; done`)
      let text = ""
      // A sample (every 2 s) taken while it runs.
      await waitFor("a sample with the job running", async () => {
        text = await scrape(port).catch(() => "")
        return value(text, `pmjq_jobs_running{user="${me}"}`) === 1
      })
      // The gate's estimate: the load average and the job it started, which the average may not show yet.
      expect(value(text, "pmjq_load_estimate")).toBeGreaterThanOrEqual(1)
      // Every metric of pmjq's is in the README's table.
      const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8")
      const names = new Set([...samples(text).keys()].map((series) => series.replace(/\{.*$/, "").replace(/_(bucket|sum|count)$/, "")).filter((n) => n.startsWith("pmjq_")))
      expect(names.size).toBeGreaterThan(10)
      expect([...names].filter((name) => !readme.includes(`\`${name}\``))).toEqual([])
      fs.writeFileSync(release, "")
      await waitFor("a sample with it ended", async () => {
        text = await scrape(port).catch(() => "")
        return value(text, "pmjq_jobs_finished_total{outcome=\"succeeded\"}") === 1 && samples(text).get(`pmjq_jobs_running{user="${me}"}`) === 0
      })
    } finally {
      fs.writeFileSync(release, "")
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("jobs waiting by reason: #PMJQ --hold, a dependency not ended, and the ready queue while paused; each 0 once it no longer holds", async () => {
    const t = workspace("metrics-waiting")
    const port = await freePort()
    const waiting = (text: string) => Object.fromEntries(["held", "dependency", "paused"].map((r) => [r, samples(text).get(`pmjq_jobs_waiting{reason="${r}"}`)]))
    const daemon = start(["-o", t.archive, "--poll", "1s", "--metrics-listen", String(port), t.spool], t.root)
    try {
      // Paused before any job is there: nothing is claimed, and what is ready is counted as paused.
      await waitFor("the node's state", () => fs.existsSync(path.join(t.spool, ".pmjq", "nodes")))
      expect((await run(["pause", "--reason", "metrics test", t.spool], t.root)).code).toBe(0)
      await waitFor("the node paused", () => daemon.output().stderr.includes("claiming nothing new"))
      submit(t.spool, "parked", "#!/bin/sh\n#PMJQ --hold\nexit 0\n")
      submit(t.spool, "child", "#!/bin/sh\n#PMJQ --after=parent\nexit 0\n")
      submit(t.spool, "parent", "exit 0")
      submit(t.spool, "other", "exit 0")
      let text = ""
      await waitFor("a sample of the paused queue", async () => {
        text = await scrape(port).catch(() => "")
        return waiting(text).paused === 2
      })
      expect(waiting(text)).toEqual({ held: 1, dependency: 1, paused: 2 })
      expect(fs.readdirSync(t.spool).sort()).toEqual([".pmjq", "child", "other", "parent", "parked"])

      expect((await run(["resume", t.spool], t.root)).code).toBe(0)
      // parent runs, then child: only the held job still waits.
      await waitFor("the resumed queue run, the held job left", async () => {
        text = await scrape(port).catch(() => "")
        return value(text, 'pmjq_jobs_finished_total{outcome="succeeded"}') === 3 && waiting(text).dependency === 0 && waiting(text).paused === 0
      })
      expect(waiting(text)).toEqual({ held: 1, dependency: 0, paused: 0 })
    } finally {
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })

  it("anyone may connect to the port: 300 silent connections cost pmjq at most 16 descriptors and are closed in seconds, pipelined requests get one answer and 503s, jobs run meanwhile", async () => {
    const t = workspace("metrics-flood")
    const port = await freePort()
    const daemon = start(["-o", t.archive, "--metrics-listen", String(port), t.spool], t.root)
    const pid = daemon.child.pid!
    await waitFor("the metrics served", () => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.status === 200, () => false))
    const descriptors = () => fs.readdirSync(`/proc/${pid}/fd`).length
    const before = descriptors()
    // A local user's flood: connections held open, never a request.
    const closed = new Set<net.Socket>()
    const sockets = Array.from({ length: 300 }, () => {
      const socket = net.connect(port, "127.0.0.1").on("error", () => undefined)
      return socket.on("close", () => closed.add(socket))
    })
    try {
      // The kernel completes every handshake itself; pmjq closes all but 16 once it accepts them.
      await waitFor("pmjq closing the connections past its 16", () => closed.size >= 300 - 16)
      expect(descriptors() - before).toBeLessThanOrEqual(16 + 4)
      submit(t.spool, "meanwhile", "echo ran")
      await waitFor("the job run and archived", () => fs.existsSync(t.archive) && fs.readdirSync(t.archive).some((n) => n.endsWith("_meanwhile.out")))
      // The silent ones are closed by pmjq, not by the test.
      await waitFor("pmjq closing the silent connections", () => closed.size === 300, 60_000)
    } finally {
      for (const socket of sockets) socket.destroy()
    }
    // A thousand requests in one write: one answered, the rest refused without building anything.
    const replies = await new Promise<string>((resolve) => {
      let got = ""
      const socket = net.connect(port, "127.0.0.1", () => socket.write("GET /metrics HTTP/1.1\r\nHost: pmjq\r\n\r\n".repeat(1000)))
      socket.on("data", (d: Buffer) => (got += d.toString())).on("close", () => resolve(got)).on("error", () => undefined)
    })
    expect(replies.match(/^HTTP\/1\.1 200/gm)?.length).toBe(1)
    expect(replies).toMatch(/^HTTP\/1\.1 503/m)
    expect(replies).toContain("pmjq_jobs_finished_total")
    const head = await fetch(`http://127.0.0.1:${port}/metrics`, { method: "HEAD" })
    expect([head.status, await head.text()]).toEqual([200, ""])
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200)
    expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404)
    expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" })).status).toBe(405)
    daemon.child.kill("SIGTERM")
    expect((await daemon.exited).code).toBe(0)
  })

  it("a --metrics-file folder others may write: refused at start, one line, 69, nothing run", async () => {
    const t = workspace("metrics-open")
    submit(t.spool, "never", "echo ran")
    const open = path.join(t.root, "open")
    fs.mkdirSync(open)
    fs.chmodSync(open, 0o1777)
    const result = await run(["-o", t.archive, "--metrics-file", path.join(open, "pmjq.prom"), t.spool], t.root)
    expect(result.code).toBe(69)
    expect(result.stderr).toMatch(/--metrics-file .*pmjq\.prom: .*open is writable by group or others/)
    expect(fs.readdirSync(open)).toEqual([])
    expect(fs.existsSync(path.join(t.spool, "never"))).toBe(true)
  })

  it("a port already taken: a one-line error, EX_UNAVAILABLE (69), nothing run", async () => {
    const t = workspace("metrics-taken")
    submit(t.spool, "never", "echo ran")
    const taken = net.createServer()
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve))
    const { port } = taken.address() as net.AddressInfo
    const result = await run(["-o", t.archive, "--metrics-listen", `127.0.0.1:${port}`, t.spool], t.root)
    taken.close()
    expect(result.code).toBe(69)
    expect(result.stderr.trim().split("\n").filter((l) => l.includes(`--metrics-listen 127.0.0.1:${port}`))).toEqual([
      expect.stringMatching(/EADDRINUSE/)
    ])
    expect(fs.existsSync(path.join(t.spool, "never"))).toBe(true)
  })

  it("a bad --metrics-listen is a usage error (64)", async () => {
    const t = workspace("metrics-usage")
    const result = await run(["--metrics-listen", "localhost:99999", t.spool], t.root)
    expect(result.code).toBe(64)
    expect(result.stderr).toMatch(/--metrics-listen: expected \[ADDR:\]PORT/)
  })
})

const QUICK = "pmjq-ma"
describe.runIf(runsHere("metrics of another user's jobs", rootMissing))("(as root: creates a user) metrics by user", () => {
  beforeAll(() => addUsers([QUICK]))
  afterAll(() => removeUsers([QUICK]))

  it("a user whose only job ran between two samples still gets a pmjq_jobs_running series, at 0", async () => {
    const t = sharedSpool("metrics-quick")
    const release = path.join(t.root, "release")
    const port = await freePort()
    const daemon = start(["--run-as-owner", "-j", "1", "-o", t.archive, "--grace", "1s", "--metrics-listen", String(port), t.spool], t.root)
    try {
      submitAs(QUICK, t.spool, "quick", "true")
      await waitFor("the quick job archived", () => records(t.archive).length === 1)
      // Started after the quick one ended: a sample that shows it came after that end.
      submit(t.spool, "slow", `while [ ! -e "${release}" ]; do sleep 0.1; done`)
      let text = ""
      await waitFor("a sample with root's job running", async () => {
        text = await scrape(port).catch(() => "")
        return value(text, 'pmjq_jobs_running{user="root"}') === 1
      })
      expect(samples(text).get(`pmjq_jobs_running{user="${QUICK}"}`)).toBe(0)
    } finally {
      fs.writeFileSync(release, "")
      daemon.child.kill("SIGTERM")
    }
    expect((await daemon.exited).code).toBe(0)
  })
})

interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: { readonly stringValue?: string } }>
}

/**
 * A collector 2 s away: what a connection sends reaches TO 2 s later, and
 * only if the sender has not given up meanwhile (closed it), as with a
 * request cut short before it was read.
 */
const farAway = async (to: number) => {
  // Connections not yet dropped, nor forwarded and closed.
  let pending = 0
  const proxy = net.createServer((client) => {
    const held: Array<Buffer> = []
    let gone = false
    pending++
    client.on("data", (d: Buffer) => held.push(d)).on("close", () => (gone = true)).on("error", () => undefined)
    setTimeout(() => {
      if (gone) return void pending--
      const upstream = net.connect(to, "127.0.0.1", () => {
        client.removeAllListeners("data")
        for (const d of held) upstream.write(d)
        client.pipe(upstream).pipe(client)
      }).on("error", () => client.destroy()).on("close", () => pending--)
    }, 2000)
  })
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve))
  return { port: (proxy.address() as net.AddressInfo).port, settled: () => pending === 0, close: () => proxy.close() }
}

describe("traces", () => {
  it("with OTEL_EXPORTER_OTLP_ENDPOINT: one trace per job, its claim, run and archival as children, with job, node and outcome; sent whole before pmjq exits, though the collector takes 2 s", async () => {
    const spans: Array<OtlpSpan> = []
    const credentials: Array<string | undefined> = []
    const receiver = http.createServer((request, response) => {
      credentials.push(request.headers.authorization)
      let body = ""
      request.on("data", (chunk: Buffer) => (body += chunk.toString()))
      request.on("end", () => {
        if (request.url === "/v1/traces") {
          const sent = JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<OtlpSpan> }> }> }
          for (const r of sent.resourceSpans) for (const s of r.scopeSpans) spans.push(...s.spans)
        }
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve))
    const far = await farAway((receiver.address() as net.AddressInfo).port)
    const t = workspace("traces")
    submit(t.spool, "good", "true")
    submit(t.spool, "bad", "exit 4")
    // Ends after the first send of spans (a second in) has left: pmjq stops while it is on its way.
    submit(t.spool, "later", "sleep 1.5")
    const daemon = cp.spawn(process.execPath, [BIN, "--drain", "--node-id", "tracer", "-o", t.archive, t.spool], {
      cwd: t.root,
      env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${far.port}`, OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20t0ken" },
      stdio: "ignore"
    })
    const code = await new Promise((resolve) => daemon.once("close", resolve))
    // "bad" failed: the drain says so in its status.
    expect(code).toBe(1)
    await waitFor("every send settled (arrived, or dropped as cut short)", far.settled)
    far.close()
    receiver.close()
    expect(spans.filter((s) => s.name === "pmjq.job").map((s) => s.attributes.find((a) => a.key === "pmjq.job")?.value.stringValue).sort()).toEqual(["bad", "good", "later"])
    expect(new Set(credentials)).toEqual(new Set(["Bearer t0ken"]))

    const attribute = (span: OtlpSpan, key: string) => span.attributes.find((a) => a.key === key)?.value.stringValue
    for (const [job, outcome] of [["good", "succeeded"], ["bad", "failed"], ["later", "succeeded"]] as const) {
      const root = spans.find((s) => s.name === "pmjq.job" && attribute(s, "pmjq.job") === job)!
      expect(root.parentSpanId ?? "").toBe("")
      expect(attribute(root, "pmjq.node")).toBe("tracer")
      expect(attribute(root, "pmjq.outcome")).toBe(outcome)
      const children = spans.filter((s) => s.traceId === root.traceId && s.parentSpanId === root.spanId).map((s) => s.name).sort()
      expect(children).toEqual(["pmjq.archive", "pmjq.claim", "pmjq.run"])
    }
  })
})
