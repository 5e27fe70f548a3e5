import { describe, expect, test } from "vitest";
import { ErrorBody } from "../../../shared/protocol/api-error.ts";
import { FleetStats } from "../../../shared/gateway-admin/admin-schemas.ts";
import { ChatCompletion } from "../../../shared/openai-completions/completion-schemas.ts";
import { ADMIN_TOKEN, api, chatBody, eventually, FakeAgent, fakeAgentsPerTest } from "../../test/fake-agent.ts";
import { readSse } from "../../../test/harness/sse.ts";
import { TEST_BINDINGS } from "../../test/bindings.ts";

/**
 * README, "What happens when things fail": what a client gets when nodes drop before or after the
 * first token, how often a request is moved, and the fleet's bounded queue. Fake nodes over real
 * WebSockets to the real Worker and Fleet in workerd.
 */

const agent = fakeAgentsPerTest();

const stats = async () => FleetStats.parse(await (await api("/admin/stats", undefined, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json());
const requestsTo = (node: FakeAgent) => node.received.filter((frame) => frame.type === "request").length;

async function expectError(response: Response, status: number, code: string) {
  expect(response.status).toBe(status);
  const body = ErrorBody.parse(await response.json());
  expect(body.error.code).toBe(code);
  return body.error;
}

describe("a node drops after the first token", () => {
  test("a non-streamed request gets 502 node_disconnected, and is not moved to the other holder", async () => {
    const serving = await agent({ name: "nd-a", models: [{ id: "nd-m", state: "loaded" }], speed: { "nd-m": 1000 } });
    const other = await agent({ name: "nd-b", models: [{ id: "nd-m", state: "loaded" }], speed: { "nd-m": 1 } });
    const pending = api("/v1/chat/completions", chatBody("nd-m"));
    const frame = await serving.nextRequest();
    serving.sendFrame({ type: "events", id: frame.id, events: [{ type: "start", model: "nd-m" }, { type: "delta", text: "half an ans" }] });
    // The socket's frames arrive in order: the delta before the close.
    serving.close();
    const error = await expectError(await pending, 502, "node_disconnected");
    expect(error.message).toContain("nd-a");
    expect(requestsTo(other)).toBe(0);
  });

  test("a stream ends with the error event: no [DONE], and no finish_reason anywhere", async () => {
    const node = await agent({ name: "nf-a", models: [{ id: "nf-m", state: "loaded" }] });
    const pending = api("/v1/chat/completions", chatBody("nf-m", { stream: true, stream_options: { include_usage: true } }));
    const frame = await node.nextRequest();
    node.sendFrame({ type: "events", id: frame.id, events: [{ type: "start", model: "nf-m" }, { type: "delta", text: "partial" }] });
    const response = await pending;
    expect(response.status).toBe(200);
    node.close();
    const { events, done } = await readSse(response);
    expect(done).toBe(false);
    const chunks = events.slice(0, -1) as Array<{ choices: Array<{ delta: { content?: string }; finish_reason: string | null }>; usage?: unknown }>;
    expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")).toBe("partial");
    expect(chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.finish_reason)).filter((reason) => reason != null)).toEqual([]);
    expect(chunks.some((chunk) => chunk.usage != null)).toBe(false);
    expect((events.at(-1) as { error?: { code: string } }).error?.code).toBe("node_disconnected");
  });
});

describe("a node drops before the first token", () => {
  const dropOnRequest = (node: FakeAgent) => node.autoAnswer(() => node.close());

  test("the request is moved up to 3 times: a fourth dropping node ends it with 502, a fifth holder is never asked", async () => {
    // Unmeasured equal holders tie (claimed speeds play no part), and a tie goes to the one connected first.
    const nodes: FakeAgent[] = [];
    for (const index of [5, 4, 3, 2, 1]) nodes.push(await agent({ name: `cap-${index}`, models: [{ id: "cap-m", state: "loaded" }] }));
    for (const node of nodes) dropOnRequest(node);
    await expectError(await api("/v1/chat/completions", chatBody("cap-m")), 502, "node_disconnected");
    expect(nodes.map(requestsTo)).toEqual([1, 1, 1, 1, 0]);
  });

  test("when no other holder is left: 503 no_capacity with Retry-After", async () => {
    const nodes = await Promise.all(["left-a", "left-b"].map((name) => agent({ name, models: [{ id: "left-m", state: "loaded" }] })));
    for (const node of nodes) dropOnRequest(node);
    const response = await api("/v1/chat/completions", chatBody("left-m"));
    expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0);
    const error = await expectError(response, 503, "no_capacity");
    expect(error.message).toContain("failed");
    expect(nodes.map(requestsTo)).toEqual([1, 1]);
  });
});

describe("the fleet's queue", () => {
  test(`holds LMGATE_MAX_QUEUE (${TEST_BINDINGS.LMGATE_MAX_QUEUE}) requests; the next one gets 503 at once, while they still wait`, async () => {
    const maxQueue = Number(TEST_BINDINGS.LMGATE_MAX_QUEUE);
    const node = await agent({ name: "q-a", slots: 1, models: [{ id: "q-m", state: "loaded" }] });
    const running = api("/v1/chat/completions", chatBody("q-m"));
    const first = await node.nextRequest();
    const queued = Array.from({ length: maxQueue }, () => api("/v1/chat/completions", chatBody("q-m")));
    await eventually(async () => (await stats()).queue_depth === maxQueue);

    const refused = await api("/v1/chat/completions", chatBody("q-m"));
    expect(refused.headers.get("retry-after")).not.toBeNull();
    const error = await expectError(refused, 503, "no_capacity");
    expect(error.message).toContain(`${maxQueue} requests are already waiting`);
    // Refused on arrival, not after a wait: the queue it found full is still full.
    expect((await stats()).queue_depth).toBe(maxQueue);

    node.autoAnswer((frame) => node.complete(frame.id, "later"));
    node.complete(first.id, "first");
    for (const response of [await running, ...(await Promise.all(queued))]) {
      expect(response.status).toBe(200);
      ChatCompletion.parse(await response.json());
    }
  });
});
