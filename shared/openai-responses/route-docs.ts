import type { RouteDoc } from "../openapi.ts";
import { DeletedResponse, ResponseObject, ResponsesRequest } from "./schemas.ts";
import { InputItemList } from "./input-items.ts";

/** `/v1/responses*` (routes.ts), for `/openapi.json`. */
export const RESPONSES_ROUTE_DOCS: RouteDoc[] = [
  {
    method: "post",
    path: "/v1/responses",
    summary: "Create a response (OpenAI Responses API); `store` keeps it for `previous_response_id`",
    tag: "openai",
    security: "apiKey",
    body: ResponsesRequest,
    response: ResponseObject,
    streams: "event: <type> / data: <JSON> pairs: response.created … response.output_text.delta … response.output_item.done, response.completed",
  },
  { method: "get", path: "/v1/responses/{id}", summary: "A stored response (only the key that made it sees it)", tag: "openai", security: "apiKey", response: ResponseObject },
  {
    method: "get",
    path: "/v1/responses/{id}/input_items",
    summary: "The items a stored response was generated from (the conversation before it), paged by after, limit, order",
    tag: "openai",
    security: "apiKey",
    response: InputItemList,
  },
  { method: "delete", path: "/v1/responses/{id}", summary: "Delete a stored response", tag: "openai", security: "apiKey", response: DeletedResponse },
];
