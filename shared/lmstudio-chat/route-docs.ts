import type { RouteDoc } from "../openapi.ts";
import { LmChatRequest, LmChatResponse, LmErrorBody } from "./schemas.ts";

/** `/api/v1/chat` (routes.ts), for `/openapi.json`. */
export const LMSTUDIO_CHAT_ROUTE_DOCS: RouteDoc[] = [
  {
    method: "post",
    path: "/api/v1/chat",
    summary: "Chat (LM Studio v1), stateful through previous_response_id",
    tag: "lmstudio",
    security: "apiKey",
    body: LmChatRequest,
    response: LmChatResponse,
    streams: "event: <type> / data: <JSON> pairs: chat.start, model_load.* (when the request loads its model), prompt_processing.*, message.start/delta/end, error, chat.end",
    error: { schema: LmErrorBody, description: "An LM Studio v1-shaped error" },
  },
];
