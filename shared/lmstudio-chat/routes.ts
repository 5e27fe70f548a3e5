import type { Context, Env, Hono } from "hono";
import { DocumentedRoutes } from "../app/documented-routes.ts";
import { invalidRequest } from "../protocol/api-error.ts";
import { answerGeneration, type GenerationRouteOptions } from "../app/generation-response.ts";
import { validate } from "../app/json-body.ts";
import { assertStorable, conversationBefore, type ResponseStore } from "../openai-responses/store.ts";
import { randomId, unixSeconds } from "../app/response-ids.ts";
import type { MessageInput } from "../openai-responses/to-chat.ts";
import type { GenerationResult } from "../protocol/generation-events.ts";
import { ChatRequest } from "../protocol/request-schemas.ts";
import { lmChatBody, LmChatStreamEncoder } from "./chat-result.ts";
import { LM_STUDIO_V1_ERRORS } from "./errors.ts";
import { LmChatRequest, LmChatResponse } from "./schemas.ts";

export interface LmStudioChatOptions<E extends Env> extends GenerationRouteOptions<E> {
  /** The same store as `/v1/responses`: either API continues the other's conversations. */
  store: (c: Context<E>) => ResponseStore;
}

/** LM Studio's native chat on any `InferenceBackend`, run as the chat completion it translates to. */
export function mountLmStudioChat<E extends Env>(app: Hono<E>, options: LmStudioChatOptions<E>): void {
  const routes = new DocumentedRoutes(app, { tag: "lmstudio", security: "apiKey", error: LM_STUDIO_V1_ERRORS });
  routes.post("/api/v1/chat", {
    summary: "Chat (LM Studio v1), stateful through previous_response_id",
    body: LmChatRequest,
    response: LmChatResponse,
    streams: "event: <type> / data: <JSON> pairs: chat.start, model_load.* (when the request loads its model), prompt_processing.*, message.start/delta/end, error, chat.end",
  }, async (c, body) => {
    if (body.integrations !== undefined && body.integrations.length > 0) {
      throw invalidRequest("integrations (MCP servers and plugins run by the server) are not supported here.", "integrations");
    }
    const store = options.store(c);
    const before = await conversationBefore(store, body.previous_response_id);
    const input: MessageInput[] = [{ role: "user", content: inputText(body.input) }];
    const conversation = [...before.messages, ...input];
    if (body.store !== false) await store.assertRoom(assertStorable(before, input));
    const chat = validate(ChatRequest, {
      model: body.model,
      messages: [...(body.system_prompt ? [{ role: "system" as const, content: body.system_prompt }] : []), ...conversation],
      max_tokens: body.max_output_tokens,
      temperature: body.temperature,
      top_p: body.top_p,
      top_k: body.top_k,
      min_p: body.min_p,
      repeat_penalty: body.repeat_penalty,
      draft_model: body.draft_model,
      prompt_lookup: body.prompt_lookup,
      stream: body.stream,
    });
    const finish = async (text: string, result: GenerationResult) => {
      // LM Studio stores by default and leaves response_id out with store: false.
      const id = body.store === false ? undefined : randomId("resp");
      if (id !== undefined) {
        const previous = body.previous_response_id ?? null;
        await store.save({ id, created_at: unixSeconds(), previous_response_id: previous, messages: [...input, { role: "assistant", content: text }] });
      }
      return lmChatBody(body.model, text, result, id, loadSeconds);
    };
    let loadSeconds: number | undefined;
    const run = async function* (signal: AbortSignal) {
      for await (const event of options.backend(c).chat(chat, signal)) {
        if (event.type === "start") loadSeconds = event.load_seconds;
        yield event;
      }
    };
    return answerGeneration(c, run, body.stream ? { stream: new LmChatStreamEncoder(body.model, finish) } : { json: finish }, options);
  });
}

function inputText(input: LmChatRequest["input"]): string {
  if (typeof input === "string") return input;
  return input
    .map((item, index) => {
      if (item.type === "image") throw invalidRequest(`input.${index}: images are not supported; the models this server runs read text only.`, `input.${index}`);
      return item.type === "message" ? item.content : (item.content ?? item.text ?? "");
    })
    .join("\n");
}
