import Anthropic from "@anthropic-ai/sdk";
import { describe, expect, test } from "vitest";
import { createExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import app from "../worker/index.ts";
import { ADMIN_TOKEN, API_KEY, dialGateway, NODE_TOKEN } from "./fake-agent.ts";

const get = (path: string, headers: Record<string, string> = {}) => exports.default.fetch(`http://gateway.test${path}`, { headers });

describe("API keys", () => {
  test("a request without a key gets OpenAI's 401 invalid_api_key", async () => {
    const response = await get("/v1/models");
    expect(response.status).toBe(401);
    const body = (await response.json()) as { error: { code: string; type: string } };
    expect(body.error.code).toBe("invalid_api_key");
    expect(body.error.type).toBe("invalid_request_error");
  });

  test("a wrong key gets 401 invalid_api_key, and the right one gets through", async () => {
    expect((await get("/v1/models", { authorization: "Bearer nope" })).status).toBe(401);
    expect((await get("/v1/models", { authorization: `Bearer ${API_KEY}` })).status).toBe(200);
    expect((await get("/api/v0/models", { "x-api-key": API_KEY })).status).toBe(200);
  });

  test("a node token cannot call the API, and is told so", async () => {
    const response = await get("/v1/models", { authorization: `Bearer ${NODE_TOKEN}` });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/node token/);
  });

  test("unknown routes need a key too, then answer an OpenAI-shaped 404", async () => {
    expect((await get("/v2/whatever")).status).toBe(401);
    const response = await get("/v2/whatever", { authorization: `Bearer ${API_KEY}` });
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("not_found");
  });

  test("/health and /lmstudio-greeting are public", async () => {
    expect(await (await get("/health")).json()).toEqual({ status: "ok" });
    expect(await (await get("/lmstudio-greeting")).json()).toEqual({ lmstudio: true });
  });
});

describe("node tokens", () => {
  test("an agent without a token, or with a wrong one, cannot connect", async () => {
    expect((await dialGateway(undefined)).status).toBe(401);
    expect((await dialGateway("wrong")).status).toBe(401);
  });

  test("an API key cannot connect as a node", async () => {
    const response = await dialGateway(API_KEY);
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/API key/);
  });

  test("a plain GET on /agent/connect is told to upgrade", async () => {
    expect((await get("/agent/connect", { authorization: `Bearer ${NODE_TOKEN}` })).status).toBe(426);
  });

  test("the node token connects", async () => {
    const response = await dialGateway(NODE_TOKEN);
    expect(response.status).toBe(101);
    response.webSocket?.accept();
    response.webSocket?.close(1000);
  });
});

describe("admin token", () => {
  test("/admin/nodes needs the admin token; API keys and node tokens are refused", async () => {
    expect((await get("/admin/nodes")).status).toBe(401);
    expect((await get("/admin/nodes", { authorization: `Bearer ${API_KEY}` })).status).toBe(401);
    expect((await get("/admin/nodes", { authorization: `Bearer ${NODE_TOKEN}` })).status).toBe(401);
    const response = await get("/admin/nodes", { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ data: [] });
  });
});

describe("CORS", () => {
  const preflight = (origin: string) => ({ method: "OPTIONS", headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" } });

  test("is off by default: no CORS headers, and a preflight gets no pass", async () => {
    const response = await get("/v1/models", { authorization: `Bearer ${API_KEY}`, origin: "https://evil.example" });
    expect(response.status).toBe(200);
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    const check = await exports.default.fetch("http://gateway.test/v1/chat/completions", preflight("https://evil.example"));
    expect(check.headers.get("access-control-allow-origin")).toBeNull();
  });

  test("LMGATE_CORS_ORIGINS allows exactly the listed origins, preflight before auth", async () => {
    const withCors = { ...env, LMGATE_CORS_ORIGINS: "https://chat.example, https://other.example" };
    const call = (path: string, init: RequestInit) => app.fetch(new Request(`http://gateway.test${path}`, init), withCors, createExecutionContext());

    const allowed = await call("/v1/chat/completions", preflight("https://chat.example"));
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://chat.example");
    expect(allowed.headers.get("access-control-allow-headers")).toMatch(/authorization/);

    const listed = await call("/v1/models", { headers: { authorization: `Bearer ${API_KEY}`, origin: "https://other.example" } });
    expect(listed.status).toBe(200);
    expect(listed.headers.get("access-control-allow-origin")).toBe("https://other.example");

    const stranger = await call("/v1/models", { headers: { authorization: `Bearer ${API_KEY}`, origin: "https://evil.example" } });
    expect(stranger.headers.get("access-control-allow-origin")).toBeNull();
    // CORS only tells browsers what they may read: the key is still required.
    expect((await call("/v1/models", { headers: { origin: "https://chat.example" } })).status).toBe(401);
  });

  test("LMGATE_CORS_ORIGINS=* allows any origin, and still requires the key", async () => {
    const withCors = { ...env, LMGATE_CORS_ORIGINS: "*" };
    const call = (path: string, init: RequestInit) => app.fetch(new Request(`http://gateway.test${path}`, init), withCors, createExecutionContext());
    const allowed = await call("/v1/chat/completions", preflight("https://anywhere.example"));
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("*");
    const listed = await call("/v1/models", { headers: { authorization: `Bearer ${API_KEY}`, origin: "https://anywhere.example" } });
    expect(listed.status).toBe(200);
    expect(listed.headers.get("access-control-allow-origin")).toBe("*");
    expect((await call("/v1/models", { headers: { origin: "https://anywhere.example" } })).status).toBe(401);
  });

  test("a preflight allows every header the official Anthropic SDK sends from a browser, x-api-key and anthropic-beta too", async () => {
    const withCors = { ...env, LMGATE_CORS_ORIGINS: "https://chat.example" };
    const call = (request: Request) => app.fetch(request, withCors, createExecutionContext());
    // anthropic-beta goes with beta features; x-api-key is how Claude Code and older SDKs send the key.
    const sent = new Set<string>(["anthropic-beta", "x-api-key"]);
    const client = new Anthropic({
      baseURL: "http://gateway.test",
      apiKey: API_KEY,
      dangerouslyAllowBrowser: true,
      maxRetries: 0,
      fetch: async (input: string | URL | Request, init?: RequestInit) => {
        const request = new Request(input, init);
        request.headers.forEach((_, name) => sent.add(name));
        return call(request);
      },
    });
    // No node holds the model: only the headers matter here.
    await client.messages.countTokens({ model: "any-model", messages: [{ role: "user", content: "Hi" }] }).catch(() => undefined);
    expect(sent).toContain("anthropic-version");

    const requested = [...sent].filter((name) => !["accept", "content-type"].includes(name));
    const check = await call(
      new Request("http://gateway.test/v1/messages", {
        method: "OPTIONS",
        headers: { origin: "https://chat.example", "access-control-request-method": "POST", "access-control-request-headers": requested.join(",") },
      }),
    );
    expect(check.status).toBe(204);
    const allowed = (check.headers.get("access-control-allow-headers") ?? "").split(",").map((name) => name.trim().toLowerCase());
    expect(requested.filter((name) => !allowed.includes(name))).toEqual([]);
  });
});
