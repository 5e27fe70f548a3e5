/**
 * Memory: a fresh agent's resident set size (RSS) when idle, after loading each model, and its
 * growth over 1,000 requests (after a warm-up) — a leak shows as steady growth. The requests mix
 * plain and streamed completions, direct and through the gateway, so both of the agent's request
 * paths run. This section runs first: its agent is then the only node, so gateway requests reach it.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { timedCompletion, timedStream, type CompletionParams } from "./client.ts";
import { SMALL_CHAT, TINY_CHAT } from "./environment.ts";
import { withProgress, type SectionContext, type SectionResult } from "./section.ts";
import { round } from "./stats.ts";

export interface MemoryData {
  /** MiB, right after start-up, nothing loaded. */
  idleMiB: number;
  /** MiB after each load, in order (models stay loaded, so these accumulate). */
  afterLoadMiB: Array<{ model: string; rssMiB: number; addedMiB: number }>;
  requests: number;
  /** MiB after the warm-up, then every tenth of the requests. */
  samples: Array<{ requests: number; rssMiB: number }>;
  growthMiB: number;
  /** Requests that reached another node than this agent through the gateway (should be 0). */
  misrouted: number;
}

const WARMUP = 100;

/** Resident set size of a process in MiB (`ps` works on Linux and macOS alike). */
export async function rssMiB(pid: number): Promise<number> {
  const { stdout } = await promisify(execFile)("ps", ["-o", "rss=", "-p", String(pid)]);
  return Number(stdout.trim()) / 1024;
}

export async function runMemory(context: SectionContext): Promise<SectionResult<MemoryData>> {
  const { env, log, quick } = context;
  const name = "bench-mem";
  const dirs = [await env.tinyModelsDir(), await env.smallModelsDir()];
  const node = await env.node(name, dirs);
  const pid = node.agent.process.pid;
  if (pid === undefined) throw new Error("the memory agent has no pid");
  const gateway = await env.gatewayTarget();

  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const idleMiB = await rssMiB(pid);
  log(`memory: idle agent ${round(idleMiB)} MiB`);
  const afterLoadMiB: MemoryData["afterLoadMiB"] = [];
  let previous = idleMiB;
  for (const model of [TINY_CHAT, "tiny-chat-q8_0", "tiny-embed-f32", SMALL_CHAT]) {
    await env.load(node, model);
    const rss = await rssMiB(pid);
    afterLoadMiB.push({ model, rssMiB: rss, addedMiB: rss - previous });
    log(`memory: after loading ${model}: ${round(rss)} MiB (+${round(rss - previous)})`);
    previous = rss;
  }

  const params: CompletionParams = { model: TINY_CHAT, prompt: "Hello there", maxTokens: 8 };
  let misrouted = 0;
  const paths: Array<() => Promise<unknown>> = [
    () => timedCompletion(node.direct, params),
    () => timedStream(node.direct, params),
    () => timedCompletion(gateway, params),
    async () => {
      const timing = await timedStream(gateway, params);
      if (timing.node !== name) misrouted += 1;
    },
  ];
  const request = (index: number) => paths[index % paths.length]!();

  for (let index = 0; index < WARMUP; index++) await request(index);
  const requests = context.iterations ?? (quick ? 400 : 1000);
  const samples: MemoryData["samples"] = [{ requests: 0, rssMiB: await rssMiB(pid) }];
  const every = Math.max(1, Math.ceil(requests / 10));
  log(`memory: ${requests} requests on ${TINY_CHAT} (plain and streamed, direct and via the gateway) after ${WARMUP} to warm up`);
  await withProgress("memory", requests, log, async (index) => {
    await request(index);
    if ((index + 1) % every === 0 || index + 1 === requests) samples.push({ requests: index + 1, rssMiB: await rssMiB(pid) });
  });
  const growthMiB = (samples[samples.length - 1]?.rssMiB ?? Number.NaN) - (samples[0]?.rssMiB ?? Number.NaN);
  await env.stopNode(name);

  const section = "memory (agent RSS)";
  const loads = afterLoadMiB.map((entry) => `${entry.model} +${round(entry.addedMiB)}`).join(", ");
  return {
    data: { idleMiB, afterLoadMiB, requests, samples, growthMiB, misrouted: misrouted },
    rows: [
      { section, measure: "idle, then after loading each model (MiB)", value: `${round(idleMiB)}; ${loads} → ${round(previous)}` },
      {
        section,
        measure: `growth over ${requests} requests (after ${WARMUP} to warm up)`,
        value: `${growthMiB >= 0 ? "+" : ""}${round(growthMiB)} MiB (${round(samples[0]?.rssMiB ?? Number.NaN)} → ${round(samples[samples.length - 1]?.rssMiB ?? Number.NaN)})`,
      },
    ],
  };
}
