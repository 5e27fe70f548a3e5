/**
 * Gateway overhead: a non-streaming 1-token completion through the gateway vs the agent's direct
 * mode (the same agent process, so the same engine), and in the same run the platform floor —
 * a bare Worker echo and a Worker → Durable Object → WebSocket → echo agent round trip on the
 * same runtime. All four paths are interleaved, one request each per round.
 */
import { timedCompletion, timedPost, type CompletionParams } from "./client.ts";
import { TINY_CHAT } from "./environment.ts";
import { withProgress, type SectionContext, type SectionResult } from "./section.ts";
import { round, summarize, type Summary } from "./stats.ts";

export interface OverheadData {
  model: string;
  iterations: number;
  direct: Summary;
  gateway: Summary;
  workerEcho: Summary;
  durableObjectEcho: Summary;
  /** gateway − direct. */
  added: { p50: number; p99: number };
  /** The Worker → DO → WebSocket → agent round trip: what any design on this runtime pays. */
  floor: { p50: number; p99: number };
  /** added − floor: the gateway's own cost. */
  ours: { p50: number; p99: number };
}

export const OVERHEAD_TARGET = { p50: 1, p99: 5 };

const WARMUP = 20;

export async function runOverhead(context: SectionContext): Promise<SectionResult<OverheadData>> {
  const { env, log } = context;
  const iterations = context.iterations ?? (context.quick ? 100 : 500);
  const node = await env.node("bench-a", [await env.tinyModelsDir()]);
  const [gateway, floor] = await Promise.all([env.gatewayTarget(), env.floor()]);
  await env.load(node, TINY_CHAT);

  const params: CompletionParams = { model: TINY_CHAT, prompt: "Hello", maxTokens: 1 };
  const echoBody = { model: TINY_CHAT, prompt: "Hello", max_tokens: 1 };
  const paths: Array<{ name: keyof typeof samples; run: () => Promise<number> }> = [
    { name: "direct", run: () => timedCompletion(node.direct, params) },
    { name: "gateway", run: () => timedCompletion(gateway, params) },
    { name: "workerEcho", run: () => timedPost(`${floor.url}/worker-echo`, echoBody) },
    { name: "durableObjectEcho", run: () => timedPost(`${floor.url}/echo`, echoBody) },
  ];
  const samples = { direct: [] as number[], gateway: [] as number[], workerEcho: [] as number[], durableObjectEcho: [] as number[] };

  log(`overhead: warming up (${WARMUP} requests per path)`);
  for (let index = 0; index < WARMUP; index++) for (const path of paths) await path.run();

  log(`overhead: ${iterations} rounds of direct, gateway, Worker echo, Worker→DO→WS echo (1-token completion on ${TINY_CHAT})`);
  await withProgress("overhead", iterations, log, async (index) => {
    // Interleaved, and the starting path rotates so none always follows the same one.
    for (let offset = 0; offset < paths.length; offset++) {
      const path = paths[(index + offset) % paths.length]!;
      samples[path.name].push(await path.run());
    }
  });

  const direct = summarize(samples.direct);
  const gatewaySummary = summarize(samples.gateway);
  const workerEcho = summarize(samples.workerEcho);
  const durableObjectEcho = summarize(samples.durableObjectEcho);
  const added = { p50: gatewaySummary.p50 - direct.p50, p99: gatewaySummary.p99 - direct.p99 };
  const floorCost = { p50: durableObjectEcho.p50, p99: durableObjectEcho.p99 };
  const ours = { p50: added.p50 - floorCost.p50, p99: added.p99 - floorCost.p99 };
  const data: OverheadData = { model: TINY_CHAT, iterations, direct, gateway: gatewaySummary, workerEcho, durableObjectEcho, added, floor: floorCost, ours };

  const ms = (value: { p50: number; p99: number }) => `p50 ${round(value.p50)} ms · p99 ${round(value.p99)} ms`;
  const section = `overhead (n=${iterations})`;
  return {
    data,
    rows: [
      { section, measure: "direct: agent --serve, 1-token completion", value: ms(direct) },
      { section, measure: "gateway: same agent via wrangler dev", value: ms(gatewaySummary) },
      { section, measure: "added = gateway − direct", value: ms(added) },
      { section, measure: "floor: bare Worker echo", value: ms(workerEcho) },
      { section, measure: "floor: Worker→DO→WebSocket→echo agent", value: ms(durableObjectEcho) },
      {
        section,
        measure: "ours = gateway − direct − floor",
        value: ms(ours),
        target: `≤ ${OVERHEAD_TARGET.p50} ms p50, ≤ ${OVERHEAD_TARGET.p99} ms p99`,
        met: ours.p50 <= OVERHEAD_TARGET.p50 && ours.p99 <= OVERHEAD_TARGET.p99,
      },
    ],
  };
}
