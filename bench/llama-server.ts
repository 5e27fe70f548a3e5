/**
 * Engine vs llama.cpp: the agent's direct mode against llama.cpp's own `llama-server` (from
 * `LLAMA_SERVER`; scripts/build-llama-server.sh builds one from the llama.cpp that node-llama-cpp
 * ships) on the same model file, with the same threads, slots, per-slot context, batch size and
 * KV layout as the agent's context: one stream at a time, then 4 at once (and 8 at once on 8
 * slots), interleaved. For the agent it also counts the sequences each llama.cpp decode carried.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { AGENT_DEFAULTS } from "../node-agent/configuration/defaults.ts";
import { BENCH_SMALL_MODEL } from "../node-agent/demo-models/demo-models.ts";
import { freePort } from "../scripts/wrangler-dev.ts";
import { decodeRate, timedStream, type CompletionParams, type StreamTiming, type Target } from "./client.ts";
import { ENGINE_THREADS, SLOTS, SMALL_CHAT, stopChild, until } from "./environment.ts";
import { withProgress, type Row, type SectionContext, type SectionResult } from "./section.ts";
import { median, round } from "./stats.ts";
import { interleavedStreams, longStream } from "./throughput.ts";

/** Streams at once on both sides: aggregate tokens/s, and how many sequences each of the agent's decodes carried. */
export interface ConcurrentEngineData {
  streams: number;
  /** Slots on both sides, and the context per slot. */
  slots: number;
  contextPerSlot: number;
  agentTokensPerSecond: number;
  llamaServerTokensPerSecond: number;
  ratio: number;
  rounds: number;
  /** The agent's llama.cpp decodes during its rounds, and the mean number of sequences each carried (of `streams`). */
  decodes: number;
  sequencesPerDecode: number;
}

export interface EngineData {
  skipped?: string;
  binary?: string;
  model?: string;
  maxTokens?: number;
  single?: { agentTokensPerSecond: number; llamaServerTokensPerSecond: number; ratio: number; pairs: number };
  concurrent?: ConcurrentEngineData;
  /** 8 streams on 8 slots (a smaller context per slot, so both sides' caches fit in memory). */
  wide?: ConcurrentEngineData;
}

export const SINGLE_TARGET = 0.9;
export const CONCURRENT_TARGET = 1.0;
/** Of 4 streams: the figure that carries over to a GPU, where a decode costs about the same for 1 or 4 sequences. */
export const SEQUENCES_PER_DECODE_TARGET = 3.8;
/** The agent's context per slot for this model: min(trained, its default). */
const CONTEXT_PER_SLOT = Math.min(BENCH_SMALL_MODEL.spec.contextLength, AGENT_DEFAULTS.contextLength);
/** The wide run: 8 slots of 1,024 tokens (~0.8 GiB of KV cache a side, as 4 × 4,096 would be ~1.5). */
const WIDE = { slots: 8, contextPerSlot: 1024 };
/** node-llama-cpp's default batch for this context (min(context × sequences, 512)), which it also uses as the micro-batch. */
const BATCH = 512;

