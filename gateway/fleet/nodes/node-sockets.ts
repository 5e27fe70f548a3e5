import { ApiError } from "../../../shared/errors.ts";
import { CLOSE_CODES, HEARTBEAT_PING, HEARTBEAT_PONG, parseFrame, PROTOCOL_VERSION, ToGatewayFrame } from "../../../shared/protocol.ts";
import type { AccessStore } from "../access/access-store.ts";
import { NODE_TOKEN_HASH_HEADER, ROOT_NODE_TOKEN } from "../access/caller.ts";
import type { FleetConfig } from "../config.ts";
import { FlowControlViolation, type Dispatcher } from "../routing/dispatcher.ts";
import type { FleetNode, HelloFrame } from "./fleet-node.ts";
import { nameRefusal, socketLimit, tokenTag } from "./node-admission.ts";
import type { NodeWaker } from "./node-waker.ts";
import { attachmentOf, closeQuietly, type NodeRegistry } from "./node-registry.ts";

export interface NodeSocketsParts {
  config: FleetConfig;
  registry: NodeRegistry;
  dispatcher: Dispatcher;
  access: AccessStore;
  waker: NodeWaker;
  /** A node name the fleet already knew said hello again: an agent restart or a dropped link. */
  onReconnect: (name: string) => void;
}

/**
 * The agents' side of the Fleet: their WebSocket upgrades (hibernation API, so an idle fleet
 * costs nothing), `hello`, the frames they send, and the heartbeat sweep that closes the silent.
 */
export class NodeSockets {
  readonly #ctx: DurableObjectState;
  readonly #config: FleetConfig;
  readonly #registry: NodeRegistry;
  readonly #dispatcher: Dispatcher;
  readonly #access: AccessStore;
  readonly #waker: NodeWaker;
  readonly #onReconnect: (name: string) => void;

  constructor(ctx: DurableObjectState, parts: NodeSocketsParts) {
    this.#ctx = ctx;
    this.#config = parts.config;
    this.#registry = parts.registry;
    this.#dispatcher = parts.dispatcher;
    this.#access = parts.access;
    this.#waker = parts.waker;
    this.#onReconnect = parts.onReconnect;
    // Heartbeats are answered by the runtime itself: a ping never wakes a hibernated fleet.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT_PING, HEARTBEAT_PONG));
  }

  /** The agent's upgrade, already authenticated by the Worker. */
  async accept(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new ApiError(426, "Expected a WebSocket upgrade.", { code: "upgrade_required" }).toResponse();
    }
    const tokenHash = request.headers.get(NODE_TOKEN_HASH_HEADER);
    let tokenId: string | undefined;
    if (tokenHash !== ROOT_NODE_TOKEN) {
      const token = tokenHash === null ? undefined : this.#access.useNodeToken(tokenHash, new Date());
      if (token === undefined || token.revoked_at !== null) {
        const message = token === undefined ? "Invalid node token." : "This node token has been revoked.";
        return new ApiError(401, message, { code: "invalid_token" }).toResponse();
      }
      tokenId = token.id;
    }
    const tag = tokenTag(tokenId);
    const tooMany = socketLimit(tokenId, this.#ctx.getWebSockets(tag).filter((ws) => ws.readyState === WebSocket.OPEN).length);
    if (tooMany !== null) return tooMany.toResponse();
    const { 0: client, 1: server } = new WebSocketPair();
    this.#ctx.acceptWebSocket(server, [tag]);
    this.#registry.accept(server, crypto.randomUUID(), Date.now(), tokenId);
    await this.#ensureSweep();
    return new Response(null, { status: 101, webSocket: client });
  }

  message(ws: WebSocket, message: string | ArrayBuffer): void {
    const conn = this.#registry.connOf(ws);
    if (conn === undefined) {
      closeQuietly(ws, CLOSE_CODES.badFrame, "unknown connection");
      return;
    }
    const frame = parseFrame(ToGatewayFrame, message);
    if (frame === null) {
      const version = helloVersion(message);
      if (version !== null && version !== PROTOCOL_VERSION) {
        this.#reject(ws, conn, CLOSE_CODES.unsupportedProtocol, `protocol ${version} is not supported; this gateway speaks protocol ${PROTOCOL_VERSION}`);
      } else {
        this.#reject(ws, conn, CLOSE_CODES.badFrame, "invalid frame");
      }
      return;
    }
    const node = this.#registry.get(conn);
    try {
      if (node === undefined) {
        if (frame.type !== "hello") this.#reject(ws, conn, CLOSE_CODES.badFrame, "the first frame must be hello");
        else this.#hello(ws, conn, frame);
        return;
      }
      switch (frame.type) {
        case "hello":
          this.#reject(ws, conn, CLOSE_CODES.badFrame, "hello was already received");
          return;
        case "status":
          this.#registry.updateStatus(node, frame.status);
          this.#dispatcher.capacityChanged();
          return;
        case "goodbye":
          this.#registry.goodbye(node, frame.reason);
          return;
        case "events":
          this.#dispatcher.onEvents(node, frame.id, frame.events);
          return;
        case "result":
          this.#dispatcher.onResult(node, frame.id, frame.result);
          return;
        case "error": {
          const { type: _, id, ...error } = frame;
          this.#dispatcher.onError(node, id, error);
          return;
        }
      }
    } catch (error) {
      // One node's misbehaviour ends that node's connection, never the fleet.
      const reason = error instanceof FlowControlViolation ? error.message : "frame could not be handled";
      if (!(error instanceof FlowControlViolation)) console.error(`Fleet webSocketMessage: ${node?.name ?? conn}:`, error);
      this.#reject(ws, conn, CLOSE_CODES.badFrame, reason);
    }
  }

