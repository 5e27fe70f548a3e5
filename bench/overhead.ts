/**
 * Gateway overhead: a non-streaming 1-token completion through the gateway vs the agent's direct
 * mode (the same agent process, so the same engine), and in the same run the platform floor —
 * a bare Worker echo and a Worker → Durable Object → WebSocket → echo agent round trip on the
 * same runtime. Two early refusals of the gateway split its cost into parts: no key (401 from
 * the Worker's middleware) and an unknown model (404 from the Fleet: validation and the RPC, no
 * node). Every path is interleaved, one request each per round. Then each path that runs in
 * workerd runs once more as a block, to read the runtime's CPU time per request.
 */
import { timedCompletion, timedPost, type CompletionParams } from "./client.ts";
import { TINY_CHAT } from "./environment.ts";
import { withProgress, type SectionContext, type SectionResult } from "./section.ts";
import { round, summarize, type Summary } from "./stats.ts";
import { workerdCpuClock } from "./workerd-cpu.ts";

const PATHS = [
  "direct",
  "gateway",
  "workerEcho",
  "durableObjectEcho",
  "durableObjectStreamEcho",
  "assetsWorkerEcho",
  "gatewayNoKey",
  "gatewayUnknownModel",
] as const;
type PathName = (typeof PATHS)[number];
type WorkerdPath = Exclude<PathName, "direct">;
const WORKERD_PATHS = PATHS.filter((path): path is WorkerdPath => path !== "direct");

interface Span {
  p50: number;
  p99: number;
}

export interface OverheadData extends Record<PathName, Summary> {
  model: string;
  iterations: number;
  /** gateway − direct. */
  added: Span;
  /** The Worker → DO → WebSocket → agent round trip: what any design on this runtime pays. */
  floor: Span;
  /** added − floor: the gateway's own cost. */
  ours: Span;
  /** ours − (assetsWorkerEcho − workerEcho): without the static-assets layer, which is the platform's code. */
  oursWithoutAssetsLayer: Span;
  /** p50 differences that say where `ours` goes (ms); they add up to `ours.p50`. */
  breakdown: {
    /** assetsWorkerEcho − workerEcho: the static-assets layer the dashboard puts in front of every request. */
    assetsLayer: number;
    /** gatewayNoKey − assetsWorkerEcho: Hono, routing and middleware up to the key check. */
    workerMiddleware: number;
    /** gatewayUnknownModel − gatewayNoKey: key check, body validation, the Fleet RPC and its answer. */
    validationAndFleetRpc: number;
    /** gateway − gatewayUnknownModel − direct: the node hop and the agent's gateway-mode path, less direct mode's HTTP path. */
    nodeHop: number;
    /** durableObjectEcho − workerEcho: the same hop on the floor (DO RPC + WebSocket round trip). */
    floorHop: number;
  };
  /**
   * CPU time of all workerd processes per request (ms), each path run alone as a block; null
   * where /proc is not there. `oursCpu` = gateway − floor DO echo − the [assets] layer's CPU.
   */
  workerdCpuPerRequest: (Record<WorkerdPath, number> & { oursCpu: number }) | null;
}

export const OVERHEAD_TARGET = { p50: 1, p99: 5 };

const WARMUP = 20;
/** /proc counts CPU in 10 ms ticks: a block needs this many requests to rise well above one. */
const MIN_CPU_BLOCK = 50;

