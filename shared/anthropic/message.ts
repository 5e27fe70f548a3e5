import type { ApiError } from "../protocol/api-error.ts";
import type { GenerationEvent, GenerationResult } from "../protocol/generation-events.ts";
import type { ToolCall } from "../protocol/request-schemas.ts";
import { sseEvent } from "../app/sse-response.ts";
import { anthropicErrorBody } from "./errors.ts";
import type { Message, MessageUsage, ResponseBlock, StopReason } from "./schemas.ts";

/** What every message of one request shares. */
export interface MessageHead {
  id: string;
  model: string;
}

export function messageBody(head: MessageHead, text: string, result: GenerationResult): Message {
  const content: ResponseBlock[] = [...(text === "" ? [] : [{ type: "text" as const, text }]), ...(result.tool_calls ?? []).map(toolUseBlock)];
  return { ...opening(head), content, ...ending(result), usage: usageOf(result), ...extras(result) };
}

function opening(head: MessageHead) {
  return { id: head.id, type: "message" as const, role: "assistant" as const, model: head.model };
}

function ending(result: GenerationResult): { stop_reason: StopReason; stop_sequence: string | null } {
  const stopReason = stopReasonOf(result);
  return { stop_reason: stopReason, stop_sequence: stopReason === "stop_sequence" ? (result.stop_string ?? null) : null };
}

function stopReasonOf(result: GenerationResult): StopReason {
  switch (result.stats.stop_reason) {
    case "toolCalls":
      return "tool_use";
    case "stopStringFound":
      return "stop_sequence";
    case "maxPredictedTokensReached":
    case "contextLengthReached":
      return "max_tokens";
    default:
      return result.tool_calls ? "tool_use" : "end_turn";
  }
}

/** Anthropic counts cache hits apart: `input_tokens` is only what was read anew. */
function usageOf(result: GenerationResult): MessageUsage {
  const cached = result.usage.prompt_tokens_details?.cached_tokens ?? 0;
  return {
    input_tokens: result.usage.prompt_tokens - cached,
    output_tokens: result.usage.completion_tokens,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: cached,
  };
}

const extras = (result: GenerationResult) => ({ stats: result.stats, ...(result.gateway ? { gateway: result.gateway } : {}) });

function toolUseBlock(call: ToolCall): Extract<ResponseBlock, { type: "tool_use" }> {
  return { type: "tool_use", id: call.id, name: call.function.name, input: JSON.parse(call.function.arguments) as Record<string, unknown> };
}

/**
 * Anthropic's stream: `message_start`, a `ping`, the text as one text block, then each tool call
 * as a `tool_use` block (the engine knows a call only once it is complete, so its input comes in
 * one `input_json_delta`), then `message_delta` with the stop reason and usage, and `message_stop`.
 * Every event has its `event:` line: the SDK dispatches on it and ignores `data:`-only events.
 */
export class MessageStreamEncoder {
  readonly #head: MessageHead;
  #blocks = 0;
  #textOpen = false;

  constructor(head: MessageHead) {
    this.#head = head;
  }

  frames(event: GenerationEvent): Uint8Array[] {
    if (event.type === "start") {
      // The whole prompt, when the engine said (older agents do not): how much of it the slot's cache
      // held is known only once it is read, so message_delta carries the split (the SDK takes it from there).
      const usage = { input_tokens: event.prompt_tokens ?? 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
      const message = { ...opening(this.#head), content: [], stop_reason: null, stop_sequence: null, usage };
      return [sseEvent("message_start", { type: "message_start", message }), sseEvent("ping", { type: "ping" })];
    }
    if (event.type === "delta") {
      if (event.text === "") return [];
      const frames = this.#textOpen ? [] : [this.#blockStart({ type: "text", text: "" })];
      this.#textOpen = true;
      frames.push(sseEvent("content_block_delta", { type: "content_block_delta", index: this.#blocks - 1, delta: { type: "text_delta", text: event.text } }));
      return frames;
    }
    const frames = this.#closeText();
    for (const call of event.result.tool_calls ?? []) {
      const { input: _input, ...block } = toolUseBlock(call);
      frames.push(this.#blockStart({ ...block, input: {} }));
      frames.push(
        sseEvent("content_block_delta", { type: "content_block_delta", index: this.#blocks - 1, delta: { type: "input_json_delta", partial_json: call.function.arguments } }),
      );
      frames.push(this.#blockStop());
    }
    frames.push(
      sseEvent("message_delta", {
        type: "message_delta",
        delta: ending(event.result),
        usage: usageOf(event.result),
        ...extras(event.result),
      }),
      sseEvent("message_stop", { type: "message_stop" }),
    );
    return frames;
  }

  failure(error: ApiError): Uint8Array[] {
    return [sseEvent("error", anthropicErrorBody(error))];
  }

  #blockStart(block: Record<string, unknown>): Uint8Array {
    this.#blocks += 1;
    return sseEvent("content_block_start", { type: "content_block_start", index: this.#blocks - 1, content_block: block });
  }

  #blockStop(): Uint8Array {
    return sseEvent("content_block_stop", { type: "content_block_stop", index: this.#blocks - 1 });
  }

  #closeText(): Uint8Array[] {
    if (!this.#textOpen) return [];
    this.#textOpen = false;
    return [this.#blockStop()];
  }
}
