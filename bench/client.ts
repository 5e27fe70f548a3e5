/**
 * The bench's client: timed `/v1/completions` calls, plain and streamed, over Node's fetch
 * (keep-alive). The same code drives the gateway, the agent's direct mode and llama-server.
 */

export interface Target {
  /** Shown in progress lines and the table. */
  label: string;
  /** Base URL, without `/v1`. */
  url: string;
  /** Bearer key; the agent's direct mode and llama-server need none. */
  apiKey?: string;
}

export interface CompletionParams {
  model: string;
  prompt: string;
  maxTokens: number;
  /** More body fields (e.g. `draft_model`), over the defaults below. */
  extra?: Record<string, unknown>;
}

const TIMEOUT_MS = 180_000;

/** A chat turn: the whole conversation so far, as chat clients send it. */
export interface ChatParams {
  model: string;
  messages: Array<{ role: "system" | "user" | "assistant"; content: string }>;
  maxTokens: number;
}

function request(target: Target, params: CompletionParams | ChatParams, stream: boolean, signal?: AbortSignal): RequestInit {
  return {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(target.apiKey === undefined ? {} : { authorization: `Bearer ${target.apiKey}` }),
    },
    body: JSON.stringify({
      model: params.model,
      ...("prompt" in params ? { prompt: params.prompt } : { messages: params.messages }),
      max_tokens: params.maxTokens,
      temperature: 0,
      seed: 1,
      stream,
      ...(stream ? { stream_options: { include_usage: true } } : {}),
      ...("extra" in params ? params.extra : {}),
    }),
    // A caller's signal replaces the timeout: it decides how long the request may run.
    signal: signal ?? AbortSignal.timeout(TIMEOUT_MS),
  };
}

async function failure(target: Target, response: Response): Promise<Error> {
  return new Error(`${target.label}: HTTP ${response.status}: ${(await response.text()).slice(0, 300)}`);
}

/** One non-streaming completion; resolves to its round-trip time in ms. */
export async function timedCompletion(target: Target, params: CompletionParams): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${target.url}/v1/completions`, request(target, params, false));
  if (!response.ok) throw await failure(target, response);
  await response.arrayBuffer();
  return performance.now() - started;
}

/**
 * The generated models have random weights: greedy decoding runs into the end-of-text token after
 * a prompt-dependent number of tokens. Returns the first of `candidates` that generates the full
 * `maxTokens` on `target` (or the one that gets furthest), so streams are as long as asked.
 */
export async function promptForFullLength(target: Target, model: string, maxTokens: number, candidates: readonly string[]): Promise<{ prompt: string; tokens: number }> {
  let best = { prompt: candidates[0] ?? "", tokens: -1 };
  for (const prompt of candidates) {
    const response = await fetch(`${target.url}/v1/completions`, request(target, { model, prompt, maxTokens }, false));
    if (!response.ok) throw await failure(target, response);
    const tokens = ((await response.json()) as { usage?: { completion_tokens?: number } }).usage?.completion_tokens ?? 0;
    if (tokens > best.tokens) best = { prompt, tokens };
    if (tokens >= maxTokens) break;
  }
  return best;
}

/**
 * Posts a small JSON body and reads the answer, which must have status `expectStatus` (default
 * 200); for the floor's echo paths and the gateway's early refusals.
 */
export async function timedPost(url: string, body: unknown, options: { apiKey?: string; expectStatus?: number } = {}): Promise<number> {
  const started = performance.now();
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` }) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  if (response.status !== (options.expectStatus ?? 200)) throw new Error(`${url}: HTTP ${response.status}: ${(await response.text()).slice(0, 300)}`);
  await response.arrayBuffer();
  return performance.now() - started;
}

export interface StreamTiming {
  /** ms from sending the request to the first text. */
  ttftMs: number;
  /** ms from sending the request to the end of the stream. */
  totalMs: number;
  /** ms from the first text to the last text. */
  decodeMs: number;
  /** `usage.completion_tokens`, or the number of text chunks when the server sent no usage. */
  tokens: number;
  /** SSE events that carried text. */
  textEvents: number;
  /** The longest pause between two text events (ms): a stalled stream shows here. */
  maxGapMs: number;
  /** The node that served it, from the gateway's `gateway` object (absent on direct paths). */
  node?: string;
}

