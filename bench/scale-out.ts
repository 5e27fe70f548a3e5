/**
 * Scale-out: 16 streams at once for the small model while only one of the two agents has it
 * loaded: the gateway loads a second copy on the other agent and uses both, against the same
 * streams sent to the one agent. The second copy's load counts in the gateway's wall time.
 */
import { timedStream, type CompletionParams, type Target } from "./client.ts";
import { SMALL_CHAT } from "./environment.ts";
import { withProgress, type SectionContext, type SectionResult } from "./section.ts";
import { median, round } from "./stats.ts";
import { longStream } from "./throughput.ts";

export const SCALE_OUT_TARGET = 1.6;
const STREAMS = 16;

export interface ScaleOutData {
  streams: number;
  maxTokens: number;
  rounds: number;
  oneAgentTokensPerSecond: number;
  gatewayTokensPerSecond: number;
  ratio: number;
  /** Streams served per node, per gateway round. */
  nodes: Array<Record<string, number>>;
  /** Per gateway round, ms from the burst's start to the first text from the second copy: its placement and load. */
  secondCopyFirstTextMs: Array<number | null>;
  /** Failed streams, both paths, all rounds (e.g. the gateway's 30 s wait for a slot on a starved machine). */
  errors: string[];
}

interface Burst {
  tokensPerSecond: number;
  nodes: Record<string, number>;
  /** The earliest first text per node, ms from the burst's start. */
  firstTextMs: Record<string, number>;
  errors: string[];
}

/** `STREAMS` streams at once; aggregate tokens/s over the wall time, who served them, and what failed. */
async function burst(target: Target, params: CompletionParams): Promise<Burst> {
  const started = performance.now();
  const outcomes = await Promise.allSettled(Array.from({ length: STREAMS }, () => timedStream(target, params)));
  const wallSeconds = (performance.now() - started) / 1000;
  const nodes: Record<string, number> = {};
  const firstTextMs: Record<string, number> = {};
  let tokens = 0;
  const errors: string[] = [];
  for (const outcome of outcomes) {
    if (outcome.status === "rejected") {
      errors.push(outcome.reason instanceof Error ? outcome.reason.message : String(outcome.reason));
      continue;
    }
    const { node, ttftMs } = outcome.value;
    tokens += outcome.value.tokens;
    if (node === undefined) continue;
    nodes[node] = (nodes[node] ?? 0) + 1;
    firstTextMs[node] = Math.min(firstTextMs[node] ?? Infinity, ttftMs);
  }
  return { tokensPerSecond: tokens / wallSeconds, nodes, firstTextMs, errors };
}

export async function runScaleOut(context: SectionContext): Promise<SectionResult<ScaleOutData>> {
  const { env, log, quick } = context;
  const dir = await env.smallModelsDir();
  const [loaded, spare] = await Promise.all([env.node("bench-small", [dir]), env.node("bench-small-2", [dir])]);
  await env.load(loaded, SMALL_CHAT);
  const gateway = await env.gatewayTarget();
  // Long enough that the second copy's load (a few seconds) does not dominate the gateway's wall time.
  const maxTokens = quick ? 8 : 64;
  const params = await longStream(loaded.direct, SMALL_CHAT, maxTokens, log);
  const rounds = context.iterations ?? (quick ? 1 : 2);
  const one: number[] = [];
  const both: number[] = [];
  const nodes: Array<Record<string, number>> = [];
  const secondCopyFirstTextMs: Array<number | null> = [];
  const errors: string[] = [];
  await withProgress("scale-out", rounds, log, async (index) => {
    const order = index % 2 === 0 ? ["gateway", "one"] : ["one", "gateway"];
    for (const path of order) {
      if (path === "one") {
        const result = await burst(loaded.direct, params);
        one.push(result.tokensPerSecond);
        errors.push(...result.errors);
        continue;
      }
      // Only `loaded` has the model: the gateway has to place a second copy to use the other agent.
      await env.unload(spare, SMALL_CHAT);
      const result = await burst(gateway, params);
      both.push(result.tokensPerSecond);
      nodes.push(result.nodes);
      secondCopyFirstTextMs.push(result.firstTextMs[spare.name] ?? null);
      errors.push(...result.errors);
      log(
        `scale-out: ${round(result.tokensPerSecond)} tok/s through the gateway, per node ${JSON.stringify(result.nodes)}, ` +
          `first text per node ${JSON.stringify(result.firstTextMs)} ms, errors ${result.errors.length}`,
      );
    }
  });
  const oneAgent = median(one);
  const gatewayRate = median(both);
  const data: ScaleOutData = {
    streams: STREAMS,
    maxTokens,
    rounds,
    oneAgentTokensPerSecond: oneAgent,
    gatewayTokensPerSecond: gatewayRate,
    ratio: gatewayRate / oneAgent,
    nodes,
    secondCopyFirstTextMs,
    errors,
  };
  const bothServed = nodes.every((perNode) => Object.keys(perNode).length >= 2);
  const secondCopy = secondCopyFirstTextMs.map((ms) => (ms === null ? "never" : `${round(ms / 1000)} s`)).join(", ");
  return {
    data,
    rows: [
      {
        section: `scale-out (${STREAMS} streams at once, ${maxTokens} tokens, model loaded on 1 of 2 agents)`,
        measure: "one agent → gateway aggregate tok/s; streams per node; second copy's first text; errors",
        value:
          `${round(oneAgent)} → ${round(gatewayRate)} tok/s = ×${data.ratio.toFixed(2)}; ` +
          `${nodes.map((perNode) => JSON.stringify(perNode)).join(", ")}; ${secondCopy}; errors ${errors.length}`,
        target: `≥ ×${SCALE_OUT_TARGET}, both agents serve, 0 errors`,
        met: data.ratio >= SCALE_OUT_TARGET && bothServed && errors.length === 0,
      },
    ],
  };
}
