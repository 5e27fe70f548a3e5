/**
 * Multi-turn chat, as chat UIs and coding agents send it: C conversations, each with its own
 * ~300-token system prompt, take T turns, all C at once each turn, and every turn sends the whole
 * history again. A server that lands each turn on the slot caching its conversation evaluates
 * only the new messages, so turns 2…T answer much sooner than turn 1. Measured on the agent's
 * direct mode, on llama-server (when LLAMA_SERVER is set) and through the gateway with two agents,
 * interleaved, each run with conversations of its own.
 */
import { timedChatStream, type ChatParams, type ChatTiming, type Target } from "./client.ts";
import { SLOTS, SMALL_CHAT } from "./environment.ts";
import { startLlamaServer } from "./llama-server.ts";
import { withProgress, type Row, type SectionContext, type SectionResult } from "./section.ts";
import { median, round } from "./stats.ts";

export interface ConversationsRun {
  /** Per turn (0 = the first), every conversation's time to first token, ms. */
  ttftMs: number[][];
  /** Per turn, the prompt tokens each conversation's turn found cached (absent when the server does not say). */
  cachedTokens: Array<Array<number | null>>;
  nodes: Record<string, number>;
}

export interface PathTurns {
  runs: ConversationsRun[];
  coldTtftMs: number;
  warmTtftMs: number;
  /** warm ÷ cold: how much of turn 1's wait a later turn still pays. */
  ratio: number;
}

export interface MultiTurnData {
  conversations: number;
  turns: number;
  maxTokens: number;
  rounds: number;
  direct: PathTurns;
  llamaServer?: PathTurns;
  llamaServerSkipped?: string;
  gateway: PathTurns;
}

export const ENGINE_RATIO_TARGET = 1.1;
export const GATEWAY_RATIO_TARGET = 1.2;

const QUESTIONS = ["What should we do first?", "Why that?", "And after that?", "Anything to watch out for?", "Summarize, please.", "Thanks, one more thing?"];

/** ~300 tokens of instructions (the generated models' small vocabulary takes ~1.7 characters a token), different for every conversation of every run. */
function systemPrompt(id: string): string {
  const rules = Array.from(
    { length: 5 },
    (_, index) => `Rule ${index + 1} for session ${id}: keep answers short, cite the step number, and never repeat rule ${index + 1}.`,
  );
  return `You are the planning assistant of session ${id}. ${rules.join(" ")}`;
}

/** C conversations × T turns against one target; every turn of all C is sent at once. */
async function conversations(target: Target, runId: string, count: number, turns: number, maxTokens: number): Promise<ConversationsRun> {
  const histories: ChatParams["messages"][] = Array.from({ length: count }, (_, index) => [{ role: "system", content: systemPrompt(`${runId}-${index}`) }]);
  const run: ConversationsRun = { ttftMs: [], cachedTokens: [], nodes: {} };
  for (let turn = 0; turn < turns; turn++) {
    const timings: ChatTiming[] = await Promise.all(
      histories.map((messages) => {
        messages.push({ role: "user", content: QUESTIONS[turn % QUESTIONS.length] as string });
        return timedChatStream(target, { model: SMALL_CHAT, messages: [...messages], maxTokens });
      }),
    );
    timings.forEach((timing, index) => {
      histories[index]?.push({ role: "assistant", content: timing.text });
      if (timing.node !== undefined) run.nodes[timing.node] = (run.nodes[timing.node] ?? 0) + 1;
    });
    run.ttftMs.push(timings.map((timing) => timing.ttftMs));
    run.cachedTokens.push(timings.map((timing) => timing.cachedTokens ?? null));
  }
  return run;
}

function summarizeTurns(runs: ConversationsRun[]): PathTurns {
  const cold = median(runs.flatMap((run) => run.ttftMs[0] ?? []));
  const warm = median(runs.flatMap((run) => run.ttftMs.slice(1).flat()));
  return { runs, coldTtftMs: cold, warmTtftMs: warm, ratio: warm / cold };
}

