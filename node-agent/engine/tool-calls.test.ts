import { expect, test } from "vitest";
import { ApiError } from "../../shared/protocol/api-error.ts";
import { ChatRequest } from "../../shared/protocol/request-schemas.ts";
import { parseForcedCall, planTools, toToolCalls } from "./tool-calls.ts";

const tool = (name: string, parameters?: unknown) => ({ type: "function", function: { name, ...(parameters ? { parameters } : {}) } });
const plan = (tools: unknown[], tool_choice?: unknown) =>
  planTools(ChatRequest.parse({ model: "m", messages: [{ role: "user", content: "x" }], tools, tool_choice }));

test("auto (the default with tools) offers the functions; none and no tools offer nothing", () => {
  const auto = plan([tool("a", { type: "object", properties: { x: { type: "integer" } } })]);
  expect(auto.mode).toBe("auto");
  expect(auto.mode === "auto" && Object.keys(auto.functions)).toEqual(["a"]);
  expect(plan([tool("a")], "none").mode).toBe("none");
  expect(plan([]).mode).toBe("none");
});

test("a named function or required forces a call whose name the grammar fixes", () => {
  const named = plan([tool("a"), tool("b")], { type: "function", function: { name: "b" } });
  expect(named).toMatchObject({ mode: "forced", callSchema: { type: "object", properties: { name: { const: "b" } } } });
  const required = plan([tool("a"), tool("b")], "required");
  expect(required).toMatchObject({ mode: "forced", callSchema: { oneOf: [{ properties: { name: { const: "a" } } }, { properties: { name: { const: "b" } } }] } });
});

test("bad tool definitions are 400s naming the field", () => {
  expect(() => plan([tool("a")], { type: "function", function: { name: "zzz" } })).toThrow(
    expect.objectContaining({ status: 400, param: "tool_choice" }),
  );
  // A forced call must follow the schema to the letter: what the grammar cannot hold is refused.
  expect(() => plan([tool("a", { type: "object", properties: { x: { type: "string", pattern: "x" } } })], "required")).toThrow(ApiError);
  expect(() => plan([tool("a"), tool("a")])).toThrow(/repeats/);
});

test("an offered tool whose schema the grammar cannot hold is offered without those constraints, not refused (Claude Code sends such tools)", () => {
  const monitor = {
    type: "object",
    properties: {
      // A parameter called "pattern" is a name, not the keyword, and stays.
      pattern: { type: "string" },
      ws: { type: "object", properties: { protocols: { type: "array", items: { type: "string", pattern: "^[a-z]+$" } } } },
    },
    not: { required: ["never"] },
  };
  const offered = plan([tool("Monitor", monitor), tool("Grep", { type: "object", properties: { pattern: { type: "string" } } })]);
  expect(offered).toMatchObject({
    mode: "auto",
    functions: { Monitor: { params: { type: "object", properties: { pattern: { type: "string" }, ws: { properties: { protocols: { items: { type: "string" } } } } } } } },
  });
  expect(JSON.stringify(offered.mode === "auto" && offered.functions.Monitor)).not.toContain("^[a-z]+$");
  expect(offered.mode === "auto" && offered.functions.Monitor?.params).not.toHaveProperty("not");
  // Forcing another tool leaves this one offered the same way.
  expect(plan([tool("Monitor", monitor), tool("b")], { type: "function", function: { name: "b" } }).mode).toBe("forced");
});

test("calls become OpenAI tool_calls with unique ids and JSON-string arguments", () => {
  const calls = toToolCalls([{ name: "f", params: { city: "Paris" } }, { name: "g", params: undefined }]);
  expect(calls[0]).toMatchObject({ type: "function", function: { name: "f", arguments: '{"city":"Paris"}' } });
  expect(calls[1]?.function.arguments).toBe("{}");
  expect(calls[0]?.id).toMatch(/^call_[0-9a-f]{24}$/);
  expect(calls[0]?.id).not.toBe(calls[1]?.id);
  expect(parseForcedCall('{ "name": "f", "arguments": { "a": 1 } }')).toEqual({ name: "f", params: { a: 1 } });
  expect(parseForcedCall('{ "name": "f", "argu')).toBeNull();
});
