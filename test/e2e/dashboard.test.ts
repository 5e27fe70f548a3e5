import { mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { NodeSummary } from "../../shared/gateway-admin/admin-schemas.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { ARTIFACTS, launchChromium, openDashboardAsAdmin, skipBrowser } from "../harness/chromium.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { startHubServer } from "../harness/hub-server.ts";
import { connectIdleNode, simulatedModel, type IdleNode } from "../harness/idle-node.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * The dashboard in a real browser: headless Chromium (Debian's package, driven by playwright-core)
 * opens `/dashboard` on the real gateway (`wrangler dev`) with two real agents after some traffic,
 * signs in with the admin token and finds both nodes, their models and the throughput chart.
 * Leaves screenshots in $LMGATE_TEST_ARTIFACTS (default: lmgate-test-artifacts in the temp folder).
 * Without Chromium the browser tests are skipped on a developer's machine, and fail in CI.
 */

const SCREENSHOT = join(ARTIFACTS, "dashboard.png");
const DOWNLOADS_SCREENSHOT = join(ARTIFACTS, "dashboard-downloads.png");
const FLEET_SCREENSHOT = join(ARTIFACTS, "dashboard-fleet.png");
const TOKEN_KEY = "lmgate.dashboard.adminToken";

let gateway: GatewayProcess;
const agents: AgentProcess[] = [];
const idleNodes: IdleNode[] = [];
const cleanup: string[] = [];
let browser: Browser | undefined;

function launched(): Browser {
  if (browser === undefined) throw new Error("no browser: Chromium did not launch");
  return browser;
}

/** Resolves once the dashboard has fetched `/admin/nodes` twice more: the first of them is drawn by then. */
async function refreshed(page: Page): Promise<void> {
  for (let i = 0; i < 2; i++) await page.waitForResponse((response) => new URL(response.url()).pathname === "/admin/nodes", { timeout: 15_000 });
}

/** A models folder with just these files of the shared test models (symlinked). */
async function modelsFolder(files: string[]): Promise<string> {
  const source = await testModelsDir();
  const dir = await mkdtemp(join(tmpdir(), "lmgate-dashboard-models-"));
  cleanup.push(dir);
  for (const file of files) {
    await mkdir(dirname(join(dir, file)), { recursive: true });
    await symlink(join(source, file), join(dir, file));
  }
  return dir;
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const admin = (path: string) => fetch(`${gateway.url}${path}`, { headers: { authorization: `Bearer ${gateway.adminToken}` } });

async function nodes(): Promise<NodeSummary[]> {
  const body = (await (await admin("/admin/nodes")).json()) as { data: unknown[] };
  return body.data.map((node) => NodeSummary.parse(node));
}

async function chat(model: string, stream = false): Promise<void> {
  const response = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${gateway.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "Tell me about the sea." }], max_tokens: 32, stream }),
    signal: AbortSignal.timeout(30_000),
  });
  expect(response.status, `chat with ${model}: ${response.status === 200 ? "" : await response.clone().text()}`).toBe(200);
  await response.text();
}

async function embed(model: string): Promise<void> {
  const response = await fetch(`${gateway.url}/v1/embeddings`, {
    method: "POST",
    headers: { authorization: `Bearer ${gateway.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model, input: "the sea" }),
    signal: AbortSignal.timeout(30_000),
  });
  expect(response.status, `embeddings with ${model}`).toBe(200);
  await response.text();
}

/** Loads the model on every online node that holds it (the load API picks a holder that has not loaded it yet). */
async function loadEverywhere(model: string): Promise<void> {
  for (let attempt = 0; attempt < 4; attempt++) {
    const holders = (await nodes()).filter((node) => node.online && node.models.some((entry) => entry.id === model));
    if (holders.every((node) => node.models.find((entry) => entry.id === model)?.state === "loaded")) return;
    const response = await fetch(`${gateway.url}/api/v1/models/load`, {
      method: "POST",
      headers: { authorization: `Bearer ${gateway.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ model }),
      signal: AbortSignal.timeout(30_000),
    });
    expect(response.status, `load ${model}`).toBe(200);
    await response.text();
  }
  throw new Error(`${model} is not loaded on every node that holds it`);
}

