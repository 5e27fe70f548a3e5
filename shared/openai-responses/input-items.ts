import * as z from "zod";
import { invalidRequest } from "../protocol/api-error.ts";
import { wholeConversation, type StoredResponse } from "./store.ts";
import type { MessageInput } from "./to-chat.ts";

/** `GET /v1/responses/{id}/input_items`'s query: OpenAI's cursor paging (`include` is accepted and ignored). */
export const InputItemsQuery = z.object({
  after: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  order: z.enum(["asc", "desc"]).default("desc"),
});
export type InputItemsQuery = z.infer<typeof InputItemsQuery>;

const InputMessageItem = z.object({
  id: z.string(),
  type: z.literal("message"),
  role: z.enum(["user", "system", "developer", "assistant"]),
  status: z.literal("completed"),
  content: z.array(
    z.union([
      z.object({ type: z.literal("input_text"), text: z.string() }),
      z.object({ type: z.literal("output_text"), text: z.string(), annotations: z.array(z.unknown()) }),
    ]),
  ),
});
const FunctionCallItem = z.object({
  id: z.string(),
  type: z.literal("function_call"),
  status: z.literal("completed"),
  call_id: z.string(),
  name: z.string(),
  arguments: z.string(),
});
const FunctionCallOutputItem = z.object({
  id: z.string(),
  type: z.literal("function_call_output"),
  status: z.literal("completed"),
  call_id: z.string(),
  output: z.string(),
});
export const InputItem = z.discriminatedUnion("type", [InputMessageItem, FunctionCallItem, FunctionCallOutputItem]);
export type InputItem = z.infer<typeof InputItem>;

export const InputItemList = z.object({
  object: z.literal("list"),
  data: z.array(InputItem),
  first_id: z.string().nullable(),
  last_id: z.string().nullable(),
  has_more: z.boolean(),
});
export type InputItemList = z.infer<typeof InputItemList>;

/**
 * The items a stored response was generated from: the whole conversation before its output (what
 * `previous_response_id` carried in, then its own input), as Responses items. Instructions are not
 * items. Ids are the response's id and the item's position, so `after` finds its place again.
 * 409 when a response the conversation continued was deleted: its items are gone.
 */
export function inputItems(record: StoredResponse): InputItem[] {
  const key = record.id.replace(/^resp_/, "");
  let position = 0;
  const id = (prefix: string) => `${prefix}_${key}_${position++}`;
  return wholeConversation(record, "response_id").slice(0, -1).flatMap((message): InputItem[] => toItems(message, id));
}

function toItems(message: MessageInput, id: (prefix: string) => string): InputItem[] {
  const text = typeof message.content === "string" ? message.content : (message.content ?? []).map((part) => part.text).join("\n");
  switch (message.role) {
    case "tool":
      return [{ id: id("fco"), type: "function_call_output", status: "completed", call_id: message.tool_call_id, output: text }];
    case "assistant": {
      const said: InputItem[] = text === "" ? [] : [{ id: id("msg"), type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text, annotations: [] }] }];
      const calls = (message.tool_calls ?? []).map(
        (call): InputItem => ({ id: id("fc"), type: "function_call", status: "completed", call_id: call.id, name: call.function.name, arguments: call.function.arguments }),
      );
      return [...said, ...calls];
    }
    default:
      return [{ id: id("msg"), type: "message", role: message.role, status: "completed", content: [{ type: "input_text", text }] }];
  }
}

/** One page in OpenAI's shape: `order` first, then the items after the `after` cursor, at most `limit`. */
export function inputItemPage(items: InputItem[], query: InputItemsQuery): InputItemList {
  const ordered = query.order === "asc" ? items : [...items].reverse();
  const start = query.after === undefined ? 0 : ordered.findIndex((item) => item.id === query.after) + 1;
  if (start === 0 && query.after !== undefined) throw invalidRequest(`No input item '${query.after}' in this response.`, "after");
  const data = ordered.slice(start, start + query.limit);
  return { object: "list", data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: start + data.length < ordered.length };
}
