import { createSocket, type Socket } from "node:dgram";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import { AdminClient } from "../../cli/admin-client.ts";
import type { WakeInfo } from "../../shared/protocol/frames.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { ARTIFACTS, launchChromium, openDashboardAsAdmin, skipBrowser } from "../harness/chromium.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { connectIdleNode, simulatedModel, type IdleNode } from "../harness/idle-node.ts";
import { lmgate } from "../harness/lmgate-cli.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * Wake-on-LAN for real, on loopback: `wrangler dev`, an always-on agent started with
 * `--wake-peers`, and a "gaming PC" agent started with `--wake-on-lan`, both told that their
 * network's broadcast address is 127.0.0.1 (never a real network). The PC's agent stops; a
 * request for its model makes the peer send the magic packet; a UDP listener standing in for the
 * PC's network card starts the PC's agent again when the packet arrives; the held request is
 * answered there. Then `lmgate nodes wake` as a process, and the dashboard's Wake button in a real
 * browser, on the PC and on simulated sleeping nodes.
 */

const MODEL = "tiny-chat-f32";
const WAKE_ARGS = ["--wake-broadcast", "127.0.0.1"];

let gateway: GatewayProcess;
let peer: AgentProcess;
let pc: AgentProcess | undefined;
let nic: Socket;
let emptyModels: string;
const packets: Buffer[] = [];
const idleNodes: IdleNode[] = [];

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
  await Promise.all([pc?.stop(), peer?.stop(), ...idleNodes.map((node) => node.close())]);
  await gateway?.stop();
  if (emptyModels) await rm(emptyModels, { recursive: true, force: true });
});

const offline = async (name: string) => {
  const admin = new AdminClient(gateway.url, gateway.adminToken);
  await expect.poll(async () => (await admin.listNodes()).find((node) => node.name === name)?.online, { timeout: 10_000 }).toBe(false);
};

const startPc = async () =>
  startAgent({ models: [await testModelsDir()], gateway: { url: gateway.url, token: gateway.nodeToken }, name: "wol-pc", extraArgs: ["--wake-on-lan", ...WAKE_ARGS] });