  /** The socket closed or failed. */
  lost(ws: WebSocket): void {
    const conn = this.#registry.connOf(ws);
    if (conn === undefined) return;
    const node = this.#registry.remove(conn, Date.now());
    if (node !== undefined) this.#dispatcher.nodeLost(node);
  }

  /** The heartbeat sweep: closes sockets that stopped pinging or never said hello. */
  async sweep(): Promise<void> {
    const now = Date.now();
    for (const ws of this.#ctx.getWebSockets()) {
      const attachment = attachmentOf(ws);
      if (attachment === null) continue;
      const node = this.#registry.get(attachment.conn);
      if (node !== undefined) {
        if (!this.#registry.isAlive(node, now)) this.drop(node, CLOSE_CODES.heartbeatTimeout, "heartbeat timeout");
      } else if (now - attachment.acceptedAt > this.#config.helloTimeoutMs) {
        this.#reject(ws, attachment.conn, CLOSE_CODES.helloTimeout, "no hello received");
      }
    }
    if (this.#ctx.getWebSockets().length > 0) await this.#ctx.storage.setAlarm(Date.now() + this.#sweepIntervalMs());
  }

  /** Closes a node's socket and forgets the node; its requests move on or fail. */
  drop(node: FleetNode, code: number, reason: string): void {
    this.#reject(node.ws, node.id, code, reason);
  }

  /** Disconnects, at once, every node that joined with this (revoked) node token. */
  disconnectToken(tokenId: string): void {
    for (const ws of this.#ctx.getWebSockets()) {
      const attachment = attachmentOf(ws);
      if (attachment?.token === tokenId) this.#reject(ws, attachment.conn, CLOSE_CODES.revoked, "node token revoked");
    }
  }

  #hello(ws: WebSocket, conn: string, hello: HelloFrame): void {
    if (hello.protocol !== PROTOCOL_VERSION) {
      this.#reject(ws, conn, CLOSE_CODES.unsupportedProtocol, `protocol ${hello.protocol} is not supported; this gateway speaks protocol ${PROTOCOL_VERSION}`);
      return;
    }
    // Checked before anything else, so an impostor never displaces the node it names.
    const tokenId = attachmentOf(ws)?.token;
    const refusal = nameRefusal(tokenId === undefined ? undefined : this.#access.nodeToken(tokenId)?.node, hello.node.name);
    if (refusal !== null) {
      this.#reject(ws, conn, CLOSE_CODES.nameNotAllowed, refusal);
      return;
    }
    if (this.#registry.knows(hello.node.name)) this.#onReconnect(hello.node.name);
    // A node that reconnects before its old socket was noticed dead replaces it.
    const previous = this.#registry.byName(hello.node.name);
    if (previous !== undefined) this.drop(previous, CLOSE_CODES.replaced, "replaced by a newer connection of this node");
    const node = this.#registry.register(ws, conn, hello, Date.now());
    node.send({ type: "welcome", node_id: node.id, heartbeat_interval_ms: this.#config.heartbeatIntervalMs });
    this.#waker.arrived(node.name, Date.now());
    this.#dispatcher.capacityChanged();
  }

  /** Closes a socket that broke the protocol; only that connection is affected. */
  #reject(ws: WebSocket, conn: string, code: number, reason: string): void {
    closeQuietly(ws, code, reason);
    const node = this.#registry.remove(conn, Date.now());
    if (node !== undefined) this.#dispatcher.nodeLost(node);
  }

  /**
   * Each sweep wakes the object (a billed request), so it runs once per heartbeat timeout: routing
   * already skips silent nodes the moment their timeout passes; the sweep closes their sockets.
   */
  #sweepIntervalMs(): number {
    return Math.max(1_000, this.#config.heartbeatTimeoutMs);
  }

  async #ensureSweep(): Promise<void> {
    if ((await this.#ctx.storage.getAlarm()) === null) await this.#ctx.storage.setAlarm(Date.now() + this.#sweepIntervalMs());
  }
}

/** The protocol version of something that looks like a hello, even one of another version's shape. */
function helloVersion(message: string | ArrayBuffer): number | null {
  try {
    const value: unknown = JSON.parse(typeof message === "string" ? message : new TextDecoder().decode(message));
    if (typeof value === "object" && value !== null && "type" in value && value.type === "hello" && "protocol" in value) {
      return typeof value.protocol === "number" ? value.protocol : null;
    }
  } catch {
    // not JSON at all
  }
  return null;
}
