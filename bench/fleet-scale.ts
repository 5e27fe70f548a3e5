/**
 * Fleet scale: the gateway alone, with fake agents that stream at a fixed token rate (`paced-agent.ts`),
 * so the engines are not what is measured. 2, 4 and 8 agents; 64 and 256 streams at once; for each:
 * errors, slowest ÷ fastest stream, the longest pause between two tokens of any stream, and tokens/s
 * delivered ÷ offered. Then the Fleet's own invocations per request at 16 and at 1,024 tokens.
 *
 * Run against this checkout and, in the same run, against the design before node objects (a git
 * worktree of `PREVIOUS_DESIGN`, where every frame of every generation went through the one Fleet
 * object), so the two are measured side by side on the same machine and load.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parsePrometheus } from "../test/harness/prometheus-text.ts";
import { startGateway, type GatewayProcess } from "../test/harness/gateway-process.ts";
import { decodeRate, timedStream, type StreamTiming, type Target } from "./client.ts";
import { ROOT } from "./environment.ts";
import { connectPacedAgent, type PacedAgent } from "./paced-agent.ts";
import type { Row, SectionContext, SectionResult } from "./section.ts";
import { round } from "./stats.ts";
import { MAX_SLOTS_PER_MODEL } from "../shared/protocol/request-schemas.ts";

/** The last commit before node objects: the Fleet relayed every frame. */
export const PREVIOUS_DESIGN = "6f7c23e";

const AGENTS = [2, 4, 8];
const STREAMS = [64, 256];
const TOKENS_PER_SECOND = 25;
const MODEL = "paced";
const FAIRNESS_TARGET = 0.5;

/** Slots each of `count` agents offers: enough for the most streams, within the protocol's bound. */
const slotsFor = (count: number) => Math.min(MAX_SLOTS_PER_MODEL, Math.ceil(Math.max(...STREAMS) / count));

export interface ScaleRun {
  agents: number;
  streams: number;
  errors: number;
  errorMessages: string[];
  fairness: number;
  maxGapMs: number;
  deliveredOverOffered: number;
}

export interface DesignResult {
  design: string;
  runs: ScaleRun[];
  /** Fleet invocations per request, by answer length in tokens. */
  fleetCallsPerRequest: Record<string, number>;
  /** How the Fleet's invocations were counted. */
  counted: string;
}

interface Design {
  name: string;
  config: string | undefined;
  protocol: 1 | 2;
}

