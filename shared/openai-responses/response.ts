import type { ApiError } from "../protocol/api-error.ts";
import { randomId, unixSeconds } from "../app/response-ids.ts";
import type { GenerationEvent, GenerationResult } from "../protocol/generation-events.ts";
import type { BodyOf } from "../app/generation-response.ts";
import { sseEvent } from "../app/sse-response.ts";
import type { OutputItem, ResponseObject, ResponsesRequest } from "./schemas.ts";
import type { MessageInput } from "./to-chat.ts";

/** One response in the making: its id, its message item's id, and the request's settings it echoes. */
export class ResponseDraft {
  readonly id = randomId("resp");
  readonly messageId = randomId("msg");
  readonly createdAt = unixSeconds();
  readonly #request: ResponsesRequest;

  constructor(request: ResponsesRequest) {
    this.#request = request;
  }

  object(status: ResponseObject["status"], output: OutputItem[], result?: GenerationResult): ResponseObject {
    const request = this.#request;
    return {
      id: this.id,
      object: "response",
      created_at: this.createdAt,
      status,
      model: request.model,
      output,
      usage: result ? usageOf(result) : null,
      incomplete_details: status === "incomplete" ? { reason: "max_output_tokens" } : null,
      error: null,
      instructions: request.instructions ?? null,
      max_output_tokens: request.max_output_tokens ?? null,
      previous_response_id: request.previous_response_id ?? null,
      store: request.store !== false,
      temperature: request.temperature ?? null,
      top_p: request.top_p ?? null,
      tool_choice: request.tool_choice ?? "auto",
      tools: request.tools ?? [],
      parallel_tool_calls: true,
      text: { format: request.text?.format ?? { type: "text" } },
      metadata: request.metadata ?? {},
      ...(result ? { stats: result.stats, ...(result.gateway ? { gateway: result.gateway } : {}) } : {}),
    };
  }

  /** The finished response: its text as one message item, then its tool calls. */
  finished(text: string, result: GenerationResult): ResponseObject {
    const status = result.finish_reason === "length" ? "incomplete" : "completed";
    const output: OutputItem[] = [
      ...(text === "" && result.tool_calls ? [] : [this.message(text, status)]),
      ...(result.tool_calls ?? []).map((call) => ({
        id: randomId("fc"),
        type: "function_call" as const,
        status: "completed" as const,
        call_id: call.id,
        name: call.function.name,
        arguments: call.function.arguments,
      })),
    ];
    return this.object(status, output, result);
  }

  message(text: string, status: "in_progress" | "completed" | "incomplete"): Extract<OutputItem, { type: "message" }> {
    return { id: this.messageId, type: "message", role: "assistant", status, content: text === "" && status === "in_progress" ? [] : [outputText(text)] };
  }
}

const outputText = (text: string) => ({ type: "output_text" as const, text, annotations: [] });

function usageOf(result: GenerationResult): ResponseObject["usage"] {
  return {
    input_tokens: result.usage.prompt_tokens,
    input_tokens_details: { cached_tokens: result.usage.prompt_tokens_details?.cached_tokens ?? 0 },
    output_tokens: result.usage.completion_tokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: result.usage.total_tokens,
  };
}

/** The response's output as the assistant turn a follow-up continues from. */
export function assistantTurn(response: ResponseObject): MessageInput {
  const text = response.output.flatMap((item) => (item.type === "message" ? item.content.map((part) => part.text) : [])).join("");
  const calls = response.output.flatMap((item) =>
    item.type === "function_call" ? [{ id: item.call_id, type: "function" as const, function: { name: item.name, arguments: item.arguments } }] : [],
  );
  return { role: "assistant", content: text, ...(calls.length > 0 ? { tool_calls: calls } : {}) };
}

/**
 * The Responses stream: `response.created` and `response.in_progress`, the text as one message
 * item (`output_item.added`, `content_part.added`, `output_text.delta`s, then the `.done`s), each
 * tool call as a `function_call` item (the engine knows a call only once it is complete, so its
 * arguments come in one delta), and `response.completed` (or `.incomplete`) with the whole response.
 * Codex reads tool calls from `output_item.done` and ends its turn on `response.completed`.
 */
export class ResponseStreamEncoder {
  readonly #draft: ResponseDraft;
  readonly #finish: BodyOf<Promise<ResponseObject>>;
  #sequence = 0;
  #text = "";
  #textOpen = false;

  /** `finish` builds (and stores) the final response. */
  constructor(draft: ResponseDraft, finish: BodyOf<Promise<ResponseObject>>) {
    this.#draft = draft;
    this.#finish = finish;
  }

  async frames(event: GenerationEvent): Promise<Uint8Array[]> {
    if (event.type === "start") {
      const response = this.#draft.object("in_progress", []);
      return [this.#event("response.created", { response }), this.#event("response.in_progress", { response })];
    }
    if (event.type === "delta") {
      if (event.text === "") return [];
      const frames = this.#textOpen ? [] : this.#openText();
      this.#text += event.text;
      frames.push(this.#event("response.output_text.delta", { ...this.#textPosition(), delta: event.text, logprobs: [] }));
      return frames;
    }
    const response = await this.#finish(this.#text, event.result);
    const frames: Uint8Array[] = [];
    response.output.forEach((item, index) => {
      if (item.type === "message") {
        if (!this.#textOpen) frames.push(...this.#openText());
        const part = item.content[0] ?? outputText("");
        frames.push(
          this.#event("response.output_text.done", { ...this.#textPosition(), text: part.text, logprobs: [] }),
          this.#event("response.content_part.done", { ...this.#textPosition(), part }),
        );
      } else {
        frames.push(
          this.#event("response.output_item.added", { output_index: index, item: { ...item, status: "in_progress", arguments: "" } }),
          this.#event("response.function_call_arguments.delta", { item_id: item.id, output_index: index, delta: item.arguments }),
          this.#event("response.function_call_arguments.done", { item_id: item.id, output_index: index, name: item.name, arguments: item.arguments }),
        );
      }
      frames.push(this.#event("response.output_item.done", { output_index: index, item }));
    });
    frames.push(this.#event(response.status === "incomplete" ? "response.incomplete" : "response.completed", { response }));
    return frames;
  }

  /** `error` makes the SDK throw; Codex reads `response.failed` (and special-cases some codes). */
  failure(error: ApiError): Uint8Array[] {
    const failed = { ...this.#draft.object("in_progress", []), status: "failed", error: { code: error.code ?? "server_error", message: error.message } };
    return [
      this.#event("error", { code: error.code, message: error.message, param: error.param }),
      this.#event("response.failed", { response: failed }),
    ];
  }

  #openText(): Uint8Array[] {
    this.#textOpen = true;
    return [
      this.#event("response.output_item.added", { output_index: 0, item: this.#draft.message("", "in_progress") }),
      this.#event("response.content_part.added", { ...this.#textPosition(), part: outputText("") }),
    ];
  }

  /** The message item is always first in the output when there is one. */
  #textPosition() {
    return { item_id: this.#draft.messageId, output_index: 0, content_index: 0 };
  }

  #event(type: string, payload: Record<string, unknown>): Uint8Array {
    return sseEvent(type, { type, sequence_number: this.#sequence++, ...payload });
  }
}
