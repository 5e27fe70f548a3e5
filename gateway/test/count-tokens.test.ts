import { expect, onTestFinished, test } from "vitest";
import { AnthropicErrorBody } from "../../shared/anthropic/schemas.ts";
import { api, FakeAgent, type FakeAgentOptions } from "./fake-agent.ts";

/**
 * `POST /v1/messages/count_tokens` through the Fleet: a node that takes `count_tokens` counts
 * (the real count is tested end to end in test/e2e/anthropic-messages.test.ts); a model held only
 * by agents older than the operation gets the estimate, and they are never sent it.
 */

async function connect(options: FakeAgentOptions): Promise<FakeAgent> {
  const node = await FakeAgent.connect(options);
  onTestFinished(() => node.close());
  return node;
}

const count = (model: string) =>
  api("/v1/messages/count_tokens", { model, system: "Be brief.", messages: [{ role: "user", content: "How many tokens is this?" }] });

test("a node that counts answers with its count, for the chat request the Messages request becomes", async () => {
  const node = await connect({ name: "counting-node", models: [{ id: "counted-chat", state: "loaded" }], countsTokens: true });
  const asked = node.nextRequest();
  const response = count("counted-chat");
  const request = await asked;
  expect(request.operation).toMatchObject({
    op: "count_tokens",
    body: { model: "counted-chat", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "How many tokens is this?" }] },
  });
  node.sendFrame({ type: "result", id: request.id, result: { prompt_tokens: 77 } });
  expect(await (await response).json()).toEqual({ input_tokens: 77 });
});

test("a model held only by agents too old to count gets the estimate, and they are not asked", async () => {
  const node = await connect({ name: "old-node", models: [{ id: "old-chat", state: "loaded" }] });
  const response = await count("old-chat");
  expect(response.status).toBe(200);
  const { input_tokens } = (await response.json()) as { input_tokens: number };
  expect(input_tokens).toBeGreaterThan(0);
  expect(node.received.filter((frame) => frame.type === "request")).toEqual([]);
});

test("an unknown model is a 404 in Anthropic's shape", async () => {
  await connect({ name: "other-node", models: [{ id: "some-chat", state: "loaded" }], countsTokens: true });
  const response = await count("no-such-chat");
  expect(response.status).toBe(404);
  expect(AnthropicErrorBody.parse(await response.json()).error.type).toBe("not_found_error");
});
