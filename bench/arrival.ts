/**
 * A newcomer's long prompt while streams run: 3 streams generate on the small model when a
 * ~2,000-token prompt arrives on the 4th slot. The longest pause between two tokens of the running
 * streams while it is evaluated, the tokens they still sent meanwhile, and the newcomer's time to
 * first token: the agent's direct mode against llama-server with the engine section's settings,
 * interleaved, each round with a prompt of its own (so no cache helps).
 */
import { startLlamaServer } from "./llama-server.ts";
import { timedStream, type CompletionParams, type Target } from "./client.ts";
import { SLOTS, SMALL_CHAT } from "./environment.ts";
import { withProgress, type SectionContext, type SectionResult } from "./section.ts";
import { median, round } from "./stats.ts";

export interface ArrivalRun {
  /** The longest pause between two text events of any running stream while the newcomer's prompt was evaluated. */
  pauseMs: number;
  newcomerTtftMs: number;
  /** Text events of the running streams from the newcomer's request to its answer. */
  textsDuring: number;
  /** Running streams still generating when the newcomer's answer came (the others ended early and do not count). */
  streamsCovering: number;
}

export interface ArrivalData {
  skipped?: string;
  model?: string;
  promptTokens?: number;
  runningStreams?: number;
  agent?: ArrivalRun[];
  llamaServer?: ArrivalRun[];
  /** Medians over the rounds. */
  agentPauseMs?: number;
  llamaServerPauseMs?: number;
  /** agent ÷ llama-server, longest pause (target ≤ 1). */
  ratio?: number;
}

export const PAUSE_TARGET = 1.0;
const PROMPT_TOKENS = 2000;
const RUNNING = SLOTS - 1;
/** The running streams' prompt (one the random-weight model answers at length) and a length they do not reach before they are stopped. */
const RUNNING_PARAMS: CompletionParams = { model: SMALL_CHAT, prompt: "tree house sea the", maxTokens: 1000 };
const WORDS = ["sea", "tree", "house", "the", "a", "wave", "salt", "water", "stone", "wind"];

/** A prompt of about `tokens` tokens for the model llama-server serves, starting with `tag` so no two share a cached prefix. */
async function longPrompt(server: Target, tag: string, tokens: number): Promise<string> {
  const words = (count: number) => Array.from({ length: count }, (_, index) => WORDS[(index * 7 + tag.length) % WORDS.length]).join(" ");
  const count = async (text: string) => {
    const response = await fetch(`${server.url}/tokenize`, { method: "POST", body: JSON.stringify({ content: text }) });
    if (!response.ok) throw new Error(`llama-server /tokenize: HTTP ${response.status}`);
    return ((await response.json()) as { tokens: unknown[] }).tokens.length;
  };
  const sample = 500;
  const perWord = (await count(words(sample))) / sample;
  return `${tag}: ${words(Math.round((tokens - (await count(`${tag}: `))) / perWord))}`;
}

/** One arrival on `target`: 3 streams running, then the newcomer; the running streams are stopped after its answer. */
async function arrival(target: Target, newcomer: CompletionParams): Promise<ArrivalRun> {
  // The running streams end when the newcomer has its answer, or after 10 minutes at most.
  const stop = new AbortController();
  const timeout = setTimeout(() => stop.abort(new Error(`${target.label}: the arrival took over 10 minutes`)), 600_000);
  const texts: number[][] = Array.from({ length: RUNNING }, () => []);
  let going!: () => void;
  const allGoing = new Promise<void>((resolve) => (going = resolve));
  const streams = texts.map((times) =>
    timedStream(target, RUNNING_PARAMS, {
      signal: stop.signal,
      onText: (at) => {
        times.push(at);
        if (texts.every((list) => list.length >= 3)) going();
      },
    }).catch((error: unknown) => {
      if (!stop.signal.aborted) throw error;
    }),
  );
  try {
    await Promise.race([allGoing, Promise.all(streams).then(() => Promise.reject(new Error(`${target.label}: a running stream ended before the newcomer came`)))]);
    const sent = performance.now();
    const answer = await timedStream(target, newcomer);
    const answered = sent + answer.ttftMs;
    // The streams' tokens of the prompt's last batch arrive with the newcomer's: wait for them (bounded).
    for (let wait = 0; wait < 100 && texts.some((times) => (times.at(-1) ?? 0) < answered); wait++) await new Promise((resolve) => setTimeout(resolve, 50));
    let pauseMs = 0;
    let textsDuring = 0;
    let streamsCovering = 0;
    for (const times of texts) {
      if ((times.at(-1) ?? 0) >= answered) streamsCovering++;
      for (let index = 1; index < times.length; index++) {
        const [before, at] = [times[index - 1] as number, times[index] as number];
        if (at > sent && before < answered) pauseMs = Math.max(pauseMs, at - before);
        if (at > sent && at <= answered) textsDuring++;
      }
    }
    return { pauseMs, newcomerTtftMs: answer.ttftMs, textsDuring, streamsCovering };
  } finally {
    clearTimeout(timeout);
    stop.abort();
    await Promise.allSettled(streams);
  }
}

