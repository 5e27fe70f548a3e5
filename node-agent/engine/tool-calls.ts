import { randomUUID } from "node:crypto";
import type { ChatModelFunctions, GbnfJsonSchema } from "node-llama-cpp";
import { invalidRequest } from "../../shared/protocol/api-error.ts";
import type { ChatRequest, ToolCall } from "../../shared/protocol/request-schemas.ts";
import { toGrammarSchema, toOfferedToolSchema, UnsupportedSchemaError } from "./json-schema.ts";

/**
 * How a chat request uses its tools: not at all, offered to the model (`auto`, OpenAI's default
 * when tools are given), or forced (`required` or a named function) — a grammar then makes the
 * model write exactly one call to one of `names`.
 */
export type ToolPlan =
  | { mode: "none" }
  | { mode: "auto"; functions: ChatModelFunctions }
  | { mode: "forced"; functions: ChatModelFunctions; callSchema: GbnfJsonSchema };

/** A function without `parameters` takes none: its arguments are `{}`. */
const NO_PARAMETERS = { type: "object", properties: {} };

export function planTools(request: Pick<ChatRequest, "tools" | "tool_choice">): ToolPlan {
  const tools = request.tools ?? [];
  const choice = request.tool_choice ?? "auto";
  if (tools.length === 0 || choice === "none") return { mode: "none" };

  const functions: Record<string, { description?: string; params: GbnfJsonSchema }> = {};
  tools.forEach((tool, index) => {
    const { name, description, parameters } = tool.function;
    if (name in functions) throw invalidRequest(`tools[${index}] repeats the function name "${name}".`, "tools");
    try {
      // Only a call the grammar forces must follow its schema to the letter.
      const forced = choice === "required" || (typeof choice === "object" && choice.function.name === name);
      functions[name] = { description, params: (forced ? toGrammarSchema : toOfferedToolSchema)(parameters ?? NO_PARAMETERS) };
    } catch (error) {
      if (!(error instanceof UnsupportedSchemaError)) throw error;
      throw invalidRequest(`tools[${index}] (${name}) has parameters this engine cannot follow: ${error.message}.`, "tools");
    }
  });
  if (choice === "auto") return { mode: "auto", functions };

  const names = choice === "required" ? Object.keys(functions) : [choice.function.name];
  if (!names.every((name) => name in functions)) {
    throw invalidRequest(`tool_choice names the function "${names[0]}", which is not among the tools.`, "tool_choice");
  }
  const callSchemas = names.map(
    (name) =>
      ({ type: "object", properties: { name: { const: name }, arguments: functions[name]?.params ?? NO_PARAMETERS } }) as GbnfJsonSchema,
  );
  return { mode: "forced", functions, callSchema: callSchemas.length === 1 ? (callSchemas[0] as GbnfJsonSchema) : { oneOf: callSchemas } };
}

/** A call the grammar made the model write: `{"name": …, "arguments": {…}}`, or null if it was cut short. */
export function parseForcedCall(text: string): { name: string; params: unknown } | null {
  try {
    const value = JSON.parse(text) as { name?: unknown; arguments?: unknown };
    return typeof value.name === "string" ? { name: value.name, params: value.arguments ?? {} } : null;
  } catch {
    return null;
  }
}

/** OpenAI's shape: arguments travel as a JSON string, ids are opaque and unique. */
export function toToolCalls(calls: ReadonlyArray<{ name: string; params: unknown }>): ToolCall[] {
  return calls.map((call) => ({
    id: `call_${randomUUID().replaceAll("-", "").slice(0, 24)}`,
    type: "function",
    function: { name: call.name, arguments: JSON.stringify(call.params ?? {}) },
  }));
}
