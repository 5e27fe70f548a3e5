import type { RouteDoc } from "../openapi.ts";
import { AnthropicErrorBody, CountTokensRequest, Message, MessagesRequest, TokenCount } from "./schemas.ts";

const error = { schema: AnthropicErrorBody, description: "An Anthropic-shaped error" };

/** `/v1/messages*` (routes.ts), for `/openapi.json`. */
export const ANTHROPIC_ROUTE_DOCS: RouteDoc[] = [
  {
    method: "post",
    path: "/v1/messages",
    summary: "Create a message (Anthropic Messages API)",
    tag: "anthropic",
    security: "apiKey",
    body: MessagesRequest,
    response: Message,
    streams: "event: <type> / data: <JSON> pairs: message_start, ping, content_block_start/delta/stop, message_delta, message_stop",
    error,
  },
  {
    method: "post",
    path: "/v1/messages/count_tokens",
    summary: "Count a prompt's input tokens with the model's tokenizer and chat template (Anthropic Messages API)",
    tag: "anthropic",
    security: "apiKey",
    body: CountTokensRequest,
    response: TokenCount,
    error,
  },
];
