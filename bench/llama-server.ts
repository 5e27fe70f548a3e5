/**
 * Engine vs llama.cpp: the agent's direct mode against llama.cpp's own `llama-server` (from
 * `LLAMA_SERVER`; scripts/build-llama-server.sh builds one from the llama.cpp that node-llama-cpp
 * ships) on the same model file, with the same threads, slots, per-slot context, batch size and
 * KV layout as the agent's context: one stream at a time, then 4 at once, interleaved.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { AGENT_DEFAULTS } from "../node-agent/defaults.ts";
import { BENCH_SMALL_MODEL } from "../node-agent/demo-models/demo-models.ts";
import { freePort } from "../scripts/wrangler-dev.ts";
import { decodeRate, timedStream, type CompletionParams, type StreamTiming, type Target } from "./client.ts";
import { ENGINE_THREADS, SLOTS, SMALL_CHAT, stopChild, until } from "./environment.ts";
import { withProgress, type SectionContext, type SectionResult } from "./section.ts";
import { median, round } from "./stats.ts";
import { interleavedStreams, longStream } from "./throughput.ts";

export interface EngineData {
  skipped?: string;
  binary?: string;
  model?: string;
  maxTokens?: number;
  single?: { agentTokensPerSecond: number; llamaServerTokensPerSecond: number; ratio: number; pairs: number };
  concurrent?: {
    streams: number;
    agentTokensPerSecond: number;
    llamaServerTokensPerSecond: number;
    ratio: number;
    rounds: number;
    /** The agent's llama.cpp decodes during its rounds, and the mean number of sequences each carried (of `streams`). */
    decodes: number;
    sequencesPerDecode: number;
  };
}

export const SINGLE_TARGET = 0.9;
export const CONCURRENT_TARGET = 1.0;
/** Of 4 streams: the figure that carries over to a GPU, where a decode costs about the same for 1 or 4 sequences. */
export const SEQUENCES_PER_DECODE_TARGET = 3.8;
/** The agent's context per slot for this model: min(trained, its default). */
const CONTEXT_PER_SLOT = Math.min(BENCH_SMALL_MODEL.spec.contextLength, AGENT_DEFAULTS.contextLength);
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
    log(`engine: ${SLOTS} streams at once, ${rounds} × (agent, llama-server)`);
    const agentConcurrent: number[] = [];
    const serverConcurrent: number[] = [];
    const batches = { decodes: 0, sequences: 0 };
    await withProgress("engine concurrent", rounds, log, async (index) => {
      const order = index % 2 === 0 ? [true, false] : [false, true];
      for (const agentTurn of order) {
        if (agentTurn) {
          const before = await decodeCounts(node.direct, SMALL_CHAT);
          agentConcurrent.push(await concurrentRate(node.direct, params, SLOTS));
          const after = await decodeCounts(node.direct, SMALL_CHAT);
          batches.decodes += after.decodes - before.decodes;
          batches.sequences += after.sequences - before.sequences;
        } else serverConcurrent.push(await concurrentRate(llamaServer, params, SLOTS));
      }
    });
    const agentAggregate = median(agentConcurrent);
    const serverAggregate = median(serverConcurrent);
    const sequencesPerDecode = batches.sequences / batches.decodes;

    const data: EngineData = {
      binary,
      model: SMALL_CHAT,
      maxTokens,
      single: { agentTokensPerSecond: agentSingle, llamaServerTokensPerSecond: serverSingle, ratio: agentSingle / serverSingle, pairs },
      concurrent: {
        streams: SLOTS,
        agentTokensPerSecond: agentAggregate,
        llamaServerTokensPerSecond: serverAggregate,
        ratio: agentAggregate / serverAggregate,
        rounds,
        decodes: batches.decodes,
        sequencesPerDecode,
      },
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
        {
          section: titled,
          measure: `${SLOTS} streams: llama-server → agent direct aggregate tok/s`,
          value: `${round(serverAggregate)} → ${round(agentAggregate)} tok/s = ×${(agentAggregate / serverAggregate).toFixed(2)}`,
          target: `≥ ×${CONCURRENT_TARGET}`,
          met: agentAggregate / serverAggregate >= CONCURRENT_TARGET,
        },
        {
          section: titled,
          measure: `${SLOTS} streams: sequences per llama.cpp decode, agent (the prompts' and the ends' decodes included)`,
          value: `${sequencesPerDecode.toFixed(2)} of ${SLOTS} (${batches.decodes} decodes)`,
          target: `≥ ${SEQUENCES_PER_DECODE_TARGET}`,
          met: sequencesPerDecode >= SEQUENCES_PER_DECODE_TARGET,
        },
      ],
    };
  } finally {
    await server.stop();
  }
}

/** llama-server on the small model, configured like the agent's context; stopped by `stop()` or with the environment. */
export async function startLlamaServer(context: SectionContext, binary: string, dir: string): Promise<{ target: Target; stop: () => Promise<void> }> {
  const port = await freePort();
  const args = [
    ["-m", join(dir, BENCH_SMALL_MODEL.path)],
    ["--host", "127.0.0.1", "--port", String(port)],
    ["-t", String(ENGINE_THREADS), "-tb", String(ENGINE_THREADS)],
    ["-np", String(SLOTS), "-c", String(CONTEXT_PER_SLOT * SLOTS), "--no-kv-unified"],
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
