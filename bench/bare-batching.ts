/**
 * What batching gains in node-llama-cpp itself, beside the engine section's agent and llama-server
 * figures: the small model on a context of 4 sequences (1 thread, as the agent loads it), one
 * stream alone, then 4 at once, three ways in one process, interleaved:
 * - *bare*: `LlamaCompletion`s, as the agent uses them, with no agent code around them;
 * - *agent engine*: the agent's `LoadedLlm` (no HTTP), sent the bench's completion request;
 * - *lockstep*: the sequences' `evaluate` generators advanced together, so every decode carries
 *   all of them: what node-llama-cpp's batching would do if it waited for every active sequence.
 * For each: tokens/s over the wall time, the process's CPU time per token (steadier than wall time
 * on a shared machine), how many sequences each llama.cpp decode carried and what it took, and
 * the share of the time the engine thread sat idle between decodes.
 *
 *   node bench/bare-batching.ts [--rounds N] [--tokens N]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, LlamaCompletion, LlamaLogLevel, LlamaModel, type LlamaContext, type LlamaContextSequence } from "node-llama-cpp";
import { AGENT_DEFAULTS } from "../node-agent/configuration/defaults.ts";
import { BENCH_SMALL_MODEL, ensureModel } from "../node-agent/demo-models/demo-models.ts";
import { LoadedLlm } from "../node-agent/engine/loaded-llm.ts";
import { CompletionRequest } from "../shared/protocol/request-schemas.ts";
import { BENCH_MODELS_DIR, ENGINE_THREADS, SLOTS } from "./environment.ts";
import { median, round } from "./stats.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" }, tokens: { type: "string", default: "64" } } });
const rounds = Number(values.rounds);
const maxTokens = Number(values.tokens);
/** A prompt the random-weight model answers at full length (see throughput.ts). */
const PROMPT = "tree house sea the";
/** As the agent loads the small model: min(trained context, its default) per slot. */
const CONTEXT_PER_SLOT = Math.min(BENCH_SMALL_MODEL.spec.contextLength, AGENT_DEFAULTS.contextLength);

interface Batches {
  /** Sequences in each decode. */
  sizes: number[];
  /** Each decode's duration, and the wait since the previous one ended (the engine thread idle), in ms. */
  decodeMs: number[];
  gapMs: number[];
}

/** Records every decode, through a proxy on node-llama-cpp's native context (an internal: this is a probe, not a dependency). */
function recordBatches(context: LlamaContext): Batches {
  const holder = context as unknown as { _ctx: object };
  const native = holder._ctx as Record<string, unknown>;
  const batches: Batches = { sizes: [], decodeMs: [], gapMs: [] };
  let items = 0;
  let lastEnd: number | null = null;
  holder._ctx = new Proxy(native, {
    get(target, key) {
      const value = target[key as string];
      if (typeof value !== "function") return value;
      if (key === "addToBatch") items++;
      if (key !== "decodeBatch") return value.bind(target);
      return async () => {
        const started = performance.now();
        if (lastEnd !== null && batches.sizes.length > 0) batches.gapMs.push(started - lastEnd);
        batches.sizes.push(items);
        items = 0;
        await (value as () => Promise<void>).call(target);
        lastEnd = performance.now();
        batches.decodeMs.push(lastEnd - started);
      };
    },
  });
  return batches;
}

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.warn });
await ensureModel(BENCH_MODELS_DIR, BENCH_SMALL_MODEL);
const modelPath = join(BENCH_MODELS_DIR, BENCH_SMALL_MODEL.path);
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ contextSize: CONTEXT_PER_SLOT, sequences: SLOTS, threads: ENGINE_THREADS });
const bareBatches = recordBatches(context);
const sequences: LlamaContextSequence[] = Array.from({ length: SLOTS }, () => context.getSequence());
const completions = sequences.map((sequence) => new LlamaCompletion({ contextSequence: sequence }));

// The engine's context is private to it: its batches are recorded where it is created.
let engineBatches: Batches = { sizes: [], decodeMs: [], gapMs: [] };
const createContext = LlamaModel.prototype.createContext;
LlamaModel.prototype.createContext = async function (this: LlamaModel, options) {
  const created = await createContext.call(this, options);
  engineBatches = recordBatches(created);
  return created;
};
const engine = await LoadedLlm.load(llama, {
  id: "bench-small",
  path: modelPath,
  contextLength: CONTEXT_PER_SLOT,
  slots: SLOTS,
  maxQueue: SLOTS,
  threads: ENGINE_THREADS,
  arch: "llama",
  quantization: "Q8_0",
  runtime: { name: "llama.cpp", version: "", supported_formats: ["gguf"] },
});
LlamaModel.prototype.createContext = createContext;

/** One bare `LlamaCompletion`: greedy, with the repeat penalty the agent applies by default. */
async function bare(streams: number): Promise<number> {
  const counts = await Promise.all(
    completions.slice(0, streams).map(async (completion) => {
      let tokens = 0;
      await completion.generateCompletion(PROMPT, { maxTokens, temperature: 0, seed: 1, repeatPenalty: { penalty: 1.1 }, onToken: () => void tokens++ });
      return tokens;
    }),
  );
  return counts.reduce((sum, count) => sum + count, 0);
}

