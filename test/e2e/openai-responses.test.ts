import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AdminClient } from "../../cli/admin-client.ts";
import { ResponseObject } from "../../shared/openai-responses/schemas.ts";
import { startApiTargets, TARGETS, type ApiTargets } from "../harness/api-targets.ts";

/**
 * OpenAI's Responses API with the official `openai` client's `responses.create`, against an agent
 * in direct mode and against the real gateway with two real agents behind it.
 */

const CHAT = "tiny-chat-f32";

let api: ApiTargets;
beforeAll(async () => {
  api = await startApiTargets(["node-a", "node-b"]);
}, 180_000);
afterAll(() => api?.stop());

const weather = {
  type: "function" as const,
  name: "get_weather",
  description: "Weather for a city",
  // Bounded: a random model never closes an unbounded string by itself.
  parameters: { type: "object", properties: { city: { type: "string", maxLength: 16 } }, required: ["city"] },
  strict: false,
};

describe.each(TARGETS)("OpenAI Responses (%s)", (name) => {
  const client = (key = api.target(name).key) => new OpenAI({ baseURL: `${api.target(name).url}/v1`, apiKey: key, maxRetries: 0, timeout: 30_000 });

  test("create answers a response with output_text and usage; streaming gives the same text and ends with response.completed", async () => {
    const params = { model: CHAT, input: "Tell me about the sea.", instructions: "Be brief.", max_output_tokens: 12, temperature: 0 };
    const response = await client().responses.create(params);
    ResponseObject.parse(response);
    expect(response.id).toMatch(/^resp_/);
    expect(response.status).toBe("incomplete");
    expect(response.incomplete_details?.reason).toBe("max_output_tokens");
    expect(response.usage?.output_tokens).toBe(12);
    expect(response.output_text.length).toBeGreaterThan(0);
    if (name === "gateway") expect((response as unknown as ResponseObject).gateway?.node).toMatch(/^node-/);

    const types: string[] = [];
    let streamed = "";
    let final: OpenAI.Responses.Response | undefined;
    for await (const event of await client().responses.create({ ...params, stream: true })) {
      types.push(event.type);
      if (event.type === "response.output_text.delta") streamed += event.delta;
      if (event.type === "response.incomplete") final = event.response;
    }
    expect(types.slice(0, 4)).toEqual(["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]);
    expect(types.slice(-4)).toEqual(["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"]);
    expect(streamed).toBe(response.output_text);
    expect(final?.output_text ?? (final?.output[0] as { content: Array<{ text: string }> }).content[0]?.text).toBe(response.output_text);

    // The SDK's own stream helper checks ids and order as it assembles the response.
    const assembled = await client().responses.stream({ ...params, max_output_tokens: 6 }).finalResponse();
    expect(assembled.output_text.length).toBeGreaterThan(0);
  });

  test("function tools: a forced call comes as a function_call item, streamed through output_item.done; its output continues the conversation", async () => {
    const first = await client().responses.create({ model: CHAT, input: "Weather in Paris?", tools: [weather], tool_choice: { type: "function", name: "get_weather" }, temperature: 0, max_output_tokens: 120 });
    const call = first.output.find((item) => item.type === "function_call");
    expect(call).toMatchObject({ type: "function_call", name: "get_weather", call_id: expect.any(String) });
    expect(JSON.parse((call as OpenAI.Responses.ResponseFunctionToolCall).arguments)).toMatchObject({ city: expect.any(String) });

    const done: OpenAI.Responses.ResponseOutputItem[] = [];
    for await (const event of await client().responses.create({ model: CHAT, input: "Weather in Paris?", tools: [weather], tool_choice: "required", temperature: 0, max_output_tokens: 120, stream: true })) {
      if (event.type === "response.output_item.done") done.push(event.item);
    }
    expect(done.map((item) => item.type)).toEqual(["function_call"]);

    // Codex's way: no stored state, the whole history every turn.
    const second = await client().responses.create({
      model: CHAT,
      store: false,
      tools: [weather],
      max_output_tokens: 8,
      input: [
        { role: "user", content: [{ type: "input_text", text: "Weather in Paris?" }] },
        { type: "reasoning", id: "rs_1", summary: [] },
        call as OpenAI.Responses.ResponseFunctionToolCall,
        { type: "function_call_output", call_id: (call as OpenAI.Responses.ResponseFunctionToolCall).call_id, output: "Sunny, 21 °C" },
      ],
    });
    expect(second.output[0]?.type).toBe("message");
    expect(second.usage?.input_tokens).toBeGreaterThan(first.usage?.input_tokens ?? 0);
    // store: false leaves nothing to fetch.
    await expect(client().responses.retrieve(second.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);

    // Stored, the same history comes back as items: the call and its output by call_id.
    const { call_id, arguments: args } = call as OpenAI.Responses.ResponseFunctionToolCall;
    const stored = await client().responses.create({
      model: CHAT,
      tools: [weather],
      max_output_tokens: 2,
      input: [{ role: "user", content: "Weather in Paris?" }, call as OpenAI.Responses.ResponseFunctionToolCall, { type: "function_call_output", call_id, output: "Sunny, 21 °C" }],
    });
    const items = (await client().responses.inputItems.list(stored.id, { order: "asc" })).data;
    expect(items.map((item) => item.type)).toEqual(["message", "function_call", "function_call_output"]);
    expect(items[1]).toMatchObject({ name: "get_weather", call_id, arguments: args });
    expect(items[2]).toMatchObject({ call_id, output: "Sunny, 21 °C" });
  });

  test("a Codex-shaped turn (full history, store false, hosted tools, reasoning, include, prompt_cache_key) streams the events Codex reads", async () => {
    const response = await fetch(`${api.target(name).url}/v1/responses`, {
      method: "POST",
      headers: { authorization: `Bearer ${api.target(name).key}`, "content-type": "application/json", accept: "text/event-stream", originator: "codex_cli_rs" },
      body: JSON.stringify({
        model: CHAT,
        instructions: "You are Codex, a coding agent. ".repeat(4),
        input: [
          { type: "message", role: "developer", content: [{ type: "input_text", text: "<permissions>workspace-write</permissions>" }] },
          { type: "message", role: "user", content: [{ type: "input_text", text: "<environment_context>cwd=/tmp</environment_context>" }] },
          { type: "message", role: "user", content: [{ type: "input_text", text: "List the files." }] },
          { type: "reasoning", id: "rs_1", summary: [{ type: "summary_text", text: "Listing." }], encrypted_content: null },
          { type: "function_call", id: "fc_1", call_id: "call_1", name: "shell", arguments: '{"command":["ls"]}' },
          { type: "function_call_output", call_id: "call_1", output: "a.txt\nb.txt" },
          { type: "message", role: "assistant", content: [{ type: "output_text", text: "Two files.", annotations: [] }] },
          { type: "message", role: "user", content: [{ type: "input_text", text: "Thanks." }] },
        ],
        tools: [
          { type: "function", name: "shell", description: "Runs a command", strict: false, parameters: { type: "object", properties: { command: { type: "array", items: { type: "string" } } }, required: ["command"] } },
          { type: "local_shell" },
          { type: "web_search" },
        ],
        tool_choice: "auto",
        parallel_tool_calls: false,
        reasoning: null,
        store: false,
        stream: true,
        include: [],
        prompt_cache_key: "thread-1",
        text: { verbosity: "low" },
        client_metadata: { session: "s" },
        // Codex sends no limit; the test keeps the random model short.
        max_output_tokens: 16,
      }),
    });
    expect(response.status).toBe(200);
    const events = (await response.text())
      .split("\n\n")
      .filter((block) => block !== "")
      .map((block) => JSON.parse(block.slice(block.indexOf("data: ") + 6)) as { type: string; sequence_number: number; response?: ResponseObject });
    expect(events[0]?.type).toBe("response.created");
    expect(events.map((event) => event.sequence_number)).toEqual(events.map((_, index) => index));
    expect(events.some((event) => event.type === "response.output_item.done")).toBe(true);
    const last = events.at(-1);
    expect(["response.completed", "response.incomplete"]).toContain(last?.type);
    expect(last?.response?.usage?.total_tokens).toBeGreaterThan(0);
  });

  test("text.format json_schema makes the output match the schema", async () => {
    const response = await client().responses.create({
      model: CHAT,
      input: "A city, please.",
      max_output_tokens: 120,
      temperature: 0,
      text: { format: { type: "json_schema", name: "city", strict: true, schema: { type: "object", properties: { city: { type: "string", maxLength: 12 } }, required: ["city"], additionalProperties: false } } },
    });
    expect(JSON.parse(response.output_text)).toEqual({ city: expect.any(String) });
  });

  test("Codex's warm-up (empty input, max_output_tokens 1) is answered 200", async () => {
    const response = await client().responses.create({ model: CHAT, input: "", max_output_tokens: 1 });
    expect(response.usage?.output_tokens).toBe(1);
  });

  test("store + previous_response_id: the second turn continues the first; GET and DELETE the stored response", async () => {
    const first = await client().responses.create({ model: CHAT, input: "My name is Ada.", max_output_tokens: 6, temperature: 0 });
    const second = await client().responses.create({ model: CHAT, input: "What is my name?", previous_response_id: first.id, max_output_tokens: 6, temperature: 0 });
    expect(second.previous_response_id).toBe(first.id);
    // The first turn (question and answer) is in the prompt.
    expect(second.usage?.input_tokens).toBeGreaterThan((first.usage?.input_tokens ?? 0) + (first.usage?.output_tokens ?? 0));

    expect((await client().responses.retrieve(first.id)).output_text).toBe(first.output_text);

    // The items the second turn was generated from: the first turn, then its own input. Pages of
    // one, so the SDK's auto-paging follows the `after` cursor; newest first unless asked.
    const texts = async (order?: "asc" | "desc") => {
      const items: string[] = [];
      for await (const item of client().responses.inputItems.list(second.id, { limit: 1, ...(order ? { order } : {}) })) {
        expect(item.type).toBe("message");
        if (item.type === "message") items.push(`${item.role}: ${item.content.map((part) => ("text" in part ? part.text : "")).join("")}`);
      }
      return items;
    };
    const conversation = ["user: My name is Ada.", `assistant: ${first.output_text}`, "user: What is my name?"];
    expect(await texts("asc")).toEqual(conversation);
    expect(await texts()).toEqual([...conversation].reverse());
    const page = await client().responses.inputItems.list(second.id, { order: "asc", limit: 2 });
    expect(page.has_more).toBe(true);
    expect(page.data.map((item) => item.id)).toHaveLength(2);

    await client().responses.delete(first.id);
    await expect(client().responses.retrieve(first.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const orphan = await client()
      .responses.create({ model: CHAT, input: "Again?", previous_response_id: first.id, max_output_tokens: 4 })
      .catch((error: unknown) => error);
    expect(orphan).toBeInstanceOf(OpenAI.BadRequestError);
    expect((orphan as InstanceType<typeof OpenAI.APIError>).code).toBe("previous_response_not_found");
  });
});

describe("stored responses in the gateway", () => {
  const client = (key = api.gateway.apiKey) => new OpenAI({ baseURL: `${api.gateway.url}/v1`, apiKey: key, maxRetries: 0, timeout: 30_000 });

  test("a conversation continues on another node: the state is the gateway's, not the node's", async () => {
    const first = await client().responses.create({ model: CHAT, input: "My name is Ada.", max_output_tokens: 6, temperature: 0 });
    const firstNode = (first as unknown as ResponseObject).gateway?.node as string;
    // With the first turn's node gone, the next turn can only land on the other one.
    await api.nodes.get(firstNode)?.stop();
    api.nodes.delete(firstNode);
    const second = await client().responses.create({ model: CHAT, input: "What is my name?", previous_response_id: first.id, max_output_tokens: 6, temperature: 0 });
    expect((second as unknown as ResponseObject).gateway?.node).not.toBe(firstNode);
    expect(second.usage?.input_tokens).toBeGreaterThan((first.usage?.input_tokens ?? 0) + (first.usage?.output_tokens ?? 0));
  });

  test("another key can neither read, continue nor delete a stored response", async () => {
    const admin = new AdminClient(api.gateway.url, api.gateway.adminToken);
    const [{ key: alice }, { key: bob }] = await Promise.all([admin.createKey({ name: "alice" }), admin.createKey({ name: "bob" })]);
    const mine = await client(alice).responses.create({ model: CHAT, input: "A secret.", max_output_tokens: 4 });
    expect((await client(alice).responses.retrieve(mine.id)).id).toBe(mine.id);

    await expect(client(bob).responses.retrieve(mine.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client(bob).responses.inputItems.list(mine.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client(bob).responses.delete(mine.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const continued = await client(bob)
      .responses.create({ model: CHAT, input: "Tell me.", previous_response_id: mine.id, max_output_tokens: 4 })
      .catch((error: unknown) => error);
    expect((continued as InstanceType<typeof OpenAI.APIError>).code).toBe("previous_response_not_found");
    // Still there for its owner.
    expect((await client(alice).responses.retrieve(mine.id)).id).toBe(mine.id);
    expect((await client(alice).responses.inputItems.list(mine.id)).data).toHaveLength(1);
  });
});
