/**
 * --metrics-listen: GET /metrics on ADDR:PORT, from a server of pmjq's own
 * (the exporter's builds in no limits). pmjq runs as root and anyone on the
 * host can connect to the port, so nobody may use up pmjq's descriptors,
 * memory or time through it:
 *   - at most MAX_CONNECTIONS at once; more are closed as soon as accepted;
 *   - one request a connection: pipelined ones get a 503, and cost nothing;
 *   - a connection that sends nothing, or too slowly, is closed in seconds;
 *   - the exposition is built at most once a second, however many ask
 *     (exporter.ts caches it).
 * What it cannot prevent: a local user holding every connection keeps
 * Prometheus out (--metrics-file has no such exposure).
 */
import { Effect, FiberSet } from "effect"
import * as http from "node:http"
import { CannotServeMetrics, describe } from "../errors/errors.js"
import type { ListenAddress } from "./settings.js"

const MAX_CONNECTIONS = 16
const IDLE_MS = 5_000
const REQUEST_MS = 10_000
// Node checks the two timeouts above only this often (30 s by default).
const CHECK_MS = 1_000

// URL.parse is not in every Node 20.
const pathOf = (url: string | undefined) => {
  try {
    return new URL(url ?? "", "http://pmjq").pathname
  } catch {
    return null
  }
}

// A connection timed out meanwhile was answered (408) and closed by Node.
const answer = (response: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders = {}, body?: string) => {
  if (response.headersSent || response.destroyed) return
  response.writeHead(status, headers)
  response.end(body)
}

/** Serves EXPOSITION until the scope closes; then the server and its connections are closed. */
export const serveMetrics = <E>(exposition: Effect.Effect<string, E>, { host, port }: ListenAddress) =>
  Effect.gen(function*() {
    // Requests arrive as Node callbacks: each is answered in a fiber of this scope.
    const run = yield* FiberSet.makeRuntime<never>()
    const handle = (request: http.IncomingMessage, response: http.ServerResponse) => {
      if (pathOf(request.url) !== "/metrics") return answer(response, 404)
      if (request.method !== "GET" && request.method !== "HEAD") return answer(response, 405, { allow: "GET, HEAD" })
      run(exposition.pipe(Effect.matchEffect({
        onSuccess: (text) =>
          Effect.sync(() => answer(response, 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }, request.method === "HEAD" ? undefined : text)),
        onFailure: (e) =>
          Effect.logWarning("metrics not served").pipe(Effect.annotateLogs({ reason: describe(e) }), Effect.zipRight(Effect.sync(() => answer(response, 500))))
      })))
    }
    return yield* Effect.acquireRelease(
      Effect.async<http.Server, CannotServeMetrics>((resume) => {
        const server = http.createServer({
          headersTimeout: IDLE_MS,
          requestTimeout: REQUEST_MS,
          keepAliveTimeout: IDLE_MS,
          connectionsCheckingInterval: CHECK_MS,
          maxHeaderSize: 4096
        }, handle)
        server.maxConnections = MAX_CONNECTIONS
        server.maxRequestsPerSocket = 1
        server.setTimeout(IDLE_MS)
        const failed = (e: Error) => resume(Effect.fail(new CannotServeMetrics({ reason: `--metrics-listen ${host}:${port}: ${describe(e)}` })))
        server.once("error", failed)
        server.listen({ host, port }, () => {
          // From now on an error is one connection's (EMFILE at accept): said,
          // and the server goes on. Unheard, the second would end pmjq.
          server.off("error", failed)
          server.on("error", (e) => run(Effect.logWarning("metrics server").pipe(Effect.annotateLogs({ reason: describe(e) }))))
          // Not what keeps pmjq running: its scope closes it.
          resume(Effect.succeed(server.unref()))
        })
      }),
      (server) =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
        })
    )
  })