async function fleetCalls(gateway: GatewayProcess): Promise<number> {
  const response = await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${gateway.adminToken}` } });
  let total = 0;
  for (const [name, value] of parsePrometheus(await response.text()).samples) {
    if (name.startsWith("lmgate_gateway_fleet_calls_total{") && !name.includes('call="metrics"')) total += value;
  }
  return total;
}

/**
 * Bursts that double until each agent has run `slots` at once: the Fleet believes a node's slots
 * only as far as it has seen them used (node-claims.ts), so a fresh agent's 64 are earned first.
 */
async function earnSlots(target: Target, agents: number, slots: number): Promise<void> {
  for (let perAgent = Math.min(4, slots); ; perAgent = Math.min(2 * perAgent, slots)) {
    await streamsAtOnce(target, agents * perAgent, 4);
    if (perAgent === slots) return;
  }
}

async function streamsAtOnce(target: Target, streams: number, maxTokens: number): Promise<{ timings: StreamTiming[]; errors: string[]; wallMs: number }> {
  const started = performance.now();
  const outcomes = await Promise.allSettled(Array.from({ length: streams }, () => timedStream(target, { model: MODEL, prompt: "x", maxTokens })));
  const wallMs = performance.now() - started;
  return {
    timings: outcomes.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : [])),
    errors: outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason instanceof Error ? outcome.reason.message : String(outcome.reason)] : [])),
    wallMs,
  };
}

async function runDesign(design: Design, context: SectionContext, tokens: number): Promise<DesignResult> {
  const { log } = context;
  log(`fleet-scale: starting the gateway (${design.name})…`);
  const gateway = await startGateway({ config: design.config, readyTimeoutMs: 180_000 });
  const target: Target = { label: design.name, url: gateway.url, apiKey: gateway.apiKey };
  const agents: PacedAgent[] = [];
  const join = async (count: number, rate: number, tag: string) => {
    const slots = slotsFor(count);
    const joined = await Promise.all(
      Array.from({ length: count }, (_, index) =>
        connectPacedAgent({ url: gateway.url, token: gateway.nodeToken, name: `${tag}-${index}`, model: MODEL, slots, tokensPerSecond: rate, protocol: design.protocol }),
      ),
    );
    agents.push(...joined);
    return joined;
  };
  const leave = async (left: PacedAgent[]) => {
    await Promise.all(left.map((agent) => agent.close()));
    agents.splice(0, agents.length, ...agents.filter((agent) => !left.includes(agent)));
    // The gateway notices the sockets close; a new set joins under new names.
    await new Promise((resolve) => setTimeout(resolve, 500));
  };
  try {
    const runs: ScaleRun[] = [];
    for (const count of AGENTS) {
      const joined = await join(count, TOKENS_PER_SECOND, `paced${count}`);
      await earnSlots(target, count, slotsFor(count));
      // More streams than the agents may run at once (the protocol's 64 slots a model) would measure the queue.
      for (const streams of STREAMS.filter((streams) => streams <= count * slotsFor(count))) {
        const { timings, errors, wallMs } = await streamsAtOnce(target, streams, tokens);
        const rates = timings.map(decodeRate).filter(Number.isFinite);
        const delivered = timings.reduce((sum, timing) => sum + timing.tokens, 0) / (wallMs / 1000);
        // All streams run at once (the agents have the slots): what the agents offer is streams × rate.
        const run: ScaleRun = {
          agents: count,
          streams,
          errors: errors.length,
          errorMessages: [...new Set(errors)].slice(0, 3),
          fairness: rates.length === 0 ? 0 : Math.min(...rates) / Math.max(...rates),
          maxGapMs: Math.max(0, ...timings.map((timing) => timing.maxGapMs)),
          deliveredOverOffered: delivered / (streams * TOKENS_PER_SECOND),
        };
        runs.push(run);
        log(
          `fleet-scale ${design.name}: ${count} agents, ${streams} streams: errors ${run.errors}, slowest÷fastest ${run.fairness.toFixed(2)}, ` +
            `longest pause ${round(run.maxGapMs)} ms, delivered÷offered ${run.deliveredOverOffered.toFixed(2)}`,
        );
      }
      await leave(joined);
    }
    // The Fleet's work per request, as answers grow: fast agents, a few requests of each length.
    const fast = await join(2, 2_000, "fast");
    const fleetCallsPerRequest: Record<string, number> = {};
    const requests = 8;
    for (const length of [16, 1_024]) {
      const sentBefore = fast.reduce((sum, agent) => sum + agent.messagesSent(), 0);
      const callsBefore = design.protocol === 2 ? await fleetCalls(gateway) : 0;
      const { errors } = await streamsAtOnce(target, requests, length);
      if (errors.length > 0) throw new Error(`fleet-scale ${design.name}: ${errors[0]}`);
      const sent = fast.reduce((sum, agent) => sum + agent.messagesSent(), 0) - sentBefore;
      // Before node objects, each message of an agent woke the Fleet, plus the request's own call.
      fleetCallsPerRequest[length] = design.protocol === 2 ? ((await fleetCalls(gateway)) - callsBefore) / requests : sent / requests + 1;
    }
    await leave(fast);
    log(`fleet-scale ${design.name}: Fleet invocations per request: ${JSON.stringify(fleetCallsPerRequest)}`);
    return {
      design: design.name,
      runs,
      fleetCallsPerRequest,
      counted: design.protocol === 2 ? "lmgate_gateway_fleet_calls_total" : "agent messages + the generate call (at least)",
    };
  } finally {
    await Promise.all(agents.map((agent) => agent.close().catch(() => undefined)));
    await gateway.stop();
  }
}

/** A worktree of the previous design, sharing this checkout's node_modules; removed by the returned function. */
async function previousDesign(log: (message: string) => void): Promise<{ config: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "lmgate-previous-"));
  log(`fleet-scale: the previous design (${PREVIOUS_DESIGN}) in a worktree…`);
  execFileSync("git", ["worktree", "add", "--detach", dir, PREVIOUS_DESIGN], { cwd: ROOT, stdio: "ignore" });
  await symlink(join(ROOT, "node_modules"), join(dir, "node_modules"));
  return {
    config: join(dir, "wrangler.toml"),
    remove: async () => {
      execFileSync("git", ["worktree", "remove", "--force", dir], { cwd: ROOT, stdio: "ignore" });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function runFleetScale(context: SectionContext): Promise<SectionResult<DesignResult[]>> {
  const tokens = context.iterations !== undefined ? 16 : context.quick ? 32 : 64;
  const previous = await previousDesign(context.log);
  const results: DesignResult[] = [];
  try {
    results.push(await runDesign({ name: "node objects", config: undefined, protocol: 2 }, context, tokens));
    results.push(await runDesign({ name: "one Fleet (before)", config: previous.config, protocol: 1 }, context, tokens));
  } finally {
    await previous.remove();
  }
  const section = `fleet-scale (paced agents, ${TOKENS_PER_SECOND} tok/s a stream, ${tokens} tokens)`;
  const rows: Row[] = [];
  const [now, before] = results;
  for (const [index, run] of (now?.runs ?? []).entries()) {
    const old = before?.runs[index];
    const describe = (scale: ScaleRun | undefined) =>
      scale === undefined
        ? "—"
        : `${scale.errors} · ${scale.fairness.toFixed(2)} · ${round(scale.maxGapMs)} ms · ${scale.deliveredOverOffered.toFixed(2)}`;
    rows.push({
      section,
      measure: `${run.agents} agents, ${run.streams} streams: errors · slowest÷fastest · longest pause · delivered÷offered (now / before)`,
      value: `${describe(run)} / ${describe(old)}`,
      ...(run.streams === 64 ? { target: `0 errors, ≥ ${FAIRNESS_TARGET}`, met: run.errors === 0 && run.fairness >= FAIRNESS_TARGET } : {}),
    });
  }
  const calls = (result: DesignResult | undefined) => (result === undefined ? "—" : `${round(result.fleetCallsPerRequest[16] ?? 0)} at 16 tokens, ${round(result.fleetCallsPerRequest[1024] ?? 0)} at 1,024`);
  rows.push({
    section,
    measure: "Fleet invocations per request (now / before)",
    value: `${calls(now)} / ${calls(before)}`,
    target: "equal at 16 and 1,024",
    met: now !== undefined && now.fleetCallsPerRequest[16] === now.fleetCallsPerRequest[1024],
  });
  return { data: results, rows };
}
