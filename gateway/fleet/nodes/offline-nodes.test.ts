import { describe, expect, test } from "vitest";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { PROTOCOL_VERSION } from "../../../shared/protocol/frames.ts";
import type { NodeApi } from "../../node/node-contract.ts";
import { statusOf } from "../../test/fake-agent.ts";
import type { HelloFrame } from "./fleet-node.ts";
import { NodeRegistry } from "./node-registry.ts";

/**
 * README: offline nodes stay listed for 7 days. The registry forgets them when a node joins (the
 * Fleet hands it `Date.now()`); here it is handed the time, so no test waits a week.
 */

const DAY_MS = 24 * 3600 * 1000;

const hello = (name: string, model: string): HelloFrame => ({
  type: "hello",
  protocol: PROTOCOL_VERSION,
  node: {
    name,
    agent_version: "test",
    runtime: { name: "fake-runtime", version: "1", supported_formats: ["gguf"] },
    hardware: { cpu: "test cpu", cores: 2, memory_bytes: 1e9, gpu: null, gpu_devices: [], vram_bytes: null },
    slots_per_model: 1,
  },
  status: statusOf({ models: [{ id: model }] }),
});

describe("offline nodes", () => {
  test("are listed, and named as holders of their models, for 7 days after they left; a node joining after that forgets them", async () => {
    await runInDurableObject(env.FLEET.getByName("offline-nodes-forgotten"), (_instance, state) => {
      // No node here is ever called: the registry only keeps their rows.
      const registry = new NodeRegistry(state.storage.sql, () => ({}) as NodeApi);
      const left = Date.parse("2026-03-01T10:00:00Z");
      registry.register("conn-old", hello("old-pc", "old-m"), left - DAY_MS, undefined);
      registry.remove("conn-old", left);

      const listed = () => registry.summaries().map((node) => [node.name, node.online]);
      // A node joining a moment short of 7 days later: the old one is still listed.
      registry.register("conn-a", hello("joins-a", "a-m"), left + 7 * DAY_MS - 1, undefined);
      expect(listed()).toEqual([["joins-a", true], ["old-pc", false]]);
      expect(registry.offlineHolders("old-m")).toEqual(["old-pc"]);
      expect(registry.knows("old-pc")).toBe(true);

      // Past 7 days, the next node to join forgets it.
      registry.register("conn-b", hello("joins-b", "b-m"), left + 7 * DAY_MS + 1, undefined);
      expect(listed()).toEqual([["joins-a", true], ["joins-b", true]]);
      expect(registry.offlineHolders("old-m")).toEqual([]);
      expect(registry.knows("old-pc")).toBe(false);
    });
  });

  test("a node that came back, or has been online for longer than 7 days, is not forgotten", async () => {
    await runInDurableObject(env.FLEET.getByName("offline-nodes-back"), (_instance, state) => {
      const registry = new NodeRegistry(state.storage.sql, () => ({}) as NodeApi);
      const left = Date.parse("2026-03-01T10:00:00Z");
      registry.register("conn-1", hello("laptop", "l-m"), left - DAY_MS, undefined);
      registry.remove("conn-1", left);
      registry.register("conn-2", hello("laptop", "l-m"), left + 6 * DAY_MS, undefined);
      // Online since 24 days when another node joins; when it leaves after, it is listed offline.
      registry.register("conn-3", hello("desk", "d-m"), left + 30 * DAY_MS, undefined);
      expect(registry.knows("laptop")).toBe(true);
      registry.remove("conn-2", left + 31 * DAY_MS);
      expect(registry.summaries().map((node) => [node.name, node.online])).toEqual([["desk", true], ["laptop", false]]);
    });
  });
});
