import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { LmChatResponse, LmErrorBody } from "../../shared/lmstudio-chat/schemas.ts";
import { startApiTargets, TARGETS, type ApiTargets } from "../harness/api-targets.ts";

/** LM Studio's native `POST /api/v1/chat`, against an agent in direct mode and the real gateway. */

const CHAT = "tiny-chat-f32";

let api: ApiTargets;
beforeAll(async () => {
  api = await startApiTargets(["node-a"]);
}, 180_000);
afterAll(() => api?.stop());

/** SSE with `event:` lines: each event's name and JSON. */
async function readEvents(response: Response): Promise<Array<{ event: string; data: Record<string, unknown> }>> {
  return (await response.text())
    .split("\n\n")
    .filter((block) => block !== "")
    .map((block) => {
      const [, event = "", data = "{}"] = /^event: (.*)\ndata: (.*)$/s.exec(block) ?? [];
      return { event, data: JSON.parse(data) as Record<string, unknown> };
    });
}

describe.each(TARGETS)("LM Studio v1 chat (%s)", (name) => {
  const chat = (body: Record<string, unknown>) =>
    fetch(`${api.target(name).url}/api/v1/chat`, { method: "POST", headers: { authorization: `Bearer ${api.target(name).key}` }, body: JSON.stringify(body) });

  test("answers with output, stats and a response_id; streams chat.start … message.delta … chat.end with the same text", async () => {
    const request = { model: CHAT, input: "Tell me about the sea.", system_prompt: "Be brief.", temperature: 0, max_output_tokens: 10 };
    const response = await chat(request);
    expect(response.status).toBe(200);
    const body = LmChatResponse.parse(await response.json());
    expect(body.model_instance_id).toBe(CHAT);
    expect(body.stats.total_output_tokens).toBe(10);
    expect(body.stats.input_tokens).toBeGreaterThan(0);
    expect(body.response_id).toMatch(/^resp_/);
    if (name === "gateway") expect(body.gateway?.node).toBe("node-a");

    const events = await readEvents(await chat({ ...request, stream: true }));
    const names = events.map((event) => event.event);
    expect(names.slice(0, 5)).toEqual(["chat.start", "prompt_processing.start", "prompt_processing.progress", "prompt_processing.end", "message.start"]);
    expect(names.slice(-2)).toEqual(["message.end", "chat.end"]);
    expect(events.every((event) => event.data.type === event.event)).toBe(true);
    const text = events.filter((event) => event.event === "message.delta").map((event) => event.data.content).join("");
    expect(text).toBe(body.output[0]?.content);
    expect(LmChatResponse.parse(events.at(-1)?.data.result).output[0]?.content).toBe(text);
  });

  test("a request that loads its model streams model_load.* and reports model_load_time_seconds; the next one does not", async () => {
    // Nothing in this file uses this model before: the first request loads it (JIT).
    const request = { model: "tiny-chat-q8_0", input: "Hi", max_output_tokens: 2, stream: true };
    const loading = await readEvents(await chat(request));
    expect(loading.map((event) => event.event).slice(0, 5)).toEqual(["chat.start", "model_load.start", "model_load.progress", "model_load.end", "prompt_processing.start"]);
    const end = loading.find((event) => event.event === "model_load.end")?.data;
    expect(end).toMatchObject({ model_instance_id: "tiny-chat-q8_0", load_time_seconds: expect.any(Number) });
    expect(end?.load_time_seconds).toBeGreaterThan(0);
    expect(LmChatResponse.parse(loading.at(-1)?.data.result).stats.model_load_time_seconds).toBe(end?.load_time_seconds);

    const loaded = await readEvents(await chat(request));
    expect(loaded.some((event) => event.event.startsWith("model_load."))).toBe(false);
    expect(LmChatResponse.parse(loaded.at(-1)?.data.result).stats.model_load_time_seconds).toBeUndefined();
  });

  test("previous_response_id continues a stored chat, also one the Responses API made; store: false returns no id", async () => {
    const first = LmChatResponse.parse(await (await chat({ model: CHAT, input: "My name is Ada.", max_output_tokens: 6, temperature: 0 })).json());
    const second = LmChatResponse.parse(
      await (await chat({ model: CHAT, input: "What is my name?", previous_response_id: first.response_id, max_output_tokens: 6, temperature: 0, store: false })).json(),
    );
    expect(second.response_id).toBeUndefined();
    expect(second.stats.input_tokens).toBeGreaterThan(first.stats.input_tokens + first.stats.total_output_tokens);

    const openai = new OpenAI({ baseURL: `${api.target(name).url}/v1`, apiKey: api.target(name).key, maxRetries: 0 });
    const made = await openai.responses.create({ model: CHAT, input: "My name is Ada.", max_output_tokens: 6, temperature: 0 });
    const continued = LmChatResponse.parse(await (await chat({ model: CHAT, input: "And?", previous_response_id: made.id, max_output_tokens: 4 })).json());
    expect(continued.stats.input_tokens).toBeGreaterThan(made.usage?.input_tokens ?? 0);
  });

  test("errors come in LM Studio's native shape", async () => {
    const unknown = await chat({ model: "no-such-model", input: "Hi" });
    expect(unknown.status).toBe(404);
    expect(LmErrorBody.parse(await unknown.json()).error).toMatchObject({ type: "model_not_found", code: "model_not_found" });

    const orphan = await chat({ model: CHAT, input: "Hi", previous_response_id: "resp_nothing" });
    expect(orphan.status).toBe(400);
    expect(LmErrorBody.parse(await orphan.json()).error).toMatchObject({ type: "invalid_request", code: "previous_response_not_found" });

    const image = await chat({ model: CHAT, input: [{ type: "image", data_url: "data:image/png;base64,AAAA" }] });
    expect(image.status).toBe(400);
    expect(LmErrorBody.parse(await image.json()).error.message).toContain("read text only");
  });
});