/** The agent's engine without its HTTP server: the request the bench sends, its events consumed. */
async function agentEngine(streams: number): Promise<number> {
  const request = CompletionRequest.parse({ model: "bench-small", prompt: PROMPT, max_tokens: maxTokens, temperature: 0, seed: 1, stream: true });
  const counts = await Promise.all(
    Array.from({ length: streams }, async () => {
      let tokens = 0;
      for await (const event of engine.completion(request, new AbortController().signal)) {
        if (event.type === "done") tokens = event.result.usage.completion_tokens;
      }
      return tokens;
    }),
  );
  return counts.reduce((sum, count) => sum + count, 0);
}

/** The sequences' next tokens asked for together, so each decode holds every running sequence. */
async function lockstep(streams: number): Promise<number> {
  const prompt = model.tokenize(PROMPT);
  const running = sequences.slice(0, streams);
  for (const sequence of running) await sequence.clearHistory();
  const iterators = running.map((sequence) =>
    sequence.evaluate(prompt, { temperature: 0, repeatPenalty: { penalty: 1.1, punishTokens: () => sequence.contextTokens.slice(-64) } })[Symbol.asyncIterator](),
  );
  let tokens = 0;
  let live = iterators;
  for (let step = 0; step < maxTokens && live.length > 0; step++) {
    const results = await Promise.all(live.map((iterator) => iterator.next()));
    live = live.filter((_, index) => results[index]?.done !== true);
    tokens += live.length;
  }
  await Promise.all(iterators.map((iterator) => iterator.return?.()));
  return tokens;
}

interface Variant {
  name: string;
  generate: (streams: number) => Promise<number>;
  batches: () => Batches;
}

interface Run {
  tokensPerSecond: number;
  cpuMsPerToken: number;
  batches: Batches;
}

async function run(variant: Variant, streams: number): Promise<Run> {
  const batches = variant.batches();
  for (const list of [batches.sizes, batches.decodeMs, batches.gapMs]) list.length = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const tokens = await variant.generate(streams);
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  return { tokensPerSecond: tokens / seconds, cpuMsPerToken: (used.user + used.system) / 1000 / tokens, batches: structuredClone(batches) };
}

/** Sequences per decode (sequences:count×median ms) and the engine thread's idle share between decodes. */
function describe(result: Run): string {
  const { batches } = result;
  const bySize = new Map<number, number[]>();
  batches.sizes.forEach((size, index) => bySize.set(size, [...(bySize.get(size) ?? []), batches.decodeMs[index] as number]));
  const decodes = [...bySize].sort(([a], [b]) => a - b).map(([size, ms]) => `${size}:${ms.length}×${round(median(ms))}`);
  const busy = batches.decodeMs.reduce((sum, ms) => sum + ms, 0);
  const idle = batches.gapMs.reduce((sum, ms) => sum + ms, 0);
  return `${round(result.tokensPerSecond)} tok/s, CPU ${round(result.cpuMsPerToken)} ms/token; decodes (sequences:count×median ms) ${decodes.join(" ")}; idle ${Math.round((100 * idle) / (busy + idle))}%`;
}

const variants: Variant[] = [
  { name: "bare node-llama-cpp", generate: bare, batches: () => bareBatches },
  { name: "agent engine (LoadedLlm, no HTTP)", generate: agentEngine, batches: () => engineBatches },
  { name: "lockstep (full batches)", generate: lockstep, batches: () => bareBatches },
];
const results = new Map(variants.map((variant) => [variant.name, { single: [] as Run[], together: [] as Run[] }]));
for (const variant of variants) await run(variant, 1);
for (let index = 0; index < rounds; index++) {
  // Interleaved, and the order turns each round, so drift on a shared machine hits all alike.
  const order = variants.map((_, offset) => variants[(index + offset) % variants.length] as Variant);
  for (const variant of order) {
    const alone = await run(variant, 1);
    const together = await run(variant, SLOTS);
    results.get(variant.name)?.single.push(alone);
    results.get(variant.name)?.together.push(together);
    console.log(`round ${index + 1}, ${variant.name}, 1 stream: ${describe(alone)}`);
    console.log(`round ${index + 1}, ${variant.name}, ${SLOTS} at once: ${describe(together)}`);
  }
}
console.log(`\nmedians of ${rounds} rounds (${maxTokens} tokens a stream, ${SLOTS} sequences, ${ENGINE_THREADS} thread); ${SLOTS} at once ÷ 1 stream, per round:`);
for (const [name, { single, together }] of results) {
  const rates = together.map((run_, index) => run_.tokensPerSecond / (single[index] as Run).tokensPerSecond);
  const cpu = together.map((run_, index) => (single[index] as Run).cpuMsPerToken / run_.cpuMsPerToken);
  console.log(
    `${name}: tok/s ${round(median(single.map((r) => r.tokensPerSecond)))} → ${round(median(together.map((r) => r.tokensPerSecond)))} = ×${median(rates).toFixed(2)} [${rates.map((r) => r.toFixed(2)).join(", ")}]; ` +
      `CPU ms/token ${round(median(single.map((r) => r.cpuMsPerToken)))} → ${round(median(together.map((r) => r.cpuMsPerToken)))} = tokens per CPU-s ×${median(cpu).toFixed(2)} [${cpu.map((r) => r.toFixed(2)).join(", ")}]`,
  );
}
await engine.dispose();
await context.dispose();
await model.dispose();
