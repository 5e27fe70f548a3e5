import { DurableObject } from "cloudflare:workers";

interface Env {
  HUB: DurableObjectNamespace<Hub>;
}

/** Relays each request body to the one connected echo agent and answers with what comes back. */
export class Hub extends DurableObject<Env> {
  #pending = new Map<string, (body: string) => void>();

  override async fetch(): Promise<Response> {
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server);
    return new Response(null, { status: 101, webSocket: client });
  }

  async echo(body: string): Promise<string> {
    const socket = this.ctx.getWebSockets()[0];
    if (!socket) throw new Error("no echo agent connected");
    const id = crypto.randomUUID();
    const answer = new Promise<string>((resolve) => this.#pending.set(id, resolve));
    socket.send(JSON.stringify({ id, body }));
    return answer;
  }

  /**
   * The same round trip, but the answer comes back as a byte stream over RPC — the way the
   * gateway's Fleet hands a generation to the Worker — so the cost of that choice is measured too.
   */
  echoStream(body: string): ReadableStream<Uint8Array> {
    const socket = this.ctx.getWebSockets()[0];
    if (!socket) throw new Error("no echo agent connected");
    const id = crypto.randomUUID();
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const writer = writable.getWriter();
    this.#pending.set(id, (answer) => void writer.write(new TextEncoder().encode(answer)).then(() => writer.close()));
    socket.send(JSON.stringify({ id, body }));
    return readable;
  }

  override async webSocketMessage(_socket: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const { id, body } = JSON.parse(typeof message === "string" ? message : new TextDecoder().decode(message)) as { id: string; body: string };
    this.#pending.get(id)?.(body);
    this.#pending.delete(id);
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const hub = env.HUB.getByName("floor");
    const path = new URL(request.url).pathname;
    if (path === "/health") return new Response("ok");
    if (path === "/connect") return hub.fetch(request);
    if (path === "/worker-echo") return new Response(await request.text(), { headers: { "content-type": "application/json" } });
    if (path === "/echo-stream") {
      const answer = await new Response(await hub.echoStream(await request.text())).text();
      return new Response(answer, { headers: { "content-type": "application/json" } });
    }
    return new Response(await hub.echo(await request.text()), { headers: { "content-type": "application/json" } });
  },
} satisfies ExportedHandler<Env>;
