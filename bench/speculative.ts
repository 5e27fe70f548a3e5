/**
 * Speculative decoding (`draft_model`, `prompt_lookup`) on the agent's direct mode, side by side
 * with the same requests without it. The generated models have random weights, so the pairs are
 * built for a known agreement (node-agent/demo-models/speculative-pairs.ts): a target whose extra
 * layers add nothing answers exactly as its draft (every drafted token accepted, at greedy
 * decoding), a stranger of the draft's size agrees with it by chance only. Prompt lookup: a
 * 1,000-token prompt the answer copies (the model made to copy by logit_bias), and the same prompt
 * answered without copying (the machinery's cost when every lookup is wrong). Then llama-server's `--model-draft` on the same pair.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { ensureModel } from "../node-agent/demo-models/demo-models.ts";
import { BENCH_SPECULATIVE } from "../node-agent/demo-models/speculative-pairs.ts";
import { freePort } from "../scripts/wrangler-dev.ts";
import { decodeRate, timedStream, type CompletionParams, type StreamTiming, type Target } from "./client.ts";
import { BENCH_MODELS_DIR, ENGINE_THREADS, modelId, stopChild, until } from "./environment.ts";
import { withProgress, type Row, type SectionContext, type SectionResult } from "./section.ts";
import { median, round } from "./stats.ts";

const TARGET = modelId(BENCH_SPECULATIVE.target.path);
const DRAFT = modelId(BENCH_SPECULATIVE.draft.path);
const STRANGER = modelId(BENCH_SPECULATIVE.stranger.path);

export const AGREEING_TARGET = 1.8;
export const DISAGREEING_TARGET = 0.9;
const SECTION = "speculative decoding";

/** Greedy, no repetition penalty: the draft sees the model's penalties only for tokens already accepted. */
const GREEDY = { repeat_penalty: 1 };
/** Token "a" of the generated vocabulary: +100 makes the model write it, so its answer copies a prompt of it. */
const COPY = { logit_bias: { "395": 100 } };
/**
 * Tokens 395–414 of the generated vocabulary (letters a to j, alone and word-initial): the model
 * picks among them by its own logits, so every run generates max_tokens (the draft is biased alike).
 */
const LETTERS = { logit_bias: Object.fromEntries(Array.from({ length: 20 }, (_, index) => [String(395 + index), 100])) };
const LOOKUP_PROMPT_TOKENS = 1000;

interface Comparison {
  withoutTokensPerSecond: number;
  withTokensPerSecond: number;
  ratio: number;
  counts?: Record<string, unknown>;
}

export interface SpeculativeData {
  target: string;
  draft: string;
  stranger: string;
  maxTokens: number;
  pairs: number;
  agreeing: Comparison;
  disagreeing: Comparison;
  promptLookupCopying: Comparison;
  promptLookupNotCopying: Comparison;
  llamaServer?: { skipped?: string; binary?: string; tokensPerSecond?: number; agentTokensPerSecond?: number; ratio?: number; drafted?: number; accepted?: number };
}

/** LM Studio's counters of one non-streamed run (`/api/v0/completions`). */
async function counts(target: Target, params: CompletionParams): Promise<Record<string, unknown>> {
  const response = await fetch(`${target.url}/api/v0/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: params.model, prompt: params.prompt, max_tokens: params.maxTokens, temperature: 0, ...params.extra }),
    signal: AbortSignal.timeout(300_000),
  });
  const body = (await response.json()) as { stats?: Record<string, unknown> };
  const { tokens_per_second, time_to_first_token, generation_time, stop_reason, cached_prompt_tokens, ...drafted } = body.stats ?? {};
  return drafted;
}

/** Each of `variants` once per round, in an order that rotates, `pairs` rounds; the median decode rate of each. */
async function sideBySide(label: string, target: Target, variants: CompletionParams[], pairs: number, log: (message: string) => void): Promise<number[]> {
  const runs: StreamTiming[][] = variants.map(() => []);
  for (const params of variants) await timedStream(target, params);
  await withProgress(label, pairs, log, async (round) => {
    for (let turn = 0; turn < variants.length; turn++) {
      const index = (round + turn) % variants.length;
      (runs[index] as StreamTiming[]).push(await timedStream(target, variants[index] as CompletionParams));
    }
  });
  return runs.map((timings) => median(timings.map(decodeRate)));
}

/** A text of about `tokens` tokens that `model` writes for `extra` (as its next prompt). */
async function generatedText(target: Target, model: string, tokens: number, extra: Record<string, unknown>): Promise<string> {
  const response = await fetch(`${target.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt: "Once upon a time", max_tokens: tokens, temperature: 0, ...GREEDY, ...extra }),
    signal: AbortSignal.timeout(300_000),
  });
  if (!response.ok) throw new Error(`generating a prompt: HTTP ${response.status}: ${await response.text()}`);
  const body = (await response.json()) as { choices: Array<{ text: string }> };
  return body.choices[0]?.text ?? "";
}

