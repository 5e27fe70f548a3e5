import { createSocket, type Socket } from "node:dgram";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, expect, test } from "vitest";
import { AdminClient } from "../../cli/admin-client.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * Wake-on-LAN for real, on loopback: `wrangler dev`, an always-on agent started with
 * `--wake-peers`, and a "gaming PC" agent started with `--wake-on-lan`, both told that their
 * network's broadcast address is 127.0.0.1 (never a real network). The PC's agent stops; a
 * request for its model makes the peer send the magic packet; a UDP listener standing in for the
 * PC's network card starts the PC's agent again when the packet arrives; the held request is
 * answered there.
 */

const MODEL = "tiny-chat-f32";
const WAKE_ARGS = ["--wake-broadcast", "127.0.0.1"];

let gateway: GatewayProcess;
let peer: AgentProcess;
let pc: AgentProcess | undefined;
let nic: Socket;
let emptyModels: string;
const packets: Buffer[] = [];

beforeAll(async () => {
  nic = createSocket("udp4");
  await new Promise<void>((resolve) => nic.bind(0, "127.0.0.1", resolve));
  gateway = await startGateway();
  // The peer serves nothing (an empty models folder): an always-on box whose only job here is to wake others.
  emptyModels = await mkdtemp(join(tmpdir(), "lmgate-wol-empty-"));
  peer = await startAgent({
    models: [emptyModels],
    gateway: { url: gateway.url, token: gateway.nodeToken },
    name: "wol-peer",
    extraArgs: ["--wake-peers", ...WAKE_ARGS, "--wake-port", String(nic.address().port)],
  });
}, 120_000);

afterAll(async () => {
  nic?.close();
  await Promise.all([pc?.stop(), peer?.stop()]);
  await gateway?.stop();
  if (emptyModels) await rm(emptyModels, { recursive: true, force: true });
});

const startPc = async () =>
  startAgent({ models: [await testModelsDir()], gateway: { url: gateway.url, token: gateway.nodeToken }, name: "wol-pc", extraArgs: ["--wake-on-lan", ...WAKE_ARGS] });

test("a request for a sleeping node's model wakes it through its peer, and is answered once it is back", async () => {
  pc = await startPc();
  const admin = new AdminClient(gateway.url, gateway.adminToken);
  await pc.stop();
  const offline = (await admin.listNodes()).find((node) => node.name === "wol-pc");
  expect(offline).toMatchObject({ online: false, wake: { wakeable: true, wakes_peers: false } });

  // The PC's network card: the magic packet for its MAC powers the machine on.
  nic.on("message", (packet) => {
    packets.push(packet);
    if (packets.length === 1) void startPc().then((started) => (pc = started));
  });

  const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: gateway.apiKey, maxRetries: 0, timeout: 120_000 });
  const completion = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "good morning" }], max_tokens: 4 });
  expect(completion.choices[0]?.message.content).toEqual(expect.any(String));

  expect(packets.length).toBeGreaterThanOrEqual(1);
  const packet = packets[0] as Buffer;
  expect(packet).toHaveLength(102);
  expect([...packet.subarray(0, 6)]).toEqual([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  const woken = (await admin.listNodes()).find((node) => node.name === "wol-pc");
  expect(woken?.online).toBe(true);
  expect(woken?.wake?.last).toMatchObject({ peer: "wol-peer", broadcast: "127.0.0.1", failure: null });
  // The packet carried the MAC the PC reported.
  const reported = Buffer.from((woken?.wake?.last?.mac ?? "").replaceAll(":", ""), "hex");
  expect(packet.subarray(6, 12)).toEqual(reported);
}, 180_000);