/** The agent's decode counters for `model` (`lmgate_agent_decodes_total`, `…_decode_sequences_total`), from its /metrics. */
async function decodeCounts(target: Target, model: string): Promise<{ decodes: number; sequences: number }> {
  const response = await fetch(`${target.url}/metrics`);
  if (!response.ok) throw new Error(`${target.label}/metrics: HTTP ${response.status}`);
  const text = await response.text();
  const read = (name: string) => Number(new RegExp(`^${name}\\{model="${model}"\\} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
  return { decodes: read("lmgate_agent_decodes_total"), sequences: read("lmgate_agent_decode_sequences_total") };
}

/** `streams` streams at once; aggregate tokens/s over the wall time. */
async function concurrentRate(target: Target, params: CompletionParams, streams: number): Promise<number> {
  const started = performance.now();
  const timings: StreamTiming[] = await Promise.all(Array.from({ length: streams }, () => timedStream(target, params)));
  return timings.reduce((sum, timing) => sum + timing.tokens, 0) / ((performance.now() - started) / 1000);
}

/** As many streams as slots at once on the agent and on llama-server, interleaved, `rounds` times each. */
async function concurrentComparison(
  targets: { agent: Target; llamaServer: Target },
  params: CompletionParams,
  layout: { slots: number; contextPerSlot: number },
  rounds: number,
  log: (message: string) => void,
): Promise<ConcurrentEngineData> {
  const streams = layout.slots;
  log(`engine: ${streams} streams at once on ${streams} slots, ${rounds} × (agent, llama-server)`);
  const agentRates: number[] = [];
  const serverRates: number[] = [];
  const batches = { decodes: 0, sequences: 0 };
  await withProgress(`engine ${streams} streams`, rounds, log, async (index) => {
    const order = index % 2 === 0 ? [true, false] : [false, true];
    for (const agentTurn of order) {
      if (!agentTurn) {
        serverRates.push(await concurrentRate(targets.llamaServer, params, streams));
        continue;
      }
      const before = await decodeCounts(targets.agent, params.model);
      agentRates.push(await concurrentRate(targets.agent, params, streams));
      const after = await decodeCounts(targets.agent, params.model);
      batches.decodes += after.decodes - before.decodes;
      batches.sequences += after.sequences - before.sequences;
    }
  });
  const agentTokensPerSecond = median(agentRates);
  const llamaServerTokensPerSecond = median(serverRates);
  return {
    streams,
    ...layout,
    agentTokensPerSecond,
    llamaServerTokensPerSecond,
    ratio: agentTokensPerSecond / llamaServerTokensPerSecond,
    rounds,
    decodes: batches.decodes,
    sequencesPerDecode: batches.sequences / batches.decodes,
  };
}

function concurrentRows(section: string, run: ConcurrentEngineData, sequencesTarget?: number): Row[] {
  const label = `${run.streams} streams${run.slots === SLOTS ? "" : ` on ${run.slots} slots of ${run.contextPerSlot} tokens`}`;
  return [
    {
      section,
      measure: `${label}: llama-server → agent direct aggregate tok/s`,
      value: `${round(run.llamaServerTokensPerSecond)} → ${round(run.agentTokensPerSecond)} tok/s = ×${run.ratio.toFixed(2)}`,
      target: `≥ ×${CONCURRENT_TARGET}`,
      met: run.ratio >= CONCURRENT_TARGET,
    },
    {
      section,
      measure: `${label}: sequences per llama.cpp decode, agent (the prompts' and the ends' decodes included)`,
      value: `${run.sequencesPerDecode.toFixed(2)} of ${run.streams} (${run.decodes} decodes)`,
      ...(sequencesTarget === undefined ? {} : { target: `≥ ${sequencesTarget}`, met: run.sequencesPerDecode >= sequencesTarget }),
    },
  ];
}

export async function runLlamaServer(context: SectionContext): Promise<SectionResult<EngineData>> {
  const { env, log, quick } = context;
  const section = "engine vs llama-server";
  const binary = process.env.LLAMA_SERVER;
  if (binary === undefined || binary === "") {
    const skipped = "LLAMA_SERVER is not set (build one with scripts/build-llama-server.sh)";
    log(`engine: skipped: ${skipped}`);
    return { data: { skipped }, rows: [{ section, measure: "agent direct vs llama-server", value: `skipped: ${skipped}` }] };
  }

  const dir = await env.smallModelsDir();
  const node = await env.node("bench-small", [dir]);
  await env.load(node, SMALL_CHAT);

  const server = await startLlamaServer(context, binary, dir);
  const llamaServer = server.target;
  try {
    const maxTokens = quick ? 16 : 64;
    const params = await longStream(node.direct, SMALL_CHAT, maxTokens, log);
    const pairs = context.iterations ?? (quick ? 1 : 5);
    log(`engine: single stream, ${pairs} × (agent, llama-server), max_tokens ${maxTokens}`);
    const [agentRuns, serverRuns] = await interleavedStreams("engine single", node.direct, llamaServer, params, pairs, log);
    const agentSingle = median(agentRuns.map(decodeRate));
    const serverSingle = median(serverRuns.map(decodeRate));

    const rounds = context.iterations ?? (quick ? 1 : 3);
    const concurrent = await concurrentComparison({ agent: node.direct, llamaServer }, params, { slots: SLOTS, contextPerSlot: CONTEXT_PER_SLOT }, rounds, log);
    await server.stop();
    const wide = await wideComparison(context, binary, dir, params, rounds);

    const data: EngineData = {
      binary,
      model: SMALL_CHAT,
      maxTokens,
      single: { agentTokensPerSecond: agentSingle, llamaServerTokensPerSecond: serverSingle, ratio: agentSingle / serverSingle, pairs },
      concurrent,
      wide,
    };
    const titled = `${section} (${SMALL_CHAT}, ${ENGINE_THREADS} thread, ${SLOTS} slots)`;
    return {
      data,
      rows: [
        {
          section: titled,
          measure: "1 stream: llama-server → agent direct tok/s",
          value: `${round(serverSingle)} → ${round(agentSingle)} tok/s = ×${(agentSingle / serverSingle).toFixed(2)}`,
          target: `≥ ×${SINGLE_TARGET}`,
          met: agentSingle / serverSingle >= SINGLE_TARGET,
        },
        ...concurrentRows(titled, concurrent, SEQUENCES_PER_DECODE_TARGET),
        ...concurrentRows(titled, wide),
      ],
    };
  } finally {
    await server.stop();
  }
}

/**
 * 8 streams on 8 slots: an agent of its own (it leaves the gateway afterwards, so later sections
 * see only the usual nodes) and a llama-server with the same layout.
 */
async function wideComparison(context: SectionContext, binary: string, dir: string, params: CompletionParams, rounds: number): Promise<ConcurrentEngineData> {
  const name = "bench-small-wide";
  const node = await context.env.node(name, [dir], { slots: WIDE.slots, contextLength: WIDE.contextPerSlot });
  try {
    await context.env.load(node, SMALL_CHAT);
    const server = await startLlamaServer(context, binary, dir, WIDE);
    try {
      return await concurrentComparison({ agent: node.direct, llamaServer: server.target }, params, WIDE, rounds, context.log);
    } finally {
      await server.stop();
    }
  } finally {
    await context.env.stopNode(name);
  }
}

/** llama-server on the small model, configured like the agent's context; stopped by `stop()` or with the environment. */
export async function startLlamaServer(
  context: SectionContext,
  binary: string,
  dir: string,
  layout: { slots: number; contextPerSlot: number } = { slots: SLOTS, contextPerSlot: CONTEXT_PER_SLOT },
): Promise<{ target: Target; stop: () => Promise<void> }> {
  const port = await freePort();
  const args = [
    ["-m", join(dir, BENCH_SMALL_MODEL.path)],
    ["--host", "127.0.0.1", "--port", String(port)],
    ["-t", String(ENGINE_THREADS), "-tb", String(ENGINE_THREADS)],
    ["-np", String(layout.slots), "-c", String(layout.contextPerSlot * layout.slots), "--no-kv-unified"],
    ["-b", String(BATCH), "-ub", String(BATCH)],
    ["--no-webui"],
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
        if (server.exitCode !== null || server.signalCode !== null) {
          throw new Error(`llama-server exited (${server.signalCode ?? `code ${server.exitCode}`}) before it was ready:\n${output}`);
        }
        const response = await fetch(`${target.url}/health`).catch(() => null);
        return response?.ok === true;
      },
      120_000,
      "llama-server to answer /health",
    );
  } catch (error) {
    await stopChild(server);
    throw error;
  }
  return { target, stop: () => stopChild(server) };
}
