import type { ApiError } from "../protocol/api-error.ts";
import type { GenerationEvent, GenerationResult } from "../protocol/generation-events.ts";
import type { BodyOf } from "../app/generation-response.ts";
import { sseEvent } from "../app/sse-response.ts";
import { lmErrorBody } from "./errors.ts";
import type { LmChatResponse } from "./schemas.ts";

/** `loadSeconds`: how long this request waited for its model to load, when it did. */
export function lmChatBody(model: string, text: string, result: GenerationResult, responseId: string | undefined, loadSeconds?: number): LmChatResponse {
  return {
    model_instance_id: model,
    output: [{ type: "message", content: text }],
    stats: {
      input_tokens: result.usage.prompt_tokens,
      total_output_tokens: result.usage.completion_tokens,
      reasoning_output_tokens: 0,
      tokens_per_second: result.stats.tokens_per_second,
      time_to_first_token_seconds: result.stats.time_to_first_token,
      ...(loadSeconds !== undefined ? { model_load_time_seconds: loadSeconds } : {}),
    },
    ...(responseId !== undefined ? { response_id: responseId } : {}),
    ...(result.gateway ? { gateway: result.gateway } : {}),
  };
}

/**
 * LM Studio's chat stream: `chat.start`; `model_load.start` / `.progress` / `.end` when the request
 * loaded its model (reported once the load is done: the stream commits to 200 only then);
 * `prompt_processing.start` / `.progress` / `.end` (the prompt is read once the first token comes);
 * `message.start`, `message.delta`s, `message.end`, then `chat.end` with the whole response.
 * A failure after the start is an `error` event, then the stream ends. No `tool_call.*`: LM Studio
 * sends those only for tools of `integrations` (MCP, plugins), which this server refuses.
 */
export class LmChatStreamEncoder {
  readonly #model: string;
  readonly #finish: BodyOf<Promise<LmChatResponse>>;
  #text = "";
  #messageStarted = false;

  /** `finish` builds (and stores) the final response. */
  constructor(model: string, finish: BodyOf<Promise<LmChatResponse>>) {
    this.#model = model;
    this.#finish = finish;
  }

  async frames(event: GenerationEvent): Promise<Uint8Array[]> {
    if (event.type === "start") {
      const id = { model_instance_id: this.#model };
      const load =
        event.load_seconds === undefined
          ? []
          : [
              this.#event("model_load.start", id),
              this.#event("model_load.progress", { ...id, progress: 1 }),
              this.#event("model_load.end", { ...id, load_time_seconds: event.load_seconds }),
            ];
      return [this.#event("chat.start", id), ...load, this.#event("prompt_processing.start", {})];
    }
    if (event.type === "delta") {
      if (event.text === "") return [];
      const frames = this.#startMessage();
      this.#text += event.text;
      frames.push(this.#event("message.delta", { content: event.text }));
      return frames;
    }
    const result = await this.#finish(this.#text, event.result);
    return [...this.#startMessage(), this.#event("message.end", {}), this.#event("chat.end", { result })];
  }

  failure(error: ApiError): Uint8Array[] {
    return [this.#event("error", lmErrorBody(error))];
  }

  #startMessage(): Uint8Array[] {
    if (this.#messageStarted) return [];
    this.#messageStarted = true;
    return [this.#event("prompt_processing.progress", { progress: 1 }), this.#event("prompt_processing.end", {}), this.#event("message.start", {})];
  }

  #event(type: string, payload: Record<string, unknown>): Uint8Array {
    return sseEvent(type, { type, ...payload });
  }
}
