import { serve, type ServerType } from "@hono/node-server";
import type { AddressInfo } from "node:net";
import type { InferenceBackend } from "../shared/backend.ts";
import { createApiApp } from "../shared/app.ts";

export interface DirectServer {
  readonly url: string;
  close(): Promise<void>;
}

/** Serves API.md for one machine's backend: the same app the gateway serves, on Node. */
export async function startDirectServer(options: {
  backend: InferenceBackend;
  host: string;
  port: number;
  onUnexpectedError?: (error: unknown) => void;
}): Promise<DirectServer> {
  const app = createApiApp({ backend: () => options.backend, onUnexpectedError: options.onUnexpectedError });
  const server = await new Promise<ServerType>((resolve, reject) => {
    const started = serve({ fetch: app.fetch, hostname: options.host, port: options.port }, () => resolve(started));
    started.once("error", reject);
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle keep-alive sockets would hold close() open until they time out.
        if ("closeIdleConnections" in server) server.closeIdleConnections();
      }),
  };
}