test("a request for a sleeping node's model wakes it through its peer, and is answered once it is back", async () => {
  // The PC another test may have left running is the one that goes to sleep here.
  pc ??= await startPc();
  const admin = new AdminClient(gateway.url, gateway.adminToken);
  await pc.stop();
  await offline("wol-pc");
  const asleep = (await admin.listNodes()).find((node) => node.name === "wol-pc");
  // The agent said goodbye as it stopped: listed as stopped on purpose (not lost), and still wakeable.
  expect(asleep).toMatchObject({ online: false, left: "shutdown", wake: { wakeable: true, wakes_peers: false } });

  // The PC's network card: the magic packet for its MAC powers the machine on.
  const powerOn = (packet: Buffer) => {
    packets.push(packet);
    if (packets.length === 1) void startPc().then((started) => (pc = started));
  };
  nic.on("message", powerOn);
  onTestFinished(() => void nic.off("message", powerOn));

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

describe("lmgate nodes wake", () => {
  // Run in the empty folder: no `.dev.vars` there, the token comes from the environment.
  const cli = (...args: string[]) => lmgate({ url: gateway.url, env: { LMGATE_ADMIN_TOKEN: gateway.adminToken }, cwd: emptyModels, timeoutMs: 150_000 }, ...args);
  const wake = (...args: string[]) => cli("nodes", "wake", ...args);
  const simulated = (name: string, broadcast: string) =>
    connectIdleNode({
      url: gateway.url,
      token: gateway.nodeToken,
      name,
      models: [simulatedModel(`${name}-model`, false)],
      wake: { interfaces: [{ mac: "02:00:00:00:00:41", broadcast }], wakeable: true, wakes_peers: false },
    });

  test("prints which peer sent the packet and when the node came back", async () => {
    pc ??= await startPc();
    await pc.stop();
    await offline("wol-pc");
    // Its agent said goodbye as it stopped: `stopped`, not lost.
    expect((await cli("nodes")).stdout).toMatch(/ wol-pc\W+stopped /);
    // The PC's network card again: the next packet powers it on.
    const packet = new Promise<Buffer>((resolve) => nic.once("message", resolve));
    void packet.then(async () => (pc = await startPc()));

    const { code, stdout, stderr } = await wake("wol-pc");
    expect(code, stderr).toBe(0);
    const sent = /^Wake packet for wol-pc \(([0-9a-f:]{17})\) sent by wol-peer to 127\.0\.0\.1 at \S+$/m.exec(stdout);
    expect(sent, stdout).not.toBeNull();
    expect(stdout).toMatch(/^Back: wol-pc came back at \S+, [\d.]+ s after the packet$/m);
    // The packet the peer sent carried the MAC the CLI names.
    expect((await packet).subarray(6, 12)).toEqual(Buffer.from((sent?.[1] ?? "").replaceAll(":", ""), "hex"));
  }, 180_000);

  test("--no-wait returns once the packet is sent", async () => {
    await (await simulated("wol-nap", "127.0.0.1")).close();
    await offline("wol-nap");
    const { code, stdout, stderr } = await wake("wol-nap", "--no-wait");
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/^Wake packet for wol-nap \(02:00:00:00:00:41\) sent by wol-peer to 127\.0\.0\.1 at \S+\n$/);
    // Its wake ends when it says hello again.
    idleNodes.push(await simulated("wol-nap", "127.0.0.1"));
  });

  test("a node no peer can reach: exit code 1 and the gateway's reason, nothing on stdout", async () => {
    await (await simulated("wol-away", "198.51.100.255")).close();
    await offline("wol-away");
    // It closed its socket without a goodbye: lost, as far as the gateway knows.
    expect((await cli("nodes")).stdout).toMatch(/ wol-away\W+offline /);
    const { code, stdout, stderr } = await wake("wol-away");
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toMatch(/^lmgate: Node "wol-away" is offline and no online node on its network \(198\.51\.100\.255\) may send wake packets/);
  });
});

describe.skipIf(skipBrowser !== undefined)("the dashboard's Wake button", () => {
  const wakeOn = (mac: string, broadcast: string): WakeInfo => ({ interfaces: [{ mac, broadcast }], wakeable: true, wakes_peers: false });
  /** Simulated nodes (no engine): one on the peer's network, one on a network no peer is on. */
  const DESK = { name: "wol-desk", wake: wakeOn("02:00:00:00:00:31", "127.0.0.1") };
  const FAR = { name: "wol-far", wake: wakeOn("02:00:00:00:00:32", "198.51.100.255") };
  const connect = async (node: { name: string; wake: WakeInfo }) => {
    const idle = await connectIdleNode({ url: gateway.url, token: gateway.nodeToken, name: node.name, models: [simulatedModel(`${node.name}-model`, false)], wake: node.wake });
    idleNodes.push(idle);
    return idle;
  };

  test("wakes an offline node through its peer and shows who sent the packet and when it came back; a node no peer can reach gets the gateway's error", async () => {
    const admin = new AdminClient(gateway.url, gateway.adminToken);
    for (const node of [DESK, FAR]) await (await connect(node)).close();
    // The desk's network card: its magic packet (6 × 0xFF, then its MAC) is what the test waits for.
    const deskMac = Buffer.from(DESK.wake.interfaces[0]!.mac.replaceAll(":", ""), "hex");
    const deskPacket = new Promise<Buffer>((resolve) => nic.on("message", (packet) => packet.subarray(6, 12).equals(deskMac) && resolve(packet)));

    const browser = await launchChromium();
    try {
      const { page, pageErrors } = await openDashboardAsAdmin(browser, gateway.url, gateway.adminToken);
      const row = (name: string) => page.locator(`#nodes-body tr[data-node="${name}"]`);
      const note = (name: string) => row(name).locator("[data-wake-note]");

      // No online node on its network: the click shows why, and nothing is sent.
      await row(FAR.name).locator(`button[data-wake="${FAR.name}"]`).click({ timeout: 10_000 });
      await expect.poll(() => note(FAR.name).textContent(), { timeout: 10_000 }).toMatch(/^Node "wol-far" is offline and no online node on its network \(198\.51\.100\.255\) may send wake packets/);
      // Nodes that are online, or whose owner did not allow waking, have no button.
      expect(await row("wol-peer").count()).toBe(1);
      expect(await row("wol-peer").locator("button[data-wake]").count()).toBe(0);

      await row(DESK.name).locator(`button[data-wake="${DESK.name}"]`).click({ timeout: 10_000 });
      await deskPacket;
      await expect.poll(() => note(DESK.name).textContent(), { timeout: 10_000 }).toMatch(/^Packet sent by wol-peer .* waiting for the node \(up to 120 s\)$/);
      // The packet powers the desk on: its agent says hello again.
      await connect(DESK);
      await expect.poll(() => row(DESK.name).textContent(), { timeout: 15_000 }).toContain("Online");
      await expect.poll(() => note(DESK.name).textContent(), { timeout: 10_000 }).toMatch(/^Woken by wol-peer · back (just now|\d+ s ago), \d+ s after the packet$/);
      expect(await row(DESK.name).locator("button[data-wake]").count()).toBe(0);
      expect((await admin.listNodes()).find((node) => node.name === DESK.name)?.wake?.last).toMatchObject({ peer: "wol-peer", back_at: expect.any(String) });
      await mkdir(ARTIFACTS, { recursive: true });
      await page.locator("#nodes-table").screenshot({ path: join(ARTIFACTS, "dashboard-wake.png") });
      expect(pageErrors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 120_000);
});