const compare = (without: number, withIt: number, extra: Partial<Comparison> = {}): Comparison => ({
  withoutTokensPerSecond: without,
  withTokensPerSecond: withIt,
  ratio: withIt / without,
  ...extra,
});

export async function runSpeculative(context: SectionContext): Promise<SectionResult<SpeculativeData>> {
  const { env, log, quick } = context;
  for (const model of [BENCH_SPECULATIVE.target, BENCH_SPECULATIVE.draft, BENCH_SPECULATIVE.stranger]) {
    await ensureModel(BENCH_MODELS_DIR, model, { onProgress: (message) => log(`models: ${message}`) });
  }
  const node = await env.node("speculative", [join(BENCH_MODELS_DIR, "lmgate/spec-bench-GGUF")]);
  for (const model of [TARGET, DRAFT, STRANGER]) await env.load(node, model);
  const direct = node.direct;
  const maxTokens = quick ? 32 : 96;
  const pairs = context.iterations ?? (quick ? 1 : 3);

  const base: CompletionParams = { model: TARGET, prompt: "Once upon a time", maxTokens, extra: { ...GREEDY, ...LETTERS } };
  const drafted = (draft: string): CompletionParams => ({ ...base, extra: { ...base.extra, draft_model: draft } });
  log(`speculative: ${TARGET} alone, with ${DRAFT} (agrees), with ${STRANGER} (disagrees); ${pairs} rounds, max_tokens ${maxTokens}`);
  const [plain, agreeing, disagreeing] = await sideBySide("speculative draft", direct, [base, drafted(DRAFT), drafted(STRANGER)], pairs, log);

  // Prompt lookup on the draft-sized model: a 1,000-token prompt is quick to evaluate there.
  log(`speculative: prompt lookup, ${LOOKUP_PROMPT_TOKENS}-token prompts on ${DRAFT}`);
  const copied = await generatedText(direct, DRAFT, LOOKUP_PROMPT_TOKENS, COPY);
  const lookup = (prompt: string, extra: Record<string, unknown>, on: boolean): CompletionParams => ({
    model: DRAFT,
    prompt,
    maxTokens,
    extra: { ...GREEDY, ...extra, prompt_lookup: on },
  });
  const [copyWithout, copyWith] = await sideBySide("prompt lookup (copying)", direct, [lookup(copied, COPY, false), lookup(copied, COPY, true)], pairs, log);
  // The same prompt, answered without copying: every lookup finds a continuation in it that the model rejects.
  const [freeWithout, freeWith] = await sideBySide("prompt lookup (not copying)", direct, [lookup(copied, LETTERS, false), lookup(copied, LETTERS, true)], pairs, log);

  const data: SpeculativeData = {
    target: TARGET,
    draft: DRAFT,
    stranger: STRANGER,
    maxTokens,
    pairs,
    agreeing: compare(plain as number, agreeing as number, { counts: await counts(direct, drafted(DRAFT)) }),
    disagreeing: compare(plain as number, disagreeing as number, { counts: await counts(direct, drafted(STRANGER)) }),
    promptLookupCopying: compare(copyWithout as number, copyWith as number, { counts: await counts(direct, lookup(copied, COPY, true)) }),
    promptLookupNotCopying: compare(freeWithout as number, freeWith as number, { counts: await counts(direct, lookup(copied, LETTERS, true)) }),
  };
  data.llamaServer = await againstLlamaServer(context, direct, drafted(DRAFT), pairs);
  return { data, rows: rows(data) };
}