beforeAll(async () => {
  const [dirA, dirB] = await Promise.all([
    modelsFolder(["lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf", "lmgate/tiny-embed-GGUF/tiny-embed-F32.gguf"]),
    modelsFolder(["lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf", "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf"]),
  ]);
  gateway = await startGateway({ vars: { LMGATE_HEARTBEAT_INTERVAL_MS: "2000", LMGATE_HEARTBEAT_TIMEOUT_MS: "6000" } });
  const [a, b] = await Promise.all([
    // Its downloads come from a test server on 127.0.0.1, a private address its owner allows.
    startAgent({ models: [dirA], gateway: { url: gateway.url, token: gateway.nodeToken }, name: "node-a", env: { LMGATE_ALLOW_PRIVATE_DOWNLOADS: "1" } }),
    startAgent({ models: [dirB], gateway: { url: gateway.url, token: gateway.nodeToken }, name: "node-b" }),
  ]);
  agents.push(a, b);
  await until(async () => (await nodes()).filter((node) => node.online).length === 2, "both nodes online");
  if (skipBrowser === undefined) browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all(idleNodes.map((node) => node.close()));
  await Promise.all(agents.map((agent) => agent.stop()));
  await gateway?.stop();
  for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
});

test("the dashboard is static assets at /dashboard/, and the Worker still answers everything else", async () => {
    const redirect = await fetch(`${gateway.url}/dashboard`, { redirect: "manual" });
    expect([301, 302, 307, 308]).toContain(redirect.status);
    expect(new URL(redirect.headers.get("location") ?? "", gateway.url).pathname).toBe("/dashboard/");

    const page = await fetch(`${gateway.url}/dashboard/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/text\/html/);
    expect(await page.text()).toContain('id="signin-form"');
    const vendored = await fetch(`${gateway.url}/dashboard/vendor/uPlot.iife.min.js`);
    expect(vendored.status, "uPlot vendored by scripts/build-dashboard.ts").toBe(200);
    await vendored.arrayBuffer();

    const unknown = await fetch(`${gateway.url}/no-such-route`, { headers: { authorization: `Bearer ${gateway.apiKey}` } });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe("not_found");
    expect((await fetch(`${gateway.url}/admin/nodes`)).status).toBe(401);
});

const suiteName = skipBrowser !== undefined ? `dashboard in a real browser (skipped: ${skipBrowser})` : "dashboard in a real browser";

describe.skipIf(skipBrowser !== undefined)(suiteName, () => {

  test("sign in, see both nodes, their models and live throughput; sign out", async () => {
    // Traffic first, on both nodes: the chat model both hold (loaded on both), the one only
    // node-b holds, and node-a's embedding model.
    for (let i = 0; i < 3; i++) {
      await Promise.all([chat("tiny-chat-f32"), chat("tiny-chat-q8_0", i === 0)]);
    }
    await loadEverywhere("tiny-chat-f32");
    await Promise.all([chat("tiny-chat-f32"), chat("tiny-chat-f32", true), embed("tiny-embed-f32")]);
    expect((await admin("/admin/stats")).status).toBe(200);

    const context = await launched().newContext({ viewport: { width: 1440, height: 900 }, colorScheme: "light" });
    const page: Page = await context.newPage();
    const pageErrors: string[] = [];
    const cspViolations: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    page.on("console", (message) => {
      if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
    });

    try {
      await page.goto(`${gateway.url}/dashboard`, { timeout: 20_000 });
      expect(new URL(page.url()).pathname).toBe("/dashboard/");
      await page.locator("#signin-form").waitFor({ state: "visible", timeout: 10_000 });

      // A wrong token: a clear message, nothing stored.
      await page.fill("#token", "definitely-not-the-admin-token");
      await page.click("#signin-button");
      await expect.poll(() => page.locator("#signin-error").textContent(), { timeout: 10_000 }).toMatch(/Wrong admin token/);
      expect(await page.evaluate((key) => sessionStorage.getItem(key), TOKEN_KEY)).toBeNull();
      // LMGATE_API_KEY is an API key: it signs in to its own key's view, not to the fleet's.
      await page.fill("#token", gateway.apiKey);
      await page.click("#signin-button");
      await page.locator("#key-view").waitFor({ state: "visible", timeout: 10_000 });
      expect(await page.locator("#key-name").textContent()).toBe("LMGATE_API_KEY");
      expect(await page.locator("#dashboard-view").isHidden()).toBe(true);
      await page.click("#sign-out");
      await page.locator("#signin-form").waitFor({ state: "visible" });

      // The admin token: kept in sessionStorage only, never in the URL or localStorage.
      await page.fill("#token", gateway.adminToken);
      await page.click("#signin-button");
      await page.locator("#dashboard-view").waitFor({ state: "visible", timeout: 10_000 });
      const storage = await page.evaluate((key) => ({ session: sessionStorage.getItem(key), local: localStorage.length }), TOKEN_KEY);
      expect(storage).toEqual({ session: gateway.adminToken, local: 0 });
      expect(page.url()).not.toContain(gateway.adminToken);
      expect(await page.inputValue("#token")).toBe("");

      // Both nodes, online, with their hardware and backend.
      for (const name of ["node-a", "node-b"]) {
        const row = page.locator(`#nodes-body tr[data-node="${name}"]`);
        await row.waitFor({ timeout: 10_000 });
        await expect.poll(() => row.textContent()).toContain("Online");
        expect(await row.textContent()).toMatch(/CPU|CUDA|Vulkan|Metal/);
        // The memory the fleet may still place models in.
        expect(await row.textContent()).toMatch(/\d (MB|GB) free/);
      }

      // Every model, with the nodes that hold it; the chat models are loaded after the traffic.
      const holders = async (model: string) =>
        page.locator(`#models-body tr[data-model="${model}"] [data-holder]`).evaluateAll((chips) => chips.map((chip) => chip.getAttribute("data-holder")).sort());
      await expect.poll(() => holders("tiny-chat-f32"), { timeout: 10_000 }).toEqual(["node-a", "node-b"]);
      expect(await holders("tiny-chat-q8_0")).toEqual(["node-b"]);
      expect(await holders("tiny-embed-f32")).toEqual(["node-a"]);
      await expect.poll(() => page.locator('#models-body tr[data-model="tiny-chat-f32"]').textContent()).toContain("Loaded · 2/2");
      expect(await page.locator('#models-body tr[data-model="tiny-chat-q8_0"]').textContent()).toMatch(/Loaded/);
      expect(await page.locator('#models-body tr[data-model="tiny-chat-q8_0"]').textContent()).toContain("Q8_0");

      // The charts: drawn by uPlot; the throughput one shows the traffic.
      await page.locator("#chart-throughput canvas").waitFor({ timeout: 10_000 });
      await expect
        .poll(() => page.locator("#chart-throughput").getAttribute("data-nonzero").then(Number), { timeout: 15_000, message: "throughput chart has points above zero" })
        .toBeGreaterThan(0);
      await expect.poll(() => page.locator('[data-kpi="tps"] .kpi-value').textContent()).not.toBe("—");

      // The request log: the traffic above, one row per request, newest first.
      await expect.poll(() => page.locator("#requests-body tr[data-request]").count(), { timeout: 10_000 }).toBeGreaterThanOrEqual(9);
      // The newest: the wrong token's try at sign-in, refused without a key.
      expect(await page.locator("#requests-body tr[data-request]").first().textContent()).toMatch(/unknown key.*GET \/v1\/key.*401 invalid_api_key/);
      expect(await page.locator("#requests-body").textContent()).toContain("LMGATE_API_KEY");
      expect(await page.locator("#requests-body").textContent()).toContain("POST /v1/embeddings");
      await page.fill("#requests-filter", "tiny-embed-f32");
      await expect.poll(() => page.locator("#requests-body tr[data-request]").count()).toBe(1);
      await page.fill("#requests-filter", "");

      await refreshed(page); // the picture after a settled refresh
      await mkdir(dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      console.log(`dashboard screenshot: ${SCREENSHOT}`);

      // Sign out: back to the form, the token gone.
      await page.click("#sign-out");
      await page.locator("#signin-form").waitFor({ state: "visible" });
      expect(await page.evaluate((key) => sessionStorage.getItem(key), TOKEN_KEY)).toBeNull();
      expect(await page.locator("#nodes-body tr").count()).toBe(0);

      expect(pageErrors).toEqual([]);
      expect(cspViolations).toEqual([]);
    } finally {
      await context.close();
    }
  }, 120_000);

  test("a teammate signs in with their API key and sees their own limits, usage, requests and models, and nothing else", async () => {
    const create = async (body: Record<string, unknown>) => {
      const response = await fetch(`${gateway.url}/admin/keys`, {
        method: "POST",
        headers: { authorization: `Bearer ${gateway.adminToken}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      expect(response.status).toBe(201);
      return (await response.json()) as { key: string; record: { id: string; name: string; prefix: string } };
    };
    const teammate = await create({ name: "teammate-tess", models: ["tiny-chat-*"], rpm: 20, tokens_per_day: 100_000 });
    const other = await create({ name: "other-oscar" });
    const chatAs = (key: string, model: string) =>
      fetch(`${gateway.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model, messages: [{ role: "user", content: "Hi." }], max_tokens: 4 }),
        signal: AbortSignal.timeout(30_000),
      }).then(async (response) => (await response.text(), response.status));
    expect(await chatAs(teammate.key, "tiny-chat-f32")).toBe(200);
    expect(await chatAs(teammate.key, "tiny-embed-f32")).toBe(403);
    expect(await chatAs(other.key, "tiny-chat-q8_0")).toBe(200);

    const context = await launched().newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    const adminCalls: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    page.on("request", (request) => {
      if (new URL(request.url()).pathname.startsWith("/admin")) adminCalls.push(request.url());
    });
    try {
      await page.goto(`${gateway.url}/dashboard/`, { timeout: 20_000 });
      await page.fill("#token", teammate.key);
      await page.click("#signin-button");
      await page.locator("#key-view").waitFor({ state: "visible", timeout: 10_000 });
      expect(await page.locator("#dashboard-view").isHidden()).toBe(true);
      expect(await page.locator("#key-name").textContent()).toBe("teammate-tess");
      expect(await page.locator("#key-prefix").textContent()).toContain(teammate.record.prefix);
      expect(await page.locator('#key-kpis [data-kpi="tokens"] .kpi-sub').textContent()).toMatch(/^\d+ of 100K used · resets 00:00 UTC$/);
      expect(await page.locator('#key-kpis [data-kpi="rpm"] .kpi-value').textContent()).toBe("19 left"); // the refusal by scope is not counted
      await expect.poll(() => page.locator("#key-requests-body tr[data-request]").count()).toBe(2);
      expect(await page.locator("#key-requests-body").textContent()).toContain("403 model_not_allowed");
      expect(await page.locator("#key-usage-body").textContent()).toContain("tiny-chat-f32");
      // Its tokens per day: fourteen bars, today's holding what it spent (the same as the tokens/day used).
      expect(await page.locator("#key-usage-chart [data-day]").count()).toBe(14);
      const today = new Date().toISOString().slice(0, 10);
      const used = /^(\d+) of/.exec((await page.locator('#key-kpis [data-kpi="tokens"] .kpi-sub').textContent()) ?? "")?.[1];
      expect(await page.locator(`#key-usage-chart [data-day="${today}"]`).getAttribute("data-tokens")).toBe(used);
      const models = await page.locator("#key-models-body tr[data-model]").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-model")).sort());
      expect(models).toEqual(["tiny-chat-f32", "tiny-chat-q8_0"]);
      expect(await page.locator('#key-models-body tr[data-model="tiny-chat-f32"]').textContent()).toMatch(/node-a, node-b/);
      // Nothing of the other key, and the page never called the admin API with this key.
      const text = (await page.locator("body").textContent()) ?? "";
      for (const leak of ["other-oscar", other.record.id, other.record.prefix, "tiny-embed-f32 ", gateway.nodeToken]) expect(text).not.toContain(leak);
      expect(adminCalls).toEqual([]);

      await page.reload();
      await page.locator("#key-view").waitFor({ state: "visible", timeout: 10_000 });
      await page.click("#sign-out");
      await page.locator("#signin-form").waitFor({ state: "visible" });
      expect(await page.evaluate((key) => sessionStorage.getItem(key), TOKEN_KEY)).toBeNull();
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  }, 120_000);

  test("a download onto a node shows its progress while it runs, then that it completed", async () => {
    const hub = await startHubServer();
    hub.addFile("elsewhere/files", "dash-Q8_0.gguf", await readFile(join(await testModelsDir(), "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf")));
    hub.stall("dash-Q8_0.gguf", 20_000);
    const { page, pageErrors, context } = await openDashboardAsAdmin(launched(), gateway.url, gateway.adminToken);
    const api = (path: string, body: unknown) =>
      fetch(`${gateway.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${gateway.adminToken}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    try {
      expect(await page.locator("#downloads-card").isHidden()).toBe(true);

      const started = await api("/api/v1/models/download", { model: `${hub.url}/files/dash-Q8_0.gguf`, node: "node-a" });
      expect(started.status).toBe(200);
      const running = page.locator('#downloads-body tr[data-status="downloading"]');
      await running.waitFor({ timeout: 15_000 });
      expect(await running.textContent()).toMatch(/Downloading.*node-a.*dash-Q8_0.*\d+% · 20 KB/);
      expect(await page.locator("#downloads-count").textContent()).toBe("1 running");

      hub.cutStalled(); // the agent resumes where it was cut, and finishes
      const done = page.locator('#downloads-body tr[data-status="completed"]');
      await done.waitFor({ timeout: 20_000 });
      expect(await done.textContent()).toMatch(/Completed.*node-a.*dash-q8_0.*100%/);
      await mkdir(dirname(DOWNLOADS_SCREENSHOT), { recursive: true });
      await page.locator("#downloads-card").screenshot({ path: DOWNLOADS_SCREENSHOT });
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
      await api("/api/v1/models/delete", { model: "dash-q8_0", node: "node-a", force: true });
      await hub.close();
    }
  }, 120_000);

  test("stays usable with 20 more nodes and 50 more models: every row is there, and the filters find one", async () => {
    // 20 simulated nodes over real WebSockets; node i holds 5 of the 50 models, the first two loaded.
    const models = Array.from({ length: 50 }, (_, i) => `sim-model-${String(i).padStart(2, "0")}`);
    for (let i = 0; i < 20; i++) {
      const held = Array.from({ length: 5 }, (_, j) => models[(i * 5 + j * 3) % 50]!);
      idleNodes.push(
        await connectIdleNode({
          url: gateway.url,
          token: gateway.nodeToken,
          name: `sim-node-${String(i).padStart(2, "0")}`,
          models: held.map((id, j) => simulatedModel(id, j < 2)),
        }),
      );
    }
    await until(async () => (await nodes()).filter((node) => node.online).length === 22, "22 nodes online");

    const { page, pageErrors, context } = await openDashboardAsAdmin(launched(), gateway.url, gateway.adminToken);
    try {
      await expect.poll(() => page.locator("#nodes-body tr").count(), { timeout: 10_000 }).toBe(22);
      // Every simulated model has its row, and so does every model of the real agents (whatever other tests downloaded).
      await expect.poll(() => page.locator('#models-body tr[data-model^="sim-model-"]').count(), { timeout: 10_000 }).toBe(50);
      const fleetModels = new Set((await nodes()).flatMap((node) => node.models.map((model) => model.id)));
      await expect.poll(() => page.locator("#models-body tr").count(), { timeout: 10_000 }).toBe(fleetModels.size);
      expect(await page.locator('#models-body tr[data-model="sim-model-07"] [data-holder]').count()).toBeGreaterThan(0);

      await page.fill("#nodes-filter", "sim-node-13");
      await expect.poll(() => page.locator("#nodes-body tr").count()).toBe(1);
      await page.fill("#models-filter", "sim-model-42");
      await expect.poll(() => page.locator("#models-body tr").count()).toBe(1);
      // Filters survive the live refresh (a redraw must not throw the user's view away).
      await refreshed(page);
      expect(await page.locator("#nodes-body tr").count()).toBe(1);
      expect(await page.inputValue("#models-filter")).toBe("sim-model-42");
      await page.fill("#nodes-filter", "");
      await page.fill("#models-filter", "");
      await expect.poll(() => page.locator("#nodes-body tr").count()).toBe(22);

      await mkdir(dirname(FLEET_SCREENSHOT), { recursive: true });
      await page.screenshot({ path: FLEET_SCREENSHOT, fullPage: true });
      console.log(`dashboard screenshot (22 nodes, ${fleetModels.size} models): ${FLEET_SCREENSHOT}`);
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  }, 120_000);
});
