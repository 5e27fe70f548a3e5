import { describe, expect, onTestFinished, test } from "vitest";
import { env, exports } from "cloudflare:workers";
import { evictDurableObject } from "cloudflare:test";
import { ErrorBody } from "../../../shared/protocol/api-error.ts";
import { CreatedKey, KeyRecord, ListOf, UsageRow } from "../../../shared/gateway-admin/admin-schemas.ts";
import { fleetStub } from "../../env.ts";
import { ADMIN_TOKEN, chatBody, FakeAgent } from "../../test/fake-agent.ts";

/**
 * README: keys, usage and tokens per day are durable, and counted usage is flushed before the
 * Fleet can be evicted. Each test evicts the Fleet Durable Object (its memory is gone; only its
 * storage is left) and checks what a client and the admin API see after.
 */

const fetchGateway = (path: string, init: RequestInit = {}) => exports.default.fetch(`http://gateway.test${path}`, init);
const admin = (method: string, path: string, body?: unknown) =>
  fetchGateway(`/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
const chat = (key: string) => fetchGateway("/v1/chat/completions", { method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify(chatBody("ev-chat")) });
const evict = () => evictDurableObject(fleetStub(env));

async function createKey(request: Record<string, unknown>): Promise<CreatedKey> {
  const response = await admin("POST", "/keys", request);
  expect(response.status).toBe(201);
  return CreatedKey.parse(await response.json());
}
const usage = async (keyId: string) =>
  ListOf(UsageRow)
    .parse(await (await admin("GET", `/usage?key=${keyId}`)).json())
    .data.map(({ model, requests, prompt_tokens, completion_tokens, errors }) => ({ model, requests, prompt_tokens, completion_tokens, errors }));

/** A node answering every chat with 7 prompt and 5 completion tokens; reconnected after each eviction. */
async function connectNode(): Promise<FakeAgent> {
  const node = await FakeAgent.connect({ name: "ev-node", models: [{ id: "ev-chat", state: "loaded" }] });
  onTestFinished(() => node.close());
  node.autoAnswer((frame) => node.complete(frame.id, "ok", { usage: { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 } }));
  return node;
}

describe("after the Fleet is evicted", () => {
  test("usage counted just before is there: the pending batch was written, not lost with the memory", async () => {
    await connectNode();
    const { key, record } = await createKey({ name: "ev-usage" });
    expect((await chat(key)).status).toBe(200);
    expect((await chat(key)).status).toBe(200);
    // No wait for the batch's timer: evicted right after the answers.
    await evict();
    expect(await usage(record.id)).toEqual([{ model: "ev-chat", requests: 2, prompt_tokens: 14, completion_tokens: 10, errors: 0 }]);
  });

  test("keys still work, keep their scopes and last use; a revoked key stays refused", async () => {
    await connectNode();
    const kept = await createKey({ name: "ev-kept", models: ["ev-*"] });
    const revoked = await createKey({ name: "ev-revoked" });
    expect((await chat(kept.key)).status).toBe(200);
    expect((await admin("DELETE", `/keys/${revoked.record.id}`)).status).toBeLessThan(300);
    await evict();
    await connectNode();
    expect((await chat(kept.key)).status).toBe(200);
    const refused = await chat(revoked.key);
    expect(refused.status).toBe(401);
    ErrorBody.parse(await refused.json());
    const listed = ListOf(KeyRecord).parse(await (await admin("GET", "/keys")).json()).data.find((key) => key.id === kept.record.id);
    expect(listed).toMatchObject({ name: "ev-kept", models: ["ev-*"] });
    expect(listed?.last_used_at).not.toBeNull();
  });

  test("tokens per day spent before count after: the budget is not reset by an eviction", async () => {
    await connectNode();
    const { key } = await createKey({ name: "ev-budget", tokens_per_day: 20 });
    expect((await chat(key)).status).toBe(200); // 12 of 20
    await evict();
    await connectNode();
    expect((await chat(key)).status).toBe(200); // 24: over from now on
    await evict();
    await connectNode();
    const refused = await chat(key);
    expect(refused.status).toBe(429);
    expect(ErrorBody.parse(await refused.json()).error.code).toBe("tokens_per_day_exceeded");
  });
});
