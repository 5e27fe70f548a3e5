import { DurableObject } from "cloudflare:workers";
import { ApiError } from "../../shared/protocol/api-error.ts";
import {
  CLOSE_CODES,
  HEARTBEAT_PING,
  HEARTBEAT_PONG,
  parseFrame,
  toWire,
  ToGatewayFrame,
  type Operation,
  type ToAgentFrame,
} from "../../shared/protocol/frames.ts";
import type { GatewayBindings } from "../env.ts";
import { fleetOf } from "../env.ts";
import { fleetConfig, type FleetConfig } from "../fleet/fleet-config.ts";
import type { Serving } from "../fleet/fleet-contract.ts";
import type { Ending } from "../fleet/routing/settlement.ts";
import { settledFrom, type CallAnswer, type Lease, type NodeApi } from "./node-contract.ts";
import { helloRefusal, pendingLimit, NODE_DIAL_HEADER, NODE_NAME_OWNED_HEADER, NODE_TOKEN_ID_HEADER, NODE_TOKEN_NODE_HEADER, socketLimit, tokenTag } from "./node-admission.ts";
import { FlowControlViolation, Relay } from "./relay.ts";
import { StatusDeltas } from "./status-deltas.ts";

/** What a socket carries through hibernation (≤ 2 KB): who it is, never the model catalog. */
interface Attachment {
  conn: string;
  acceptedAt: number;
  /** The name the agent dialled as (its object's); its hello must say the same. */
  name: string;
  /** The node token it connected with (absent for LMGATE_NODE_TOKEN), and the name that token was made for. */
  token?: string;
  tokenNode?: string;
  /** The shared token dialled as a name another token owns: its hello is refused. */
  nameOwned?: boolean;
  /** Set once the node said hello and the Fleet registered it. */
  joined?: boolean;
  /** Its dial among the token's sockets without hello, which the Fleet counts until it joins or closes. */
  dial?: string;
}

/**
 * One node's object: its agent's WebSocket ends here (hibernation API, so an idle node costs
 * nothing), and every generation the Fleet places on the node is relayed from here to the Worker
 * as a byte stream, with its flow control, cancellation, bounds and the rewriting of its events.
 * The Fleet hears from it only what decides placement: the node joining and leaving, its slot
 * and catalog changes (as deltas), and each request's end, once.
 */
export class NodeObject extends DurableObject<GatewayBindings> implements Serving<NodeApi> {
  readonly #config: FleetConfig;
  /** Generations running (or cancelled and waiting for their usage) here, by request id. */
  readonly #relays = new Map<string, Relay>();
  /** One-shot calls waiting for the node's answer, by request id. */
  readonly #calls = new Map<string, (answer: CallAnswer) => void>();
  readonly #deltas: StatusDeltas;

  constructor(ctx: DurableObjectState, env: GatewayBindings) {
    super(ctx, env);
    this.#config = fleetConfig(env);
    // Heartbeats are answered by the runtime itself: a ping never wakes a hibernated node object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT_PING, HEARTBEAT_PONG));
    this.#deltas = new StatusDeltas((conn, delta) => this.#fleet().nodeStatus(conn, delta));
  }

