import type { Env, Hono } from "hono";
import { DocumentedRoutes } from "../app/documented-routes.ts";
import { modelNotFound } from "../protocol/api-error.ts";
import { answerGeneration, type GenerationRouteOptions } from "../app/generation-response.ts";
import { randomId } from "../app/response-ids.ts";
import { estimateTokens } from "./token-estimate.ts";
import { ANTHROPIC_ERRORS } from "./errors.ts";
import { messageBody, MessageStreamEncoder } from "./message.ts";
import { CountTokensRequest, Message, MessagesRequest, TokenCount } from "./schemas.ts";
import { promptOf, toChatRequest } from "./to-chat.ts";

/**
 * Anthropic's Messages API on any `InferenceBackend`: each request runs as the chat completion it
 * translates to, so routing, keys, scopes, limits, usage and metrics are the chat path's own.
 * Claude Code adds `?beta=true`; routing is on the path alone.
 */
export function mountAnthropicMessages<E extends Env>(app: Hono<E>, options: GenerationRouteOptions<E>): void {
  const { backend } = options;
  const routes = new DocumentedRoutes(app, { tag: "anthropic", security: "apiKey", error: ANTHROPIC_ERRORS });
  routes.post("/v1/messages", {
    summary: "Create a message (Anthropic Messages API)",
    body: MessagesRequest,
    response: Message,
    streams: "event: <type> / data: <JSON> pairs: message_start, ping, content_block_start/delta/stop, message_delta, message_stop",
  }, async (c, body) => {
    const chat = toChatRequest(body);
    const head = { id: randomId("msg", 12), model: body.model };
    const run = (signal: AbortSignal) => backend(c).chat(chat, signal);
    return answerGeneration(c, run, body.stream ? { stream: new MessageStreamEncoder(head) } : { json: (text, result) => messageBody(head, text, result) }, options);
  });

  routes.post("/v1/messages/count_tokens", {
    summary: "Count a prompt's input tokens with the model's tokenizer and chat template (Anthropic Messages API)",
    body: CountTokensRequest,
    response: TokenCount,
  }, async (c, body) => {
    const prompt = promptOf(body);
    const counted = await backend(c).countTokens?.(prompt);
    if (counted != null) return { input_tokens: counted.prompt_tokens };
    // The caller's own model list: in the gateway it holds only the models its key may use.
    const models = await backend(c).listModels();
    if (!models.some((model) => model.id === body.model)) throw modelNotFound(body.model, models.map((model) => model.id));
    return { input_tokens: estimateTokens(prompt) };
  });
}
