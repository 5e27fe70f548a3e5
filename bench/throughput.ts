/**
 * Streaming throughput: one long stream at a time through the gateway vs the agent's direct mode
 * (the same agent, so the same engine), A B A B …, on the tiny model — where per-token costs show
 * most — and on the ~0.5 B synthetic model, which is compute-bound like a real small model.
 */
import { decodeRate, endToEndRate, promptForFullLength, timedStream, type CompletionParams, type StreamTiming, type Target } from "./client.ts";
import { SMALL_CHAT, TINY_CHAT } from "./environment.ts";
import { withProgress, type SectionContext, type SectionResult } from "./section.ts";
import { median, round } from "./stats.ts";

export interface PathThroughput {
  /** Median tokens/s after the first token, per stream. */
  decodeTokensPerSecond: number;
  /** Median tokens/s over the whole request, TTFT included. */
  endToEndTokensPerSecond: number;
  ttftMs: number;
  tokens: number;
  /** Median SSE events that carried text, per stream (the gateway coalesces tokens into fewer). */
  textEvents: number;
  runs: StreamTiming[];
}

export interface ModelThroughput {
  model: string;
  maxTokens: number;
  direct: PathThroughput;
  gateway: PathThroughput;
  /** gateway ÷ direct, decode tokens/s. */
  ratio: number;
}

export type ThroughputData = ModelThroughput[];

export const TINY_STREAM_TARGET = 0.95;
/** Prompts to try, in order, until one makes the random-weight model generate the full length. */
const PROMPTS = ["tree house sea the", "Once upon a time, in a land far away,", "Tell me a story.", "world", "a"];

/** Completion parameters whose prompt generates `maxTokens` tokens of `model` on `target`, or as many as any does. */
export async function longStream(target: Target, model: string, maxTokens: number, log: (message: string) => void): Promise<CompletionParams> {
  const { prompt, tokens } = await promptForFullLength(target, model, maxTokens, PROMPTS);
  if (tokens < maxTokens) log(`note: no prompt makes ${model} generate ${maxTokens} tokens; the longest gives ${tokens}`);
  return { model, prompt, maxTokens };
}

function summarizePath(runs: StreamTiming[]): PathThroughput {
  return {
    decodeTokensPerSecond: median(runs.map(decodeRate)),
    endToEndTokensPerSecond: median(runs.map(endToEndRate)),
    ttftMs: median(runs.map((run) => run.ttftMs)),
    tokens: median(runs.map((run) => run.tokens)),
    textEvents: median(runs.map((run) => run.textEvents)),
    runs,
  };
}

/** Streams through `a` and `b` alternately, `pairs` times each (the first of each pair alternates too). */
export async function interleavedStreams(
  label: string,
  a: Target,
  b: Target,
  params: CompletionParams,
  pairs: number,
  log: (message: string) => void,
): Promise<[StreamTiming[], StreamTiming[]]> {
  const runsA: StreamTiming[] = [];
  const runsB: StreamTiming[] = [];
  await timedStream(a, params);
  await timedStream(b, params);
  await withProgress(label, pairs, log, async (index) => {
    if (index % 2 === 0) {
      runsA.push(await timedStream(a, params));
      runsB.push(await timedStream(b, params));
    } else {
      runsB.push(await timedStream(b, params));
      runsA.push(await timedStream(a, params));
    }
  });
  return [runsA, runsB];
}

export async function runThroughput(context: SectionContext): Promise<SectionResult<ThroughputData>> {
  const { env, log, quick } = context;
  const gateway = await env.gatewayTarget();
  const cases = [
    { model: TINY_CHAT, nodeName: "bench-a", dirs: async () => [await env.tinyModelsDir()], maxTokens: quick ? 256 : 1000, pairs: quick ? 3 : 8 },
    { model: SMALL_CHAT, nodeName: "bench-small", dirs: async () => [await env.smallModelsDir()], maxTokens: quick ? 16 : 64, pairs: quick ? 1 : 5 },
  ];
  const data: ThroughputData = [];
  const rows: SectionResult["rows"] = [];
  for (const testCase of cases) {
    const node = await env.node(testCase.nodeName, await testCase.dirs());
    await env.load(node, testCase.model);
    const params = await longStream(node.direct, testCase.model, testCase.maxTokens, log);
    const pairs = context.iterations ?? testCase.pairs;
    log(`throughput: ${testCase.model}, ${pairs} × (direct, gateway), max_tokens ${testCase.maxTokens}`);
    const [directRuns, gatewayRuns] = await interleavedStreams(`throughput ${testCase.model}`, node.direct, gateway, params, pairs, log);
    const direct = summarizePath(directRuns);
    const viaGateway = summarizePath(gatewayRuns);
    const ratio = viaGateway.decodeTokensPerSecond / direct.decodeTokensPerSecond;
    data.push({ model: testCase.model, maxTokens: testCase.maxTokens, direct, gateway: viaGateway, ratio });
    const tiny = testCase.model === TINY_CHAT;
    rows.push({
      section: `streaming (n=${pairs} pairs)`,
      measure: `${testCase.model}: direct → gateway tok/s (${direct.tokens} tokens; TTFT ${round(direct.ttftMs)} → ${round(viaGateway.ttftMs)} ms)`,
      value: `${round(direct.decodeTokensPerSecond)} → ${round(viaGateway.decodeTokensPerSecond)} tok/s = ×${ratio.toFixed(2)}`,
      ...(tiny ? { target: `≥ ×${TINY_STREAM_TARGET}`, met: ratio >= TINY_STREAM_TARGET } : {}),
    });
  }
  return { data, rows };
}