/** A streamed chat turn: its timing, the answer (for the next turn's history) and the prompt tokens the server reused. */
export interface ChatTiming extends StreamTiming {
  text: string;
  /** `usage.prompt_tokens_details.cached_tokens`, or llama-server's `timings.cache_n`. */
  cachedTokens?: number;
}

interface StreamChunk {
  choices?: Array<{ text?: string; delta?: { content?: string | null } }>;
  usage?: { completion_tokens?: number; prompt_tokens_details?: { cached_tokens?: number } } | null;
  timings?: { cache_n?: number };
  gateway?: { node?: string };
  error?: { message?: string };
}

export interface StreamOptions {
  /** Called with `performance.now()` at each event that carries text. */
  onText?: (at: number) => void;
  /** Ends the request (the promise then rejects with the abort's reason), instead of the usual timeout. */
  signal?: AbortSignal;
}

/** One streamed completion, timed per event as the bytes arrive. */
export function timedStream(target: Target, params: CompletionParams, options: StreamOptions = {}): Promise<StreamTiming> {
  return timedSse(target, "/v1/completions", params, options);
}

/** One streamed chat completion, timed like `timedStream`. */
export function timedChatStream(target: Target, params: ChatParams): Promise<ChatTiming> {
  return timedSse(target, "/v1/chat/completions", params);
}

async function timedSse(target: Target, path: string, params: CompletionParams | ChatParams, options: StreamOptions = {}): Promise<ChatTiming> {
  const started = performance.now();
  const response = await fetch(`${target.url}${path}`, request(target, params, true, options.signal));
  if (!response.ok || response.body === null) throw await failure(target, response);
  const decoder = new TextDecoder();
  let buffer = "";
  let firstText: number | undefined;
  let lastText = started;
  let textEvents = 0;
  let maxGapMs = 0;
  let usageTokens: number | undefined;
  let node: string | undefined;
  let cachedTokens: number | undefined;
  let answer = "";
  let done = false;
  for await (const bytes of response.body) {
    const now = performance.now();
    buffer += decoder.decode(bytes, { stream: true });
    let boundary: number;
    while ((boundary = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") {
          done = true;
          continue;
        }
        const chunk = JSON.parse(data) as StreamChunk;
        if (chunk.error) throw new Error(`${target.label}: error event: ${chunk.error.message ?? data}`);
        const choice = chunk.choices?.[0];
        const text = choice?.text ?? choice?.delta?.content ?? "";
        if (text !== "") {
          answer += text;
          if (firstText !== undefined) maxGapMs = Math.max(maxGapMs, now - lastText);
          firstText ??= now;
          lastText = now;
          textEvents += 1;
          options.onText?.(now);
        }
        if (typeof chunk.usage?.completion_tokens === "number") usageTokens = chunk.usage.completion_tokens;
        cachedTokens = chunk.usage?.prompt_tokens_details?.cached_tokens ?? chunk.timings?.cache_n ?? cachedTokens;
        node ??= chunk.gateway?.node;
      }
    }
  }
  const ended = performance.now();
  if (!done) throw new Error(`${target.label}: the stream ended without [DONE]`);
  if (firstText === undefined) throw new Error(`${target.label}: the stream carried no text`);
  return {
    ttftMs: firstText - started,
    totalMs: ended - started,
    decodeMs: lastText - firstText,
    tokens: usageTokens ?? textEvents,
    textEvents,
    maxGapMs,
    ...(node === undefined ? {} : { node }),
    text: answer,
    ...(cachedTokens === undefined ? {} : { cachedTokens }),
  };
}

/** Tokens per second after the first token: (tokens − 1) over the time from first to last text. */
export function decodeRate(timing: StreamTiming): number {
  return timing.decodeMs > 0 ? (timing.tokens - 1) / (timing.decodeMs / 1000) : Number.NaN;
}

/** Tokens per second over the whole request, first byte of the request to the end of the stream. */
export function endToEndRate(timing: StreamTiming): number {
  return timing.tokens / (timing.totalMs / 1000);
}
