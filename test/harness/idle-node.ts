import WebSocket from "ws";
import { HEARTBEAT_PING, NODE_NAME_HEADER, PROTOCOL_VERSION, type ToGatewayFrame, type WakeInfo } from "../../shared/protocol/frames.ts";
import type { ModelObject } from "../../shared/protocol/model-schemas.ts";

/**
 * A node that joins a real gateway over a real WebSocket, says hello with the models it is given,
 * keeps its heartbeat, and serves nothing: what the dashboard and the fleet see of a large fleet
 * without running an engine per node.
 */
export interface IdleNode {
  readonly name: string;
  close(): Promise<void>;
}

export interface IdleNodeOptions {
  url: string;
  token: string;
  name: string;
  models: ModelObject[];
  slots?: number;
  heartbeatMs?: number;
  /** Hello's Wake-on-LAN (how to wake it); none when not given. */
  wake?: WakeInfo;
}

export async function connectIdleNode(options: IdleNodeOptions): Promise<IdleNode> {
  const ws = new WebSocket(`${options.url.replace(/^http/, "ws")}/agent/connect`, {
    headers: { authorization: `Bearer ${options.token}`, [NODE_NAME_HEADER]: options.name },
  });
  const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
  const welcomed = new Promise<void>((resolve, reject) => {
    ws.once("error", reject);
    ws.once("close", (code, reason) => reject(new Error(`${options.name}: closed before welcome (${code} ${reason.toString()})`)));
    ws.on("message", (data) => {
      if (data.toString().includes('"welcome"')) resolve();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const hello: ToGatewayFrame = {
    type: "hello",
    protocol: PROTOCOL_VERSION,
    node: {
      name: options.name,
      agent_version: "idle-node",
      runtime: { name: "llama.cpp-linux-x86_64-cuda", version: "idle", supported_formats: ["gguf"] },
      hardware: { cpu: "Simulated CPU", cores: 16, memory_bytes: 64 * 2 ** 30, gpu: "cuda", gpu_devices: ["Simulated GPU"], vram_bytes: 24 * 2 ** 30 },
      slots_per_model: options.slots ?? 4,
      ...(options.wake ? { wake: options.wake } : {}),
    },
    status: { models: options.models, busy: {}, speed: {} },
  };
  ws.send(JSON.stringify(hello));
  await welcomed;
  const heartbeat = setInterval(() => ws.send(HEARTBEAT_PING), options.heartbeatMs ?? 2_000);
  return {
    name: options.name,
    async close() {
      clearInterval(heartbeat);
      ws.close(1000, "done");
      await closed;
    },
  };
}

/** A catalogue entry as an agent reports it, for simulated nodes. */
export function simulatedModel(id: string, loaded: boolean): ModelObject {
  return {
    id,
    object: "model",
    type: "llm",
    publisher: "simulated",
    arch: "llama",
    compatibility_type: "gguf",
    quantization: "Q4_K_M",
    state: loaded ? "loaded" : "not-loaded",
    max_context_length: 32_768,
    ...(loaded ? { loaded_context_length: 8_192 } : {}),
  };
}
