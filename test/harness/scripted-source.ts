import { ApiError } from "../../shared/protocol/api-error.ts";
import type { Hardware, NodeStatus } from "../../shared/protocol/frames.ts";
import type { EmbeddingsResult, GenerationEvent, GenerationResult, Runtime, StopReason } from "../../shared/protocol/generation-events.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../shared/protocol/model-schemas.ts";
import type { ChatRequest, CompletionRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../shared/protocol/request-schemas.ts";
import type { NodeSource } from "../../node-agent/link/node-source.ts";

/**
 * A `NodeSource` for tests of the link and the gateway that need no model: it "generates" a
 * scripted list of words, one event per pull (so it feels backpressure like a real engine), and
 * records what it was asked and what was cancelled.
 */

export interface ScriptedSourceOptions {
  models: string[];
  slotsPerModel?: number;
  /** The words each generation yields, one delta each. Defaults to five words. */
  words?: (request: ChatRequest | CompletionRequest) => string[];
  /** Wait before each delta, ms. Defaults to 0. */
  delayMs?: number;
}

export function scriptedModel(id: string, state: ModelObject["state"] = "loaded"): ModelObject {
  return {
    id,
    object: "model",
    type: id.includes("embed") ? "embeddings" : "llm",
    publisher: "lmgate",
    arch: "llama",
    compatibility_type: "gguf",
    quantization: "F32",
    state,
    max_context_length: 2048,
    ...(state === "loaded" ? { loaded_context_length: 2048 } : {}),
  };
}

export function scriptedResult(completionTokens: number, stopReason: StopReason = "eosFound"): GenerationResult {
  return {
    finish_reason: "stop",
    usage: { prompt_tokens: 1, completion_tokens: completionTokens, total_tokens: completionTokens + 1 },
    stats: { tokens_per_second: 1000, time_to_first_token: 0.001, generation_time: 0.005, stop_reason: stopReason },
    model_info: { arch: "llama", quant: "F32", format: "gguf", context_length: 2048 },
    runtime: { name: "scripted", version: "1", supported_formats: ["gguf"] },
  };
}

export class ScriptedSource implements NodeSource {
  readonly runtime: Runtime = { name: "scripted", version: "1", supported_formats: ["gguf"] };
  readonly slotsPerModel: number;
  /** Deltas the engine produced (pulled), over all requests. */
  pulled = 0;
  readonly requests: Array<ChatRequest | CompletionRequest | EmbeddingsRequest> = [];
  readonly aborted: string[] = [];
  #models: ModelObject[];
  #busy: Record<string, number> = {};
  readonly #listeners = new Set<() => void>();
  readonly #options: ScriptedSourceOptions;

  constructor(options: ScriptedSourceOptions) {
    this.#options = options;
    this.slotsPerModel = options.slotsPerModel ?? 2;
    this.#models = options.models.map((id) => scriptedModel(id));
  }

  status(): NodeStatus {
    return { models: this.#models, busy: { ...this.#busy }, speed: {} };
  }

  async hardware(): Promise<Hardware> {
    return { cpu: "scripted cpu", cores: 2, memory_bytes: 2 ** 30, gpu: null, gpu_devices: [], vram_bytes: null };
  }

  onStatusChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  setModels(models: ModelObject[]): void {
    this.#models = models;
    this.#notify();
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }

  async listModels(): Promise<ModelObject[]> {
    return this.#models;
  }

  chat(request: ChatRequest, signal: AbortSignal): AsyncIterable<GenerationEvent> {
    return this.#generate(request, signal);
  }

  completion(request: CompletionRequest, signal: AbortSignal): AsyncIterable<GenerationEvent> {
    return this.#generate(request, signal);
  }

  async *#generate(request: ChatRequest | CompletionRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    this.#require(request.model);
    this.requests.push(request);
    this.#busy[request.model] = (this.#busy[request.model] ?? 0) + 1;
    this.#notify();
    let completed = false;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#busy[request.model] = (this.#busy[request.model] ?? 1) - 1;
      this.#notify();
    };
    try {
      yield { type: "start", model: request.model };
      const words = this.#options.words?.(request) ?? ["one ", "two ", "three ", "four ", "five"];
      let produced = 0;
      for (const word of words) {
        if (this.#options.delayMs) await new Promise((resolve) => setTimeout(resolve, this.#options.delayMs));
        if (signal.aborted) {
          // Like LocalBackend: an aborted generation ends with what it spent so far.
          release();
          yield { type: "done", result: scriptedResult(produced, "userStopped") };
          return;
        }
        this.pulled += 1;
        produced += 1;
        yield { type: "delta", text: word };
      }
      completed = true;
      // Like LocalBackend: consumers stop pulling once they have `done`, so the slot frees here.
      release();
      yield { type: "done", result: scriptedResult(words.length) };
    } finally {
      // Aborted, or abandoned by the consumer (`return()`): either way the work stopped early.
      if (!completed) this.aborted.push(request.model);
      release();
    }
  }

  async embeddings(request: EmbeddingsRequest): Promise<EmbeddingsResult> {
    this.#require(request.model);
    this.requests.push(request);
    const inputs = typeof request.input === "string" ? [request.input] : request.input;
    return {
      model: request.model,
      embeddings: inputs.map((input) => [input.length, 1]),
      usage: { prompt_tokens: inputs.length, total_tokens: inputs.length },
    };
  }

  async loadModel(request: LoadRequest): Promise<LoadResult> {
    this.#require(request.model);
    this.setModels(this.#models.map((model) => (model.id === request.model ? scriptedModel(model.id, "loaded") : model)));
    return { type: "llm", instance_id: request.model, load_time_seconds: 0, status: "loaded" };
  }

  async unloadModel(request: UnloadRequest): Promise<UnloadResult> {
    const id = request.instance_id ?? request.model ?? "";
    this.#require(id);
    this.setModels(this.#models.map((model) => (model.id === id ? scriptedModel(model.id, "not-loaded") : model)));
    return { instance_id: id };
  }

  #require(model: string): void {
    if (!this.#models.some((candidate) => candidate.id === model)) {
      throw new ApiError(404, `Model "${model}" not found.`, { code: "model_not_found", param: "model" });
    }
  }
}