  #fleet() {
    return fleetOf(this.env);
  }

  // ---- the agent's socket ----------------------------------------------------------------------

  /** The agent's upgrade, its token already checked by the Worker and the Fleet. */
  override async fetch(request: Request): Promise<Response> {
    const name = new URL(request.url).searchParams.get("node") ?? "";
    const token = request.headers.get(NODE_TOKEN_ID_HEADER) ?? undefined;
    const tokenNode = request.headers.get(NODE_TOKEN_NODE_HEADER) ?? undefined;
    const nameOwned = request.headers.get(NODE_NAME_OWNED_HEADER) === "1";
    const dial = request.headers.get(NODE_DIAL_HEADER) ?? undefined;
    const tag = tokenTag(token);
    const open = this.ctx.getWebSockets(tag).filter((ws) => ws.readyState === WebSocket.OPEN);
    const tooMany = socketLimit(token, open.length) ?? pendingLimit(token, open.filter((ws) => attachmentOf(ws)?.joined !== true).length);
    if (tooMany !== null) return tooMany.toResponse();
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [tag]);
    server.serializeAttachment({
      conn: crypto.randomUUID(),
      acceptedAt: Date.now(),
      name,
      ...(token === undefined ? {} : { token }),
      ...(tokenNode === undefined ? {} : { tokenNode }),
      ...(nameOwned ? { nameOwned } : {}),
      ...(dial === undefined ? {} : { dial }),
    } satisfies Attachment);
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + this.#sweepIntervalMs());
    return new Response(null, { status: 101, webSocket: client });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const attachment = attachmentOf(ws);
    if (attachment === null) return closeQuietly(ws, CLOSE_CODES.badFrame, "unknown connection");
    const frame = parseFrame(ToGatewayFrame, message);
    if (!attachment.joined) {
      const refusal = helloRefusal(message, frame, attachment);
      if (refusal !== null) return this.#reject(ws, refusal.code, refusal.reason);
      if (frame?.type !== "hello") return;
      await this.#join(ws, attachment, frame);
      return;
    }
    if (frame === null) return this.#reject(ws, CLOSE_CODES.badFrame, "invalid frame");
    try {
      switch (frame.type) {
        case "hello":
          return this.#reject(ws, CLOSE_CODES.badFrame, "hello was already received");
        case "status":
          this.#deltas.update(attachment.conn, frame.status);
          return;
        case "events":
          this.#onEvents(ws, frame.id, frame.events);
          return;
        case "batch":
          for (const events of frame.frames) this.#onEvents(ws, events.id, events.events);
          return;
        case "goodbye":
          // Said just before the agent closes its socket: the Fleet remembers it went on purpose.
          this.ctx.waitUntil(this.#fleet().nodeGoodbye(attachment.conn, frame.reason).catch(() => undefined));
          return;
        case "result":
          this.#calls.get(frame.id)?.({ ok: true, result: frame.result });
          return;
        case "error": {
          const { type: _, id, ...error } = frame;
          const call = this.#calls.get(id);
          if (call !== undefined) call({ ok: false, error });
          else this.#relays.get(id)?.onError(error);
          return;
        }
      }
    } catch (error) {
      // The node's misbehaviour ends its connection, never the object.
      if (!(error instanceof FlowControlViolation)) console.error(`node object ${attachment.name}:`, error);
      this.#reject(ws, CLOSE_CODES.badFrame, error instanceof FlowControlViolation ? error.message : "frame could not be handled");
    }
  }

  override webSocketClose(ws: WebSocket): void {
    this.#lost(ws);
  }

  override webSocketError(ws: WebSocket): void {
    this.#lost(ws);
  }

  /** The heartbeat sweep: closes a socket that stopped pinging or never said hello. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    for (const ws of this.ctx.getWebSockets()) {
      const attachment = attachmentOf(ws);
      if (attachment === null) continue;
      const lastHeard = this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? attachment.acceptedAt;
      if (attachment.joined && now - lastHeard > this.#config.heartbeatTimeoutMs) {
        this.#reject(ws, CLOSE_CODES.heartbeatTimeout, "heartbeat timeout");
      } else if (!attachment.joined && now - attachment.acceptedAt > this.#config.helloTimeoutMs) {
        this.#reject(ws, CLOSE_CODES.helloTimeout, "no hello received");
      }
    }
    if (this.ctx.getWebSockets().length > 0) await this.ctx.storage.setAlarm(Date.now() + this.#sweepIntervalMs());
  }

  // ---- RPC from the Worker and the Fleet (`NodeApi`) -------------------------------------------

  relay(lease: Lease): ReadableStream<Uint8Array> {
    const ws = this.#socketOf(lease.conn);
    if (ws === undefined) this.#stale(lease.conn);
    const relay: Relay = new Relay(lease, {
      send: (frame) => (ws === undefined ? false : send(ws, frame)),
      settle: (ending) => this.#settle(lease, ending),
      finished: () => {
        if (this.#relays.get(lease.id) === relay) this.#relays.delete(lease.id);
      },
    });
    this.#relays.set(lease.id, relay);
    relay.start();
    return relay.readable;
  }

  cancel(id: string): void {
    this.#relays.get(id)?.cancel();
  }

  call(conn: string, id: string, operation: Operation): Promise<CallAnswer> {
    const ws = this.#socketOf(conn);
    if (ws === undefined) this.#stale(conn);
    if (ws === undefined || !send(ws, { type: "request", id, operation })) return Promise.resolve({ lost: true });
    return new Promise((resolve) => {
      this.#calls.set(id, (answer) => {
        this.#calls.delete(id);
        resolve(answer);
      });
    });
  }

  holds(conn: string): boolean {
    return this.#socketOf(conn) !== undefined;
  }

  disconnectToken(tokenId: string): void {
    for (const ws of this.ctx.getWebSockets(tokenTag(tokenId))) this.#reject(ws, CLOSE_CODES.revoked, "node token revoked");
  }

  // ---- inside ----------------------------------------------------------------------------------

  async #join(ws: WebSocket, attachment: Attachment, hello: Extract<ToGatewayFrame, { type: "hello" }>): Promise<void> {
    // A node that reconnects before its old socket was noticed dead replaces it.
    for (const other of this.ctx.getWebSockets()) {
      if (other !== ws && attachmentOf(other)?.joined) this.#reject(other, CLOSE_CODES.replaced, "replaced by a newer connection of this node");
    }
    const { dial, ...joined } = attachment;
    ws.serializeAttachment({ ...joined, joined: true } satisfies Attachment);
    this.#deltas.joined(attachment.conn, hello.status);
    await this.#fleet().nodeJoined(attachment.conn, hello, attachment.token, dial);
    send(ws, { type: "welcome", node_id: attachment.conn, heartbeat_interval_ms: this.#config.heartbeatIntervalMs });
  }

  #onEvents(ws: WebSocket, id: string, events: Parameters<Relay["onEvents"]>[0]): void {
    const relay = this.#relays.get(id);
    if (relay !== undefined) return relay.onEvents(events);
    const call = this.#calls.get(id);
    if (call !== undefined) {
      // Never leave the caller waiting on an answer that will not come in the shape it needs.
      const error = new ApiError(502, `Node "${attachmentOf(ws)?.name}" answered a call with generation events.`, { code: "bad_node_response" });
      return call({ ok: false, error: toWire(error) });
    }
    // A generation this object does not know (it restarted since): its client is gone, so stop it.
    send(ws, { type: "cancel", id });
  }

  #settle(lease: Lease, ending: Ending): Promise<void> {
    return this.#fleet()
      .settle(lease.id, lease.attempt, ending, settledFrom(lease))
      .catch((error: unknown) => console.error("node object: settle failed:", error));
  }

  /**
   * The Fleet placed work on a connection this object no longer has (it restarted, and the agent has
   * not come back): the Fleet forgets it, rather than keep a node that will never answer.
   */
  #stale(conn: string): void {
    this.ctx.waitUntil(this.#fleet().nodeLeft(conn).catch(() => undefined));
  }

  #socketOf(conn: string): WebSocket | undefined {
    return this.ctx.getWebSockets().find((ws) => attachmentOf(ws)?.conn === conn && ws.readyState === WebSocket.OPEN);
  }

  /** Closes a socket; if the node had joined, what ran on it ends and the Fleet forgets it. */
  #reject(ws: WebSocket, code: number, reason: string): void {
    closeQuietly(ws, code, reason);
    this.#lost(ws);
  }

  #lost(ws: WebSocket): void {
    const attachment = attachmentOf(ws);
    if (attachment?.dial !== undefined) {
      // Gone without a hello: the Fleet stops counting it against its token (once).
      const { dial, ...rest } = attachment;
      ws.serializeAttachment(rest satisfies Attachment);
      this.ctx.waitUntil(this.#fleet().dialEnded(dial).catch(() => undefined));
    }
    if (attachment === null || !attachment.joined) return;
    // Once: a closed socket's later close event finds it no longer joined.
    ws.serializeAttachment({ ...attachment, joined: false } satisfies Attachment);
    for (const relay of [...this.#relays.values()]) if (relay.lease.conn === attachment.conn) relay.lost();
    for (const resolve of [...this.#calls.values()]) resolve({ lost: true });
    this.#deltas.left(attachment.conn);
    this.ctx.waitUntil(this.#fleet().nodeLeft(attachment.conn).catch(() => undefined));
  }

  /** Each sweep wakes the object, so it runs once per heartbeat timeout. */
  #sweepIntervalMs(): number {
    return Math.max(1_000, this.#config.heartbeatTimeoutMs);
  }
}

function send(ws: WebSocket, frame: ToAgentFrame): boolean {
  try {
    ws.send(JSON.stringify(frame));
    return true;
  } catch {
    return false;
  }
}

function attachmentOf(ws: WebSocket): Attachment | null {
  return ws.deserializeAttachment() as Attachment | null;
}

/** `close` throws on a socket that is already closing; there is nothing left to do then. */
function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason.slice(0, 120));
  } catch {
    // already closed
  }
}
