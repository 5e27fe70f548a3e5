import { DurableObject } from "cloudflare:workers";
import { ApiError } from "../../shared/errors.ts";
import { CLOSE_CODES, HEARTBEAT_PING, HEARTBEAT_PONG, parseFrame, PROTOCOL_VERSION, ToGatewayFrame } from "../../shared/protocol.ts";
import type { NodeSummary } from "../../shared/schemas/admin.ts";
import type { EmbeddingsResult } from "../../shared/schemas/generation.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../shared/schemas/models.ts";
import type { EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../shared/schemas/requests.ts";
import { fleetConfig, type FleetConfig } from "../config.ts";
import type { GatewayBindings } from "../env.ts";
import { Dispatcher, FlowControlViolation, send, type GenerationHandle, type GenerationOperation } from "./dispatcher.ts";
import type { Outcome } from "./fleet-line.ts";
import type { FleetNode, HelloFrame } from "./fleet-node.ts";
import { fleetModels } from "./model-catalog.ts";
import { attachmentOf, closeQuietly, NodeRegistry } from "./node-registry.ts";

/**
 * One fleet: the WebSockets of its nodes (hibernation API, so an idle fleet costs nothing), the
 * registry of what each node holds, and every request in flight. The Worker reaches it by RPC,
 * and agents' WebSocket upgrades arrive through `fetch`.
 */
export class Fleet extends DurableObject<GatewayBindings> {
  readonly #config: FleetConfig;
  readonly #registry: NodeRegistry;
  readonly #dispatcher: Dispatcher;

  constructor(ctx: DurableObjectState, env: GatewayBindings) {
    super(ctx, env);
    this.#config = fleetConfig(env);
    // Heartbeats are answered by the runtime itself: a ping never wakes a hibernated fleet.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT_PING, HEARTBEAT_PONG));
    this.#registry = new NodeRegistry(ctx, this.#config.heartbeatTimeoutMs);
    this.#dispatcher = new Dispatcher(this.#registry, this.#config, (node) => this.#drop(node, 1011, "send failed"));
  }

  // ---- RPC from the Worker ---------------------------------------------------------------------

  listModels(): ModelObject[] {
    const now = Date.now();
    return fleetModels(this.#registry.online().filter((node) => this.#registry.isAlive(node, now)));
  }

  /** NDJSON lines of `FleetLine`: the events of the generation, or the error that ends it. */
  generate(operation: GenerationOperation): GenerationHandle {
    return this.#dispatcher.generate(operation);
  }

  /** The client of a generation went away: stop it on its node and free the slot. */
  cancel(id: string): void {
    this.#dispatcher.cancel(id);
  }

  embeddings(body: EmbeddingsRequest): Promise<Outcome<EmbeddingsResult>> {
    return this.#dispatcher.call({ op: "embeddings", body }) as Promise<Outcome<EmbeddingsResult>>;
  }

  loadModel(body: LoadRequest): Promise<Outcome<LoadResult>> {
    return this.#dispatcher.call({ op: "load", body }) as Promise<Outcome<LoadResult>>;
  }

  /** Unloads the model from every node that has it loaded. */
  async unloadModel(body: UnloadRequest): Promise<Outcome<UnloadResult>> {
    const model = body.instance_id ?? body.model ?? "";
    const loadedOn = this.#registry.online().filter((node) => node.model(model)?.state === "loaded");
    if (loadedOn.length === 0) {
      // Let a node that holds it answer in its own words ("not loaded"), or say nobody holds it.
      return this.#dispatcher.call({ op: "unload", body }) as Promise<Outcome<UnloadResult>>;
    }
    const outcomes = await Promise.all(loadedOn.map((node) => this.#dispatcher.call({ op: "unload", body }, node)));
    return (outcomes.find((outcome) => outcome.ok) ?? outcomes[0]) as Outcome<UnloadResult>;
  }

  listNodes(): NodeSummary[] {
    return this.#registry.summaries(Date.now());
  }

  // ---- agent sockets ---------------------------------------------------------------------------

  /** The agent's upgrade, already authenticated by the Worker. */
  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new ApiError(426, "Expected a WebSocket upgrade.", { code: "upgrade_required" }).toResponse();
    }
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server);
    this.#registry.accept(server, crypto.randomUUID(), Date.now());
    await this.#ensureSweep();
    return new Response(null, { status: 101, webSocket: client });
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
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
        case "events":
          this.#dispatcher.onEvents(node, frame.id, frame.events);
          return;
        case "result":
          this.#dispatcher.onResult(node, frame.id, frame.result);
          return;
        case "error":
          this.#dispatcher.onError(node, frame.id, {
            status: frame.status,
            body: frame.body,
            ...(frame.retry_after !== undefined ? { retry_after: frame.retry_after } : {}),
          });
          return;
      }
    } catch (error) {
      // One node's misbehaviour ends that node's connection, never the fleet.
      const reason = error instanceof FlowControlViolation ? error.message : "frame could not be handled";
      if (!(error instanceof FlowControlViolation)) console.error(`Fleet webSocketMessage: ${node?.name ?? conn}:`, error);
      this.#reject(ws, conn, CLOSE_CODES.badFrame, reason);
    }
  }

  override webSocketClose(ws: WebSocket): void {
    this.#lose(ws);
  }

  override webSocketError(ws: WebSocket): void {
    this.#lose(ws);
  }

  /** The heartbeat sweep: closes sockets that stopped pinging or never said hello. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    for (const ws of this.ctx.getWebSockets()) {
      const attachment = attachmentOf(ws);
      if (attachment === null) continue;
      const node = this.#registry.get(attachment.conn);
      if (node !== undefined) {
        if (!this.#registry.isAlive(node, now)) this.#drop(node, CLOSE_CODES.heartbeatTimeout, "heartbeat timeout");
      } else if (now - attachment.acceptedAt > this.#config.helloTimeoutMs) {
        this.#reject(ws, attachment.conn, CLOSE_CODES.helloTimeout, "no hello received");
      }
    }
    if (this.ctx.getWebSockets().length > 0) await this.ctx.storage.setAlarm(Date.now() + this.#sweepIntervalMs());
  }

  // ---- internals -------------------------------------------------------------------------------

  #hello(ws: WebSocket, conn: string, hello: HelloFrame): void {
    if (hello.protocol !== PROTOCOL_VERSION) {
      this.#reject(ws, conn, CLOSE_CODES.unsupportedProtocol, `protocol ${hello.protocol} is not supported; this gateway speaks protocol ${PROTOCOL_VERSION}`);
      return;
    }
    // A node that reconnects before its old socket was noticed dead replaces it.
    const previous = this.#registry.byName(hello.node.name);
    if (previous !== undefined) this.#drop(previous, CLOSE_CODES.replaced, "replaced by a newer connection of this node");
    const node = this.#registry.register(ws, conn, hello, Date.now());
    send(ws, { type: "welcome", node_id: node.id, heartbeat_interval_ms: this.#config.heartbeatIntervalMs });
    this.#dispatcher.capacityChanged();
  }

  /** Closes a socket that broke the protocol; only that connection is affected. */
  #reject(ws: WebSocket, conn: string, code: number, reason: string): void {
    closeQuietly(ws, code, reason);
    const node = this.#registry.remove(conn, Date.now());
    if (node !== undefined) this.#dispatcher.nodeLost(node);
  }

  #drop(node: FleetNode, code: number, reason: string): void {
    this.#reject(node.ws, node.id, code, reason);
  }

  #lose(ws: WebSocket): void {
    const conn = this.#registry.connOf(ws);
    if (conn === undefined) return;
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
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + this.#sweepIntervalMs());
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

