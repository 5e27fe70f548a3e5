/**
 * The WebSocket URL of a gateway's agent endpoint, from what a user types: the gateway's base
 * URL (`https://lmgate.example.workers.dev`, `http://127.0.0.1:1234`) or a ws(s) URL.
 */
export function agentConnectUrl(base: string): string {
  const url = new URL(base);
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  else if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new Error(`the gateway URL must be http(s):// or ws(s)://, not ${url.protocol}//`);
  }
  if (!url.pathname.endsWith("/agent/connect")) url.pathname = `${url.pathname.replace(/\/+$/, "")}/agent/connect`;
  return url.toString();
}