export async function runOverhead(context: SectionContext): Promise<SectionResult<OverheadData>> {
  const { env, log } = context;
  const iterations = context.iterations ?? (context.quick ? 100 : 800);
  const node = await env.node("bench-a", [await env.tinyModelsDir()]);
  const [gateway, floor] = await Promise.all([env.gatewayTarget(), env.floor()]);
  await env.load(node, TINY_CHAT);

  const params: CompletionParams = { model: TINY_CHAT, prompt: "Hello", maxTokens: 1 };
  const body = { model: TINY_CHAT, prompt: "Hello", max_tokens: 1 };
  const run: Record<PathName, () => Promise<number>> = {
    direct: () => timedCompletion(node.direct, params),
    gateway: () => timedCompletion(gateway, params),
    workerEcho: () => timedPost(`${floor.url}/worker-echo`, body),
    durableObjectEcho: () => timedPost(`${floor.url}/echo`, body),
    durableObjectStreamEcho: () => timedPost(`${floor.url}/echo-stream`, body),
    assetsWorkerEcho: () => timedPost(`${floor.assetsUrl}/worker-echo`, body),
    gatewayNoKey: () => timedPost(`${gateway.url}/v1/completions`, body, { expectStatus: 401 }),
    gatewayUnknownModel: () =>
      timedPost(`${gateway.url}/v1/completions`, { ...body, model: "bench-no-such-model" }, { apiKey: gateway.apiKey, expectStatus: 404 }),
  };
  const samples = Object.fromEntries(PATHS.map((path) => [path, [] as number[]])) as Record<PathName, number[]>;

  log(`overhead: warming up (${WARMUP} requests per path)`);
  for (let index = 0; index < WARMUP; index++) for (const path of PATHS) await run[path]();

  log(`overhead: ${iterations} rounds of ${PATHS.join(", ")} (1-token completion on ${TINY_CHAT})`);
  await withProgress("overhead", iterations, log, async (index) => {
    // Interleaved, and the starting path rotates so none always follows the same one.
    for (let offset = 0; offset < PATHS.length; offset++) {
      const path = PATHS[(index + offset) % PATHS.length] as PathName;
      samples[path].push(await run[path]());
    }
  });

  const workerdCpuPerRequest = await measureWorkerdCpu(run, Math.max(MIN_CPU_BLOCK, context.iterations ?? (context.quick ? 100 : 300)), log);

  const s = Object.fromEntries(PATHS.map((path) => [path, summarize(samples[path])])) as Record<PathName, Summary>;
  const added = { p50: s.gateway.p50 - s.direct.p50, p99: s.gateway.p99 - s.direct.p99 };
  const floorCost = { p50: s.durableObjectEcho.p50, p99: s.durableObjectEcho.p99 };
  const ours = { p50: added.p50 - floorCost.p50, p99: added.p99 - floorCost.p99 };
  const oursWithoutAssetsLayer = {
    p50: ours.p50 - (s.assetsWorkerEcho.p50 - s.workerEcho.p50),
    p99: ours.p99 - (s.assetsWorkerEcho.p99 - s.workerEcho.p99),
  };
  const breakdown = {
    assetsLayer: s.assetsWorkerEcho.p50 - s.workerEcho.p50,
    workerMiddleware: s.gatewayNoKey.p50 - s.assetsWorkerEcho.p50,
    validationAndFleetRpc: s.gatewayUnknownModel.p50 - s.gatewayNoKey.p50,
    nodeHop: s.gateway.p50 - s.gatewayUnknownModel.p50 - s.direct.p50,
    floorHop: s.durableObjectEcho.p50 - s.workerEcho.p50,
  };
  const data: OverheadData = { model: TINY_CHAT, iterations, ...s, added, floor: floorCost, ours, oursWithoutAssetsLayer, breakdown, workerdCpuPerRequest };

  const ms = (value: Span) => `p50 ${round(value.p50)} ms · p99 ${round(value.p99)} ms`;
  const section = `overhead (n=${iterations})`;
  return {
    data,
    rows: [
      { section, measure: "direct: agent --serve, 1-token completion", value: ms(s.direct) },
      { section, measure: "gateway: same agent via wrangler dev", value: ms(s.gateway) },
      { section, measure: "added = gateway − direct", value: ms(added) },
      { section, measure: "floor: bare Worker echo", value: ms(s.workerEcho) },
      { section, measure: "floor: Worker→DO→WebSocket→echo agent", value: ms(s.durableObjectEcho) },
      { section, measure: "  the same, answer as an RPC byte stream", value: ms(s.durableObjectStreamEcho) },
      {
        section,
        measure: "ours = gateway − direct − floor",
        value: ms(ours),
        target: `≤ ${OVERHEAD_TARGET.p50} ms p50, ≤ ${OVERHEAD_TARGET.p99} ms p99`,
        met: ours.p50 <= OVERHEAD_TARGET.p50 && ours.p99 <= OVERHEAD_TARGET.p99,
      },
      {
        section,
        measure: "ours less the [assets] layer (the dashboard's static-assets router)",
        value: ms(oursWithoutAssetsLayer),
        target: `≤ ${OVERHEAD_TARGET.p50} ms p50, ≤ ${OVERHEAD_TARGET.p99} ms p99`,
        met: oursWithoutAssetsLayer.p50 <= OVERHEAD_TARGET.p50 && oursWithoutAssetsLayer.p99 <= OVERHEAD_TARGET.p99,
      },
      {
        section,
        measure: "p50 of: Worker echo behind [assets] · gateway 401 (no key) · 404 (unknown model)",
        value: `${round(s.assetsWorkerEcho.p50)} · ${round(s.gatewayNoKey.p50)} · ${round(s.gatewayUnknownModel.p50)} ms`,
      },
      {
        section,
        measure: "ours at p50 = [assets] layer + middleware + validation & Fleet RPC + node hop − floor hop",
        value:
          `${round(breakdown.assetsLayer)} + ${round(breakdown.workerMiddleware)} + ${round(breakdown.validationAndFleetRpc)} + ` +
          `${round(breakdown.nodeHop)} − ${round(breakdown.floorHop)} ms`,
      },
      ...(workerdCpuPerRequest === null
        ? []
        : [
            {
              section,
              measure: "workerd CPU per request: Worker echo · behind [assets] · DO echo · 401 · 404 · gateway",
              value:
                `${round(workerdCpuPerRequest.workerEcho)} · ${round(workerdCpuPerRequest.assetsWorkerEcho)} · ` +
                `${round(workerdCpuPerRequest.durableObjectEcho)} · ${round(workerdCpuPerRequest.gatewayNoKey)} · ` +
                `${round(workerdCpuPerRequest.gatewayUnknownModel)} · ${round(workerdCpuPerRequest.gateway)} ms`,
            },
            {
              section,
              measure: "ours in CPU = gateway − DO echo − [assets] layer",
              value: `${round(workerdCpuPerRequest.oursCpu)} ms per request`,
            },
          ]),
    ],
  };
}

/** Runs each workerd path as a block of `count` requests and divides the runtime's CPU time among them. */
async function measureWorkerdCpu(
  run: Record<PathName, () => Promise<number>>,
  count: number,
  log: (message: string) => void,
): Promise<OverheadData["workerdCpuPerRequest"]> {
  const cpuMs = workerdCpuClock();
  if (cpuMs === null) return null;
  log(`overhead: workerd CPU time, ${count} requests per path`);
  const perRequest = {} as Record<WorkerdPath, number>;
  for (const path of WORKERD_PATHS) {
    const before = cpuMs();
    for (let index = 0; index < count; index++) await run[path]();
    perRequest[path] = (cpuMs() - before) / count;
  }
  const assetsLayer = perRequest.assetsWorkerEcho - perRequest.workerEcho;
  return { ...perRequest, oursCpu: perRequest.gateway - perRequest.durableObjectEcho - assetsLayer };
}
