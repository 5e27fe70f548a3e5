import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AdminClient } from "../../cli/admin-client.ts";
import type { UsageRow } from "../../shared/gateway-admin/admin-schemas.ts";
import { countedCompletionTokens, startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { parsePrometheus, series } from "../harness/prometheus-text.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * A client that goes away stops its generation, on every path: streamed or not, through the
 * gateway or in direct mode. The request asks for far more tokens than the time to cancel lets
 * the engine make, so a generation that ran on to `max_tokens` shows in the tokens it is billed.
 */

const MODEL = "tiny-chat-f32";
const MAX_TOKENS = 1_500;
const messages = [{ role: "user" as const, content: "Count for me." }];
/** At least 400 numbers: the tiny model would otherwise stop by itself long before `max_tokens`. */
const response_format = {
  type: "json_schema" as const,
  json_schema: { name: "numbers", schema: { type: "array", items: { type: "integer" }, minItems: 400 } },
};

let gateway: GatewayProcess;
let node: AgentProcess;
let direct: AgentProcess;
let modelsDir: string;

beforeAll(async () => {
  modelsDir = await mkdtemp(join(tmpdir(), "lmgate-cancel-models-"));
  const file = "lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf";
  await mkdir(join(modelsDir, "lmgate/tiny-chat-GGUF"), { recursive: true });
  await symlink(join(await testModelsDir(), file), join(modelsDir, file));
  gateway = await startGateway();
  [node, direct] = await Promise.all([
    startAgent({ models: [modelsDir], gateway: { url: gateway.url, token: gateway.nodeToken }, name: "cancel-node", extraArgs: ["--metrics", "--metrics-port", "0"] }),
    startAgent({ models: [modelsDir], extraArgs: ["--metrics"] }),
  ]);
  for (const base of [`${gateway.url}/api/v1/models/load`, `${direct.url}/api/v1/models/load`]) {
    const response = await fetch(base, { method: "POST", headers: { authorization: `Bearer ${gateway.apiKey}` }, body: JSON.stringify({ model: MODEL }) });
    expect(response.status).toBe(200);
  }
}, 180_000);

afterAll(async () => {
  await Promise.all([node?.stop(), direct?.stop()]);
  await gateway?.stop();
  await rm(modelsDir, { recursive: true, force: true });
});

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const admin = () => new AdminClient(gateway.url, gateway.adminToken);
const client = (baseURL: string, apiKey: string) => new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });

async function gatewayGauge(name: string): Promise<number | undefined> {
  const response = await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${gateway.adminToken}` } });
  return parsePrometheus(await response.text()).samples.get(name);
}

/** The completion tokens the gateway's node counted itself (its own `--metrics` port). */
const nodeCompletionTokens = () => countedCompletionTokens(node, MODEL);

async function directSamples(): Promise<Map<string, number>> {
  return parsePrometheus(await (await fetch(`${direct.url}/metrics`)).text()).samples;
}

/**
 * Starts a generation with the openai client and leaves it: a stream after its first chunk, a
 * plain request once `running` says the engine is on it.
 */
async function cancelWhileRunning(openai: OpenAI, stream: boolean, running: () => Promise<boolean>): Promise<void> {
  const request = { model: MODEL, messages, max_tokens: MAX_TOKENS, temperature: 0, response_format };
  if (stream) {
    for await (const chunk of await openai.chat.completions.create({ ...request, stream: true })) {
      expect(chunk.choices[0]?.finish_reason ?? null).toBeNull();
      break; // leaving the loop aborts the request
    }
    return;
  }
  const controller = new AbortController();
  const pending = openai.chat.completions.create(request, { signal: controller.signal });
  const outcome = pending.then(
    () => "finished",
    (error: unknown) => error,
  );
  await until(running);
  controller.abort();
  expect(await outcome).toBeInstanceOf(OpenAI.APIUserAbortError);
}

/** The response's head arrived (the gateway sends it once text is coming), so the engine is generating. */
const headersIn = (openai: OpenAI) => {
  let arrived = false;
  return {
    openai: openai.withOptions({
      fetch: async (url, init) => {
        const response = await fetch(url, init);
        arrived = true;
        return response;
      },
    }),
    running: async () => arrived,
  };
};

describe("through the gateway", () => {
  for (const stream of [false, true]) {
    test(`a cancelled ${stream ? "stream" : "non-streamed request"} stops on its node and is billed for what was generated`, async () => {
      const { key, record } = await admin().createKey({ name: `leaver-${stream}` });
      const countedBefore = await nodeCompletionTokens();
      const watched = headersIn(client(`${gateway.url}/v1`, key));
      await cancelWhileRunning(watched.openai, stream, watched.running);
      let rows: UsageRow[] = [];
      await until(async () => (rows = await admin().usage({ key: record.id })).length > 0);
      expect(rows[0]).toMatchObject({ model: MODEL, requests: 1 });
      expect(rows[0]?.completion_tokens).toBeGreaterThan(0);
      expect(rows[0]?.completion_tokens).toBeLessThan(MAX_TOKENS);
      // Billed exactly what the node's engine counted for it.
      await until(async () => (await nodeCompletionTokens()) - countedBefore === rows[0]?.completion_tokens);
      await until(async () => (await gatewayGauge("lmgate_gateway_requests_in_flight")) === 0);
      await until(async () => (await admin().listNodes()).every((entry) => entry.in_flight === 0));
    });
  }
});

describe("in direct mode", () => {
  const inFlight = series("lmgate_agent_requests_in_flight", { route: "chat/completions" });
  const requests = series("lmgate_agent_requests_total", { route: "chat/completions", model: MODEL, status: "499" });
  const completionTokens = series("lmgate_agent_completion_tokens_total", { model: MODEL });

  test("a stream whose client leaves without reading it ends, and requests_in_flight comes back to 0", async () => {
    const before = await directSamples();
    const controller = new AbortController();
    const response = await fetch(`${direct.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages, max_tokens: MAX_TOKENS, temperature: 0, response_format, stream: true }),
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    controller.abort();
    await until(async () => ((await directSamples()).get(requests) ?? 0) === (before.get(requests) ?? 0) + 1);
    expect((await directSamples()).get(inFlight)).toBe(0);
  });

  for (const stream of [false, true]) {
    test(`a cancelled ${stream ? "stream" : "non-streamed request"} stops, counts its tokens, and leaves requests_in_flight at 0`, async () => {
      const before = await directSamples();
      await cancelWhileRunning(client(`${direct.url}/v1`, "unused"), stream, async () => ((await directSamples()).get(inFlight) ?? 0) > 0);
      await until(async () => ((await directSamples()).get(requests) ?? 0) === (before.get(requests) ?? 0) + 1);
      const after = await directSamples();
      const generated = (after.get(completionTokens) ?? 0) - (before.get(completionTokens) ?? 0);
      expect(generated).toBeLessThan(MAX_TOKENS);
      expect(after.get(inFlight)).toBe(0);
    });
  }
});
