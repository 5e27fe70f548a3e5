import type { Context, Env, Hono } from "hono";
import { DocumentedRoutes } from "../app/documented-routes.ts";
import { ApiError } from "../protocol/api-error.ts";
import { answerGeneration, type GenerationRouteOptions } from "../app/generation-response.ts";
import { validate } from "../app/json-body.ts";
import { InputItemList, inputItemPage, inputItems, InputItemsQuery } from "./input-items.ts";
import type { GenerationResult } from "../protocol/generation-events.ts";
import { assistantTurn, ResponseDraft, ResponseStreamEncoder } from "./response.ts";
import { DeletedResponse, ResponseObject, ResponsesRequest } from "./schemas.ts";
import { assertStorable, conversationBefore, type ResponseStore } from "./store.ts";
import { inputMessages, toChatRequest } from "./to-chat.ts";

export interface ResponsesRouteOptions<E extends Env> extends GenerationRouteOptions<E> {
  /** The caller's view of the store: only responses it made. */
  store: (c: Context<E>) => ResponseStore;
}

/**
 * OpenAI's Responses API on any `InferenceBackend`: each request runs as the chat completion it
 * translates to (instructions, the stored conversation it continues, then its input), so routing,
 * keys, scopes, limits, usage and metrics are the chat path's own.
 */
export function mountResponses<E extends Env>(app: Hono<E>, options: ResponsesRouteOptions<E>): void {
  const routes = new DocumentedRoutes(app, { tag: "openai", security: "apiKey" });
  routes.post("/v1/responses", {
    summary: "Create a response (OpenAI Responses API); `store` keeps it for `previous_response_id`",
    body: ResponsesRequest,
    response: ResponseObject,
    streams: "event: <type> / data: <JSON> pairs: response.created … response.output_text.delta … response.output_item.done, response.completed",
  }, async (c, body) => {
    const store = options.store(c);
    const before = await conversationBefore(store, body.previous_response_id);
    const input = inputMessages(body.input);
    const conversation = [...before.messages, ...input];
    if (body.store !== false) await store.assertRoom(assertStorable(before, input));
    const chat = toChatRequest(body, conversation);
    const draft = new ResponseDraft(body);
    const finish = async (text: string, result: GenerationResult) => {
      const response = draft.finished(text, result);
      if (response.store) {
        // Only this turn: the conversation before it stays in the responses it continues.
        const previous = body.previous_response_id ?? null;
        await store.save({ id: response.id, created_at: response.created_at, previous_response_id: previous, messages: [...input, assistantTurn(response)], response });
      }
      return response;
    };
    const run = (signal: AbortSignal) => options.backend(c).chat(chat, signal);
    return answerGeneration(c, run, body.stream ? { stream: new ResponseStreamEncoder(draft, finish) } : { json: finish }, options);
  });

  routes.get("/v1/responses/:id", { summary: "A stored response (only the key that made it sees it)", response: ResponseObject }, async (c) => {
    const record = await options.store(c).get(c.req.param("id"));
    if (record?.response === undefined) throw responseNotFound(c.req.param("id"));
    return record.response;
  });

  routes.get("/v1/responses/:id/input_items", {
    summary: "The items a stored response was generated from (the conversation before it), paged by after, limit, order",
    response: InputItemList,
  }, async (c) => {
    const record = await options.store(c).get(c.req.param("id"));
    if (record?.response === undefined) throw responseNotFound(c.req.param("id"));
    const query = validate(InputItemsQuery, c.req.query());
    return inputItemPage(inputItems(record), query);
  });

  routes.delete("/v1/responses/:id", { summary: "Delete a stored response", response: DeletedResponse }, async (c) => {
    const id = c.req.param("id");
    if (!(await options.store(c).delete(id))) throw responseNotFound(id);
    return { id, object: "response.deleted" as const, deleted: true as const };
  });
}

const responseNotFound = (id: string) => new ApiError(404, `Response with id '${id}' not found.`, { param: "response_id", code: "not_found" });