export async function runArrival(context: SectionContext): Promise<SectionResult<ArrivalData>> {
  const { env, log, quick } = context;
  const section = `arrival (${SMALL_CHAT}, ${RUNNING} streams running, a ${PROMPT_TOKENS}-token prompt arrives)`;
  const binary = process.env.LLAMA_SERVER;
  if (binary === undefined || binary === "") {
    const skipped = "LLAMA_SERVER is not set (build one with scripts/build-llama-server.sh)";
    log(`arrival: skipped: ${skipped}`);
    return { data: { skipped }, rows: [{ section, measure: "agent direct vs llama-server", value: `skipped: ${skipped}` }] };
  }
  const dir = await env.smallModelsDir();
  const node = await env.node("bench-small", [dir]);
  await env.load(node, SMALL_CHAT);
  const server = await startLlamaServer(context, binary, dir);
  try {
    const rounds = context.iterations ?? (quick ? 1 : 2);
    const agentRuns: ArrivalRun[] = [];
    const serverRuns: ArrivalRun[] = [];
    log(`arrival: ${rounds} × (agent, llama-server)`);
    await withProgress("arrival", rounds, log, async (index) => {
      const order = index % 2 === 0 ? [node.direct, server.target] : [server.target, node.direct];
      for (const target of order) {
        const prompt = await longPrompt(server.target, `Round ${index + 1} for ${target.label}`, PROMPT_TOKENS);
        const run = await arrival(target, { model: SMALL_CHAT, prompt, maxTokens: 1 });
        log(`arrival: ${target.label}: longest pause ${round(run.pauseMs)} ms, newcomer TTFT ${round(run.newcomerTtftMs)} ms, ${run.textsDuring} texts meanwhile`);
        (target === node.direct ? agentRuns : serverRuns).push(run);
      }
    });
    const agentPauseMs = median(agentRuns.map((run) => run.pauseMs));
    const llamaServerPauseMs = median(serverRuns.map((run) => run.pauseMs));
    const ratio = agentPauseMs / llamaServerPauseMs;
    const ttft = (runs: ArrivalRun[]) => median(runs.map((run) => run.newcomerTtftMs));
    const during = (runs: ArrivalRun[]) => median(runs.map((run) => run.textsDuring));
    return {
      data: { model: SMALL_CHAT, promptTokens: PROMPT_TOKENS, runningStreams: RUNNING, agent: agentRuns, llamaServer: serverRuns, agentPauseMs, llamaServerPauseMs, ratio },
      rows: [
        {
          section,
          measure: "longest pause between two tokens of the running streams: llama-server → agent direct",
          value: `${round(llamaServerPauseMs)} → ${round(agentPauseMs)} ms = ×${ratio.toFixed(2)}`,
          target: `≤ ×${PAUSE_TARGET}`,
          met: ratio <= PAUSE_TARGET,
        },
        {
          section,
          measure: "the running streams' texts while the prompt is evaluated · the newcomer's TTFT: llama-server → agent",
          value: `${during(serverRuns)} → ${during(agentRuns)} · ${round(ttft(serverRuns))} → ${round(ttft(agentRuns))} ms`,
        },
      ],
    };
  } finally {
    await server.stop();
  }
}
