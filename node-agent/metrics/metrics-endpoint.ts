import { serve, type ServerType } from "@hono/node-server";
import { createHash, timingSafeEqual } from "node:crypto";
import type { AddressInfo } from "node:net";
import { ApiError } from "../../shared/protocol/api-error.ts";
import type { AgentMetrics } from "./agent-metrics.ts";

/** Answers `GET /metrics`. */
export type MetricsHandler = (request: Request) => Promise<Response>;

export const METRICS_PATH = "/metrics";

/**
 * `GET /metrics` in the Prometheus text format. With a `token`, only callers sending
 * `Authorization: Bearer <token>` get it (compared in constant time).
 */
export function metricsHandler(metrics: AgentMetrics, token?: string): MetricsHandler {
  const expected = token === undefined ? undefined : digest(token);
  return async (request) => {
    if (request.method !== "GET" && request.method !== "HEAD") {
      const refused = new ApiError(405, `${request.method} is not allowed on ${METRICS_PATH}; use GET.`, { code: "method_not_allowed" }).toResponse();
      refused.headers.set("allow", "GET, HEAD");
      return refused;
    }
    if (expected !== undefined) {
      const given = /^Bearer\s+(.+)$/i.exec(request.headers.get("authorization") ?? "")?.[1];
      if (given === undefined || !timingSafeEqual(digest(given), expected)) {
        const refused = new ApiError(401, "The metrics need 'Authorization: Bearer <metrics token>'.", { code: "invalid_metrics_token" }).toResponse();
        refused.headers.set("www-authenticate", 'Bearer realm="lmgate-agent metrics"');
        return refused;
      }
    }
    const body = request.method === "HEAD" ? null : await metrics.text();
    return new Response(body, { headers: { "content-type": metrics.contentType, "cache-control": "no-store" } });
  };
}

export interface MetricsServer {
  /** e.g. `http://127.0.0.1:9464/metrics`. */
  readonly url: string;
  close(): Promise<void>;
}

/** A port of its own for `/metrics`, for agents that do not serve the API (gateway mode). */
export async function startMetricsServer(options: { handler: MetricsHandler; host: string; port: number }): Promise<MetricsServer> {
  const notFound = () =>
    new ApiError(404, `Only ${METRICS_PATH} is served on this port.`, { code: "not_found" }).toResponse();
  const server = await new Promise<ServerType>((resolve, reject) => {
    const started = serve(
      {
        fetch: (request) => (new URL(request.url).pathname === METRICS_PATH ? options.handler(request) : notFound()),
        hostname: options.host,
        port: options.port,
      },
      () => resolve(started),
    );
    started.once("error", reject);
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}${METRICS_PATH}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        if ("closeAllConnections" in server) server.closeAllConnections();
      }),
  };
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}
