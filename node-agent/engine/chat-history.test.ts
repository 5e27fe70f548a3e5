import { expect, test } from "vitest";
import { ChatRequest } from "../../shared/protocol/request-schemas.ts";
import { toChatHistory } from "./chat-history.ts";

const messages = (raw: unknown[]) => ChatRequest.parse({ model: "m", messages: raw }).messages;

test("maps roles and text parts, and ends with the model turn to generate", () => {
  expect(
    toChatHistory(
      messages([
        { role: "developer", content: "be brief" },
        { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] },
        { role: "assistant", content: "ok" },
        { role: "user", content: "more" },
      ]),
    ),
  ).toEqual([
    { type: "system", text: "be brief" },
    { type: "user", text: "a\nb" },
    { type: "model", response: ["ok"] },
    { type: "user", text: "more" },
    { type: "model", response: [] },
  ]);
});

test("a tool round trip is one model turn: the calls with their results, then the model carries on", () => {
  const history = toChatHistory(
    messages([
      { role: "user", content: "weather?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
          { id: "call_2", type: "function", function: { name: "get_time", arguments: "" } },
        ],
      },
      { role: "tool", tool_call_id: "call_2", content: "noon" },
      { role: "tool", tool_call_id: "call_1", content: "sunny" },
    ]),
  );
  expect(history).toEqual([
    { type: "user", text: "weather?" },
    {
      type: "model",
      response: [
        { type: "functionCall", name: "get_weather", params: { city: "Paris" }, result: "sunny" },
        { type: "functionCall", name: "get_time", params: {}, result: "noon" },
      ],
    },
  ]);
});

test("tool messages must answer a call, and every call needs its answer", () => {
  expect(() => toChatHistory(messages([{ role: "tool", tool_call_id: "nope", content: "x" }]))).toThrow(/tool_call_id "nope"/);
  expect(() =>
    toChatHistory(
      messages([{ role: "assistant", tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }] }]),
    ),
  ).toThrow(/call_1/);
  expect(() =>
    toChatHistory(messages([{ role: "assistant", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{oops" } }] }])),
  ).toThrow(/not valid JSON/);
});
