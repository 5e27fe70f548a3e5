import { serve, type Http2Bindings, type HttpBindings, type ServerType } from "@hono/node-server";
import type { AddressInfo } from "node:net";
import type { InferenceBackend } from "../../shared/app/inference-backend.ts";
import type { ModelAdmin } from "../../shared/model-management/model-admin-backend.ts";
import { createApiApp } from "../../shared/app/api-app.ts";
import type { RouteDoc } from "../../shared/app/documented-routes.ts";
import { PROMETHEUS_TEXT, type OpenApiOptions } from "../../shared/app/openapi-document.ts";
import type { Drain } from "./drain.ts";
import { METRICS_PATH, type MetricsHandler } from "../metrics/metrics-endpoint.ts";
import { shuttingDown } from "./tracked-backend.ts";

export interface DirectServer {
  readonly url: string;
  /**
   * Stops listening and resolves once every response has been sent; after `graceMs` (default 5 s)
   * connections still open are cut.
   */
  close(graceMs?: number): Promise<void>;
}

export interface DirectServerOptions {
  backend: InferenceBackend;
  modelAdmin: ModelAdmin;
  host: string;
  port: number;
  onUnexpectedError?: (error: unknown) => void;
  /**
   * Counts every HTTP request until its response is fully sent (streams included); once it
   * closes, API requests get a 503 `shutting_down` with `Retry-After`.
   */
  drain?: Drain;
  /** Serves `GET /metrics` ahead of the API (also while draining); `guarded` when it needs the metrics token. */
  metrics?: { handler: MetricsHandler; guarded: boolean };
}

/**
 * The direct server's `/openapi.json`: the API, open to anyone who can reach the port, and
 * `/metrics` when it is served (ahead of the API's router, so documented here).
 */
export function directOpenApi(metrics?: { guarded: boolean }): OpenApiOptions {
  const security = metrics?.guarded ? "metricsToken" : "public";
  const unrouted: RouteDoc[] = metrics ? [{ method: "get", path: METRICS_PATH, summary: "Prometheus metrics of this agent", tag: "meta", security, text: PROMETHEUS_TEXT }] : [];
  return { title: "lmgate-agent (direct mode)", apiKeys: false, unrouted };
}

/** Serves the API (docs/api.md) for one machine's backend: the same app the gateway serves, on Node. */
export async function startDirectServer(options: DirectServerOptions): Promise<DirectServer> {
  const app = createApiApp({
    backend: () => options.backend,
    modelAdmin: () => options.modelAdmin,
    onUnexpectedError: options.onUnexpectedError, openApi: directOpenApi(options.metrics) });
  const { drain, metrics } = options;
  const fetch = (request: Request, env: HttpBindings | Http2Bindings): Response | Promise<Response> => {
    if (metrics && new URL(request.url).pathname === METRICS_PATH) return metrics.handler(request);
    if (drain) {
      if (drain.draining) {
        const refused = shuttingDown().toResponse();
        // A keep-alive client should reconnect (to whatever serves next), not reuse this socket.
        refused.headers.set("connection", "close");
        return refused;
      }
      env.outgoing.once("close", drain.begin());
    }
    return app.fetch(request);
  };
  const server = await new Promise<ServerType>((resolve, reject) => {
    const started = serve({ fetch, hostname: options.host, port: options.port }, () => resolve(started));
    started.once("error", reject);
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: (graceMs = 5_000) =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          if ("closeAllConnections" in server) server.closeAllConnections();
        }, graceMs);
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        // Idle keep-alive sockets would hold close() open until they time out.
        if ("closeIdleConnections" in server) server.closeIdleConnections();
      }),
  };
}