/** llama-server with `--model-draft` on the same pair and settings, interleaved with the agent with `draft_model`. */
async function againstLlamaServer(
  context: SectionContext,
  agent: Target,
  params: CompletionParams,
  pairs: number,
): Promise<SpeculativeData["llamaServer"]> {
  const binary = process.env.LLAMA_SERVER;
  if (binary === undefined || binary === "") return { skipped: "LLAMA_SERVER is not set" };
  const port = await freePort();
  const dir = BENCH_MODELS_DIR;
  const args = [
    ["-m", join(dir, BENCH_SPECULATIVE.target.path), "--model-draft", join(dir, BENCH_SPECULATIVE.draft.path)],
    ["--host", "127.0.0.1", "--port", String(port), "--no-webui"],
    ["-t", String(ENGINE_THREADS), "-tb", String(ENGINE_THREADS), "-td", String(ENGINE_THREADS), "-tbd", String(ENGINE_THREADS)],
    // As the agent drafts: up to 12 tokens, stopping at one the draft is less than 60 % sure of.
    ["-np", "1", "-c", "4096", "--spec-draft-n-max", "12", "--spec-draft-p-min", "0.6"],
  ].flat();
  context.log(`starting ${binary} ${args.join(" ")}`);
  const server = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  context.env.onClose(() => stopChild(server));
  let output = "";
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-8_000));
  server.stdout.on("data", keep);
  server.stderr.on("data", keep);
  const target: Target = { label: "llama-server", url: `http://127.0.0.1:${port}` };
  try {
    await until(
      async () => {
        if (server.exitCode !== null || server.signalCode !== null) throw new Error(`llama-server exited before it was ready:\n${output}`);
        return (await fetch(`${target.url}/health`).catch(() => null))?.ok === true;
      },
      120_000,
      "llama-server to answer /health",
    );
    // Warm-up, then alternately, the first of each pair alternating too.
    await timedStream(agent, params);
    await timedStream(target, params);
    const agentRuns: number[] = [];
    const serverRuns: number[] = [];
    await withProgress("speculative vs llama-server", pairs, context.log, async (round) => {
      for (const agentTurn of round % 2 === 0 ? [true, false] : [false, true]) {
        if (agentTurn) agentRuns.push(decodeRate(await timedStream(agent, params)));
        else serverRuns.push(decodeRate(await timedStream(target, params)));
      }
    });
    const [agentSide, serverSide] = [median(agentRuns), median(serverRuns)];
    const response = await fetch(`${target.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: params.prompt, max_tokens: params.maxTokens, temperature: 0, ...params.extra }),
    });
    const timings = ((await response.json()) as { timings?: { draft_n?: number; draft_n_accepted?: number } }).timings;
    return {
      binary,
      tokensPerSecond: serverSide,
      agentTokensPerSecond: agentSide,
      ratio: agentSide / serverSide,
      drafted: timings?.draft_n,
      accepted: timings?.draft_n_accepted,
    };
  } finally {
    await stopChild(server);
  }
}

function rows(data: SpeculativeData): Row[] {
  const line = (comparison: Comparison) =>
    `${round(comparison.withoutTokensPerSecond)} → ${round(comparison.withTokensPerSecond)} tok/s = ×${comparison.ratio.toFixed(2)}`;
  const accepted = (comparison: Comparison) =>
    comparison.counts ? ` (accepted ${comparison.counts.accepted_draft_tokens_count} of ${comparison.counts.total_draft_tokens_count})` : "";
  const title = `${SECTION} (${data.target}, ${ENGINE_THREADS} thread)`;
  const result: Row[] = [
    {
      section: title,
      measure: `agreeing draft ${data.draft}: without → with`,
      value: line(data.agreeing) + accepted(data.agreeing),
      target: `≥ ×${AGREEING_TARGET}`,
      met: data.agreeing.ratio >= AGREEING_TARGET,
    },
    {
      section: title,
      measure: `disagreeing draft ${data.stranger}: without → with`,
      value: line(data.disagreeing) + accepted(data.disagreeing),
      target: `≥ ×${DISAGREEING_TARGET}`,
      met: data.disagreeing.ratio >= DISAGREEING_TARGET,
    },
    { section: title, measure: `prompt lookup, ${LOOKUP_PROMPT_TOKENS}-token prompt the answer copies`, value: line(data.promptLookupCopying) + accepted(data.promptLookupCopying) },
    { section: title, measure: `prompt lookup, ${LOOKUP_PROMPT_TOKENS}-token prompt it does not copy`, value: line(data.promptLookupNotCopying) + accepted(data.promptLookupNotCopying) },
  ];
  const server = data.llamaServer;
  result.push({
    section: title,
    measure: "with the draft: llama-server --model-draft → agent draft_model",
    value:
      server?.skipped !== undefined || server?.ratio === undefined
        ? `skipped: ${server?.skipped ?? "no result"}`
        : `${round(server.tokensPerSecond ?? 0)} → ${round(server.agentTokensPerSecond ?? 0)} tok/s = ×${server.ratio.toFixed(2)} (llama-server accepted ${server.accepted ?? "?"} of ${server.drafted ?? "?"})`,
  });
  return result;
}
