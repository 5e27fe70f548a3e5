/**
 * A fake node agent for the gateway's own scale (`fleet-scale`): it joins over a real WebSocket,
 * holds one model with as many slots as asked, and answers every completion by streaming tokens at
 * a fixed rate, honouring the flow-control window. No engine: the gateway is what is measured.
 * It speaks protocol 2 (names itself when it dials, sends the frames of all its streams ready at
 * once in one `batch`) or, for the design before node objects, protocol 1 (one message per frame).
 */
import WebSocket from "ws";
import { FrameBatcher } from "../node-agent/link/frame-batcher.ts";
import { HEARTBEAT_PING, NODE_NAME_HEADER, parseFrame, ToAgentFrame, type ToGatewayFrame } from "../shared/protocol/frames.ts";
import type { GenerationResult } from "../shared/protocol/generation-events.ts";

export interface PacedAgentOptions {
  url: string;
  token: string;
  name: string;
  model: string;
  slots: number;
  tokensPerSecond: number;
  protocol: 1 | 2;
}

export interface PacedAgent {
  /** Messages sent to the gateway (a batch counts once), for the old design's Fleet count. */
  readonly messagesSent: () => number;
  close(): Promise<void>;
}

interface Stream {
  readonly total: number;
  remaining: number;
  unacked: number;
  window: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export async function connectPacedAgent(options: PacedAgentOptions): Promise<PacedAgent> {
  const ws = new WebSocket(`${options.url.replace(/^http/, "ws")}/agent/connect`, {
    headers: { authorization: `Bearer ${options.token}`, ...(options.protocol === 2 ? { [NODE_NAME_HEADER]: options.name } : {}) },
    perMessageDeflate: false,
  });
  let messages = 0;
  const write = (frame: ToGatewayFrame) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    messages += 1;
    ws.send(JSON.stringify(frame));
  };
  const batcher = new FrameBatcher(write);
  const send = options.protocol === 2 ? (frame: ToGatewayFrame) => batcher.send(frame) : write;
  const streams = new Map<string, Stream>();
  const intervalMs = 1000 / options.tokensPerSecond;
  const result = (tokens: number): GenerationResult => ({
    finish_reason: "length",
    usage: { prompt_tokens: 8, completion_tokens: tokens, total_tokens: 8 + tokens },
    stats: { tokens_per_second: options.tokensPerSecond, time_to_first_token: 0, generation_time: tokens / options.tokensPerSecond, stop_reason: "maxPredictedTokensReached" },
    model_info: { arch: "paced", quant: "none", format: "gguf", context_length: 1 << 16 },
    runtime: { name: "paced", version: "1", supported_formats: ["gguf"] },
  });
  const tick = (id: string) => {
    const stream = streams.get(id);
    if (stream === undefined) return;
    const { total } = stream;
    stream.timer = undefined;
    if (stream.unacked >= stream.window) return; // resumed by the next ack
    stream.remaining -= 1;
    stream.unacked += 1;
    if (stream.remaining > 0) {
      send({ type: "events", id, events: [{ type: "delta", text: "tok " }] });
      stream.timer = setTimeout(() => tick(id), intervalMs);
    } else {
      send({ type: "events", id, events: [{ type: "delta", text: "tok " }, { type: "done", result: result(total) }] });
      streams.delete(id);
    }
  };
  ws.on("message", (data: WebSocket.RawData) => {
    const frame = parseFrame(ToAgentFrame, data.toString());
    if (frame === null) return;
    if (frame.type === "request") {
      const { operation } = frame;
      if (operation.op !== "completion" && operation.op !== "chat") return;
      const total = operation.body.max_tokens ?? 16;
      const stream: Stream = { total, remaining: total, unacked: 1, window: frame.window ?? Number.POSITIVE_INFINITY, timer: undefined };
      streams.set(frame.id, stream);
      send({ type: "events", id: frame.id, events: [{ type: "start", model: options.model }] });
      stream.timer = setTimeout(() => tick(frame.id), intervalMs);
    } else if (frame.type === "ack") {
      const stream = streams.get(frame.id);
      if (stream === undefined) return;
      stream.unacked -= frame.frames;
      if (stream.timer === undefined) stream.timer = setTimeout(() => tick(frame.id), 0);
    } else if (frame.type === "cancel") {
      clearTimeout(streams.get(frame.id)?.timer);
      streams.delete(frame.id);
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const welcomed = new Promise<void>((resolve, reject) => {
    ws.on("message", (data: WebSocket.RawData) => {
      if (data.toString().includes('"welcome"')) resolve();
    });
    ws.once("close", (code, reason) => reject(new Error(`${options.name}: closed before welcome (${code} ${reason.toString()})`)));
  });
  write({
    type: "hello",
    protocol: options.protocol,
    node: {
      name: options.name,
      agent_version: "paced",
      runtime: { name: "paced", version: "1", supported_formats: ["gguf"] },
      hardware: { cpu: "none", cores: 1, memory_bytes: 1e9, gpu: null, gpu_devices: [], vram_bytes: null },
      slots_per_model: options.slots,
    },
    status: {
      models: [
        {
          id: options.model,
          object: "model",
          type: "llm",
          publisher: "lmgate",
          arch: "paced",
          compatibility_type: "gguf",
          quantization: "none",
          state: "loaded",
          max_context_length: 1 << 16,
          loaded_context_length: 1 << 16,
        },
      ],
      busy: {},
      speed: {},
    },
  });
  await welcomed;
  const heartbeat = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send(HEARTBEAT_PING), 2_000);
  return {
    messagesSent: () => messages,
    async close() {
      clearInterval(heartbeat);
      for (const stream of streams.values()) clearTimeout(stream.timer);
      const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
      ws.close(1000, "bench done");
      await closed;
    },
  };
}
