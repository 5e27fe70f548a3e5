/**
 * Concurrency: 4, 16 and 64 streams at once through the gateway, across two agents that both
 * hold the tiny model (4 slots each, so the rest wait in the gateway's queue): aggregate
 * tokens/s, per-stream TTFT, errors and fairness (slowest ÷ fastest stream).
 *
 * Interleaved with the same load sent straight to the two agents' direct ports by a client that
 * keeps 4 streams in flight per agent (what the gateway's queue does): the reference for what
 * batching alone does to aggregate speed and to fairness on this machine.
 */
import { decodeRate, timedPost, timedStream, type CompletionParams, type StreamTiming, type Target } from "./client.ts";
import { SLOTS, TINY_CHAT } from "./environment.ts";
import type { SectionContext, SectionResult } from "./section.ts";
import { round, summarize, type Summary } from "./stats.ts";
import { longStream } from "./throughput.ts";

export interface ConcurrencyRun {
  /** Completion tokens of every stream of every round ÷ the rounds' wall time. */
  aggregateTokensPerSecond: number;
  /** From the moment all streams were submitted, so waiting for a slot counts. */
  ttftMs: Summary;
  /** Per stream, tokens/s after its first token. */
  streamTokensPerSecond: Summary;
  /** Slowest ÷ fastest stream, by tokens/s after the first token. */
  fairness: number;
  /** The longest pause between two text events of any stream (ms). */
  maxGapMs: number;
  errors: number;
  errorMessages: string[];
  /** Streams served per node (gateway only). */
  nodes: Record<string, number>;
}

export interface ConcurrencyLevel {
  streams: number;
  rounds: number;
  maxTokens: number;
  gateway: ConcurrencyRun;
  /** The same streams straight to the agents, 4 in flight per agent. */
  direct: ConcurrencyRun;
  /**
   * Wall time for as many small requests at once to the floor's bare Worker echo (ms): what the
   * local runtime needs just to take in a burst, during which it relays nothing else.
   */
  floorBurstMs: number;
}

export type ConcurrencyData = ConcurrencyLevel[];

export const LEVELS = [4, 16, 64];
export const FAIRNESS_TARGET = 0.5;
const SETTLE_MS = 250;

type Outcome = PromiseSettledResult<StreamTiming>;

/** `streams` streams submitted at once to the gateway. */
function throughGateway(gateway: Target, params: CompletionParams, streams: number): Promise<Outcome[]> {
  return Promise.allSettled(Array.from({ length: streams }, () => timedStream(gateway, params)));
}

/** `streams` streams submitted at once, run `SLOTS` at a time per agent; TTFT counts the wait. */
async function straightToAgents(agents: Target[], params: CompletionParams, streams: number): Promise<Outcome[]> {
  const submitted = performance.now();
  let next = 0;
  const outcomes: Outcome[] = [];
  const worker = async (agent: Target) => {
    while (next < streams) {
      next += 1;
      const waited = performance.now() - submitted;
      try {
        const timing = await timedStream(agent, params);
        outcomes.push({ status: "fulfilled", value: { ...timing, ttftMs: timing.ttftMs + waited, totalMs: timing.totalMs + waited } });
      } catch (reason) {
        outcomes.push({ status: "rejected", reason });
      }
    }
  };
  // Workers alternate between the agents, so a few streams spread over both as the gateway spreads them.
  await Promise.all(Array.from({ length: SLOTS }, () => agents.map((agent) => worker(agent))).flat());
  return outcomes;
}

function summarizeRun(outcomes: Outcome[], wallMs: number): ConcurrencyRun {
  const timings = outcomes.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : []));
  const errorMessages = outcomes.flatMap((outcome) =>
    outcome.status === "rejected" ? [outcome.reason instanceof Error ? outcome.reason.message : String(outcome.reason)] : [],
  );
  const rates = summarize(timings.map(decodeRate).filter(Number.isFinite));
  const nodes: Record<string, number> = {};
  for (const timing of timings) if (timing.node !== undefined) nodes[timing.node] = (nodes[timing.node] ?? 0) + 1;
  return {
    aggregateTokensPerSecond: timings.reduce((sum, timing) => sum + timing.tokens, 0) / (wallMs / 1000),
    ttftMs: summarize(timings.map((timing) => timing.ttftMs)),
    streamTokensPerSecond: rates,
    fairness: rates.min / rates.max,
    maxGapMs: Math.max(0, ...timings.map((timing) => timing.maxGapMs)),
    errors: errorMessages.length,
    errorMessages: [...new Set(errorMessages)].slice(0, 5),
    nodes,
  };
}

