/** What the operator's settings for metrics and traces mean (src/cli/options.ts, src/telemetry/tracing.ts), and what the gauges keep. */
import { Effect, Either, HashMap, Metric, Option, Ref } from "effect"
import { describe, expect, it } from "vitest"
import { parseListen } from "../../src/cli/options.js"
import { processEnded, processStarted, Running } from "../../src/features/Running.js"
import { NO_DIRECTIVES, PLAIN } from "../../src/directives/directives.js"
import { makeWaiting } from "../../src/spool/Waiting.js"
import { jobsWaiting, setWaiting, WAIT_REASONS } from "../../src/telemetry/metrics.js"
import { tracesFrom } from "../../src/telemetry/settings.js"

describe("--metrics-listen", () => {
  it("a port alone listens on the loopback address; an address is taken as given, IPv6 in brackets", () => {
    expect(parseListen("9477")).toEqual(Either.right({ host: "127.0.0.1", port: 9477 }))
    expect(parseListen("0.0.0.0:9477")).toEqual(Either.right({ host: "0.0.0.0", port: 9477 }))
    expect(parseListen("[::1]:80")).toEqual(Either.right({ host: "::1", port: 80 }))
    expect(parseListen("metrics.example:9100")).toEqual(Either.right({ host: "metrics.example", port: 9100 }))
  })

  it("anything else is refused, saying what is expected", () => {
    for (const bad of ["", "0", "65536", "host:", ":9477", "a:b:9477", "9477/metrics", "[::1]"]) {
      expect([bad, Either.isLeft(parseListen(bad))]).toEqual([bad, true])
    }
    expect(parseListen("x")).toEqual(Either.left('expected [ADDR:]PORT (e.g. 9477, 0.0.0.0:9477, [::1]:9477), not "x"'))
  })
})

describe("traces from the OpenTelemetry variables", () => {
  it("none unless an endpoint is given; the traces endpoint as is, the base one with /v1/traces", () => {
    expect(tracesFrom({})).toEqual(Option.none())
    expect(Option.map(tracesFrom({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/" }), (t) => t.url)).toEqual(Option.some("http://c:4318/v1/traces"))
    expect(Option.map(tracesFrom({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://t/x" }), (t) => t.url))
      .toEqual(Option.some("http://t/x"))
  })

  it("turned off as the specification says; the service name and headers as given", () => {
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }
    expect(tracesFrom({ ...on, OTEL_SDK_DISABLED: "true" })).toEqual(Option.none())
    expect(tracesFrom({ ...on, OTEL_TRACES_EXPORTER: "none" })).toEqual(Option.none())
    expect(tracesFrom({ ...on, OTEL_SERVICE_NAME: "batch", OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20abc, x-team=ops,broken" }))
      .toEqual(Option.some({ url: "http://c:4318/v1/traces", serviceName: "batch", headers: { authorization: "Bearer abc", "x-team": "ops" } }))
  })
})

describe("pmjq_jobs_running by user", () => {
  it("a user whose jobs all ended stays counted, at 0: the sampler keeps their series (a dashboard shows 0, not \"no data\")", () => {
    const counts = Effect.runSync(Effect.gen(function*() {
      const running = yield* Running
      yield* processStarted(running, 1000)
      yield* processStarted(running, 1001)
      yield* processStarted(running, 1001)
      yield* processEnded(running, 1000)
      yield* processEnded(running, 1001)
      return [...HashMap.toEntries(yield* Ref.get(running.byOwner))].sort()
    }).pipe(Effect.provide(Running.layer)))
    expect(counts).toEqual([[1000, 0], [1001, 1]])
  })
})

describe("pmjq_jobs_waiting by reason", () => {
  const waiting = () => Object.fromEntries(WAIT_REASONS.map((reason) => [reason, Effect.runSync(Metric.value(Metric.tagged(jobsWaiting, "reason", reason))).value]))

  it("held and dependency as the feed's waiting jobs count them; paused: the ready queue while a pause holds the node; every reason each time", () => {
    const w = makeWaiting()
    const read = (over: Partial<typeof NO_DIRECTIVES>) => ({ ...PLAIN, directives: { ...NO_DIRECTIVES, ...over } })
    expect(w.admit({ name: "parked", readyAt: 1, uid: 1000, read: read({ hold: true }) })).toBe(true)
    expect(w.admit({ name: "test", readyAt: 2, uid: 1000, read: read({ after: ["build"] }) })).toBe(true)
    expect(w.admit({ name: "lint", readyAt: 3, uid: 1000, read: read({ afterAny: ["build"] }) })).toBe(true)
    expect(w.admit({ name: "build", readyAt: 4, uid: 1000 })).toBe(false)
    Effect.runSync(setWaiting(w.counts(), 5, true))
    expect(waiting()).toEqual({ held: 1, dependency: 2, paused: 5 })
    // Resumed, and the dependencies met: zeros, not gone.
    w.forget("test")
    w.forget("lint")
    Effect.runSync(setWaiting(w.counts(), 5, false))
    expect(waiting()).toEqual({ held: 1, dependency: 0, paused: 0 })
  })
})
