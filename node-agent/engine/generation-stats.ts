import type { FinishReason, Stats, StopReason } from "../../shared/protocol/generation-events.ts";

/** Why node-llama-cpp's `LlamaChat` / `LlamaCompletion` stopped (`metadata.stopReason`). */
export type EngineStopReason = "eogToken" | "stopGenerationTrigger" | "customStopTrigger" | "maxTokens" | "functionCalls" | "abort";

export interface StopContext {
  /** The token limit was the end of the context, not the request's max_tokens. */
  limitIsContextEnd: boolean;
  /** The abort came from unloading the model, not from the caller. */
  unloading: boolean;
}

/**
 * `stopGenerationTrigger` is the chat template's end-of-turn text (or a grammar's end): the
 * model ending its answer, which LM Studio reports as `eosFound`. Only the caller's own `stop`
 * strings are `stopStringFound`.
 */
export function stopReasonOf(reason: EngineStopReason, context: StopContext): StopReason {
  switch (reason) {
    case "eogToken":
    case "stopGenerationTrigger":
      return "eosFound";
    case "customStopTrigger":
      return "stopStringFound";
    case "maxTokens":
      return context.limitIsContextEnd ? "contextLengthReached" : "maxPredictedTokensReached";
    case "functionCalls":
      return "toolCalls";
    case "abort":
      return context.unloading ? "modelUnloaded" : "userStopped";
  }
}

export function finishReasonOf(stopReason: StopReason): FinishReason {
  if (stopReason === "toolCalls") return "tool_calls";
  if (stopReason === "maxPredictedTokensReached" || stopReason === "contextLengthReached") return "length";
  return "stop";
}

/** Times one generation from the moment it holds a slot; fed by node-llama-cpp's `onToken`. */
export class GenerationTimer {
  readonly #started = performance.now();
  #firstToken: number | undefined;
  #lastToken: number | undefined;

  onToken = (): void => {
    const now = performance.now();
    this.#firstToken ??= now;
    this.#lastToken = now;
  };

  stats(completionTokens: number, stopReason: StopReason): Stats {
    const end = this.#lastToken ?? performance.now();
    const decodeSeconds = this.#firstToken === undefined ? 0 : (end - this.#firstToken) / 1000;
    return {
      // Decode speed excludes the first token, whose time is the prompt's (time_to_first_token).
      tokens_per_second: completionTokens > 1 && decodeSeconds > 0 ? (completionTokens - 1) / decodeSeconds : 0,
      time_to_first_token: this.#firstToken === undefined ? 0 : (this.#firstToken - this.#started) / 1000,
      generation_time: (end - this.#started) / 1000,
      stop_reason: stopReason,
    };
  }
}