export async function runConcurrency(context: SectionContext): Promise<SectionResult<ConcurrencyData>> {
  const { env, log, quick } = context;
  const dir = await env.tinyModelsDir();
  const nodes = await Promise.all([env.node("bench-a", [dir]), env.node("bench-b", [dir])]);
  await Promise.all(nodes.map((node) => env.load(node, TINY_CHAT)));
  const [gateway, floor] = await Promise.all([env.gatewayTarget(), env.floor()]);
  const agents = nodes.map((node) => node.direct);
  const rounds = context.iterations ?? (quick ? 1 : 2);
  const params = await longStream(agents[0]!, TINY_CHAT, quick ? 64 : 128, log);

  // Warm both paths of both agents before anything is timed.
  await throughGateway(gateway, params, 2 * SLOTS);
  await straightToAgents(agents, params, 2 * SLOTS);

  const data: ConcurrencyData = [];
  for (const streams of LEVELS) {
    const outcomes = { gateway: [] as Outcome[], direct: [] as Outcome[] };
    const wallMs = { gateway: 0, direct: 0 };
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? (["gateway", "direct"] as const) : (["direct", "gateway"] as const);
      for (const path of order) {
        // Let the agents' status pushes settle: the gateway counts direct-mode work as busy slots too.
        await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
        const started = performance.now();
        outcomes[path].push(...(path === "gateway" ? await throughGateway(gateway, params, streams) : await straightToAgents(agents, params, streams)));
        wallMs[path] += performance.now() - started;
      }
    }
    const burstStarted = performance.now();
    await Promise.all(Array.from({ length: streams }, () => timedPost(`${floor.url}/worker-echo`, { model: TINY_CHAT, prompt: "Hello" })));
    const floorBurstMs = performance.now() - burstStarted;
    const level: ConcurrencyLevel = {
      streams,
      rounds,
      maxTokens: params.maxTokens,
      gateway: summarizeRun(outcomes.gateway, wallMs.gateway),
      direct: summarizeRun(outcomes.direct, wallMs.direct),
      floorBurstMs,
    };
    data.push(level);
    for (const path of ["gateway", "direct"] as const) {
      const run = level[path];
      log(
        `concurrency ${streams} ${path}: ${round(run.aggregateTokensPerSecond)} tok/s, TTFT p50 ${round(run.ttftMs.p50)} ms p99 ${round(run.ttftMs.p99)} ms, ` +
          `slowest÷fastest ${run.fairness.toFixed(2)}, longest pause ${round(run.maxGapMs)} ms, errors ${run.errors}` +
          (path === "gateway" ? `, per node ${JSON.stringify(run.nodes)}; ${streams} requests at once to the bare floor Worker: ${round(floorBurstMs)} ms` : ""),
      );
    }
  }

  const section = `concurrency (2 agents × ${SLOTS} slots, ${params.maxTokens} tokens, ${rounds} round${rounds > 1 ? "s" : ""})`;
  const describe = (run: ConcurrencyRun) =>
    `${round(run.aggregateTokensPerSecond)} tok/s · ${round(run.ttftMs.p50)}/${round(run.ttftMs.p99)} ms · ${run.fairness.toFixed(2)} · ` +
    `${round(run.maxGapMs)} ms · ${run.errors}`;
  return {
    data,
    rows: data.flatMap((level) => {
      const last = level.streams === LEVELS[LEVELS.length - 1];
      return [
        {
          section,
          measure: `${level.streams} via gateway: aggregate · TTFT p50/p99 · slowest÷fastest · longest pause · errors`,
          value: describe(level.gateway),
          ...(last ? { target: `0 errors, ≥ ${FAIRNESS_TARGET}`, met: level.gateway.errors === 0 && level.gateway.fairness >= FAIRNESS_TARGET } : {}),
        },
        { section, measure: `${level.streams} direct (reference: ${SLOTS} in flight per agent)`, value: describe(level.direct) },
        { section, measure: `${level.streams} requests at once to the bare floor Worker: wall time`, value: `${round(level.floorBurstMs)} ms` },
      ];
    }),
  };
}