export async function runMultiTurn(context: SectionContext): Promise<SectionResult<MultiTurnData>> {
  const { env, log, quick } = context;
  const count = SLOTS;
  const turns = quick ? 3 : 4;
  const maxTokens = 16;
  const rounds = context.iterations ?? (quick ? 1 : 2);

  const dir = await env.smallModelsDir();
  const [first, second] = await Promise.all([env.node("bench-small", [dir]), env.node("bench-small-2", [dir])]);
  await Promise.all([env.load(first, SMALL_CHAT), env.load(second, SMALL_CHAT)]);
  const gateway = await env.gatewayTarget();
  const binary = process.env.LLAMA_SERVER;
  const server = binary === undefined || binary === "" ? null : await startLlamaServer(context, binary, dir);

  const targets: Array<{ name: "direct" | "llamaServer" | "gateway"; target: Target }> = [
    { name: "direct", target: first.direct },
    ...(server === null ? [] : [{ name: "llamaServer" as const, target: server.target }]),
    { name: "gateway", target: gateway },
  ];
  const runs: Record<string, ConversationsRun[]> = { direct: [], llamaServer: [], gateway: [] };
  try {
    log(`multi-turn: ${count} conversations × ${turns} turns, ${rounds} round(s) of ${targets.map((entry) => entry.name).join(", ")}`);
    await withProgress("multi-turn", rounds, log, async (index) => {
      const order = index % 2 === 0 ? targets : [...targets].reverse();
      for (const { name, target } of order) {
        const run = await conversations(target, `${name}-${index}`, count, turns, maxTokens);
        runs[name]?.push(run);
        const ttft = run.ttftMs.map((turn) => round(median(turn)));
        log(`multi-turn ${name}: TTFT p50 per turn ${ttft.join(" → ")} ms; cached tokens ${JSON.stringify(run.cachedTokens)}`);
      }
    });
  } finally {
    await server?.stop();
  }

  const data: MultiTurnData = {
    conversations: count,
    turns,
    maxTokens,
    rounds,
    direct: summarizeTurns(runs.direct ?? []),
    ...(server === null ? { llamaServerSkipped: "LLAMA_SERVER is not set" } : { llamaServer: summarizeTurns(runs.llamaServer ?? []) }),
    gateway: summarizeTurns(runs.gateway ?? []),
  };

  const section = `multi-turn (${SMALL_CHAT}, ${count} conversations × ${turns} turns at once, ${rounds} round${rounds > 1 ? "s" : ""})`;
  const describe = (path: PathTurns) => `${round(path.coldTtftMs)} → ${round(path.warmTtftMs)} ms = ×${path.ratio.toFixed(2)}`;
  const rows: Row[] = [{ section, measure: "direct: TTFT p50 turn 1 → turns 2+ (warm ÷ cold)", value: describe(data.direct) }];
  if (data.llamaServer) {
    const relative = data.direct.ratio / data.llamaServer.ratio;
    rows.push(
      { section, measure: "llama-server: TTFT p50 turn 1 → turns 2+ (warm ÷ cold)", value: describe(data.llamaServer) },
      {
        section,
        measure: "direct's warm÷cold ÷ llama-server's",
        value: `×${relative.toFixed(2)}`,
        target: `≤ ×${ENGINE_RATIO_TARGET}`,
        met: relative <= ENGINE_RATIO_TARGET,
      },
    );
  } else {
    rows.push({ section, measure: "llama-server", value: `skipped: ${data.llamaServerSkipped}` });
  }
  const viaGateway = data.gateway.ratio / data.direct.ratio;
  rows.push(
    { section, measure: `gateway, 2 agents: TTFT p50 turn 1 → turns 2+ (warm ÷ cold)`, value: describe(data.gateway) },
    { section, measure: "gateway's warm÷cold ÷ direct's", value: `×${viaGateway.toFixed(2)}`, target: `≤ ×${GATEWAY_RATIO_TARGET}`, met: viaGateway <= GATEWAY_RATIO_TARGET },
    // The gateway spreads turn 1 over its two agents, so its cold TTFT can be far below direct's one
    // agent; then the ratio above grows although every turn is faster. This row compares warm turns alone.
    { section, measure: "gateway's warm TTFT ÷ direct's", value: `×${(data.gateway.warmTtftMs / data.direct.warmTtftMs).toFixed(2)}` },
  );
  return { data, rows };
}
