import type { Context, Env, Hono } from "hono";
import { DocumentedRoutes } from "../app/documented-routes.ts";
import { answerGeneration, type GenerationRouteOptions, type RunGeneration } from "../app/generation-response.ts";
import { unixSeconds } from "../app/response-ids.ts";
import { ChatRequest, CompletionRequest, EmbeddingsRequest } from "../protocol/request-schemas.ts";
import { SSE_DONE, sseData } from "../app/sse-response.ts";
import { ChoiceTexts, type ChoiceRequest } from "./choice-texts.ts";
import { ChunkShaper, completionBody, embeddingsBody, responseId, type CompletionKind, type Flavor } from "./completion-bodies.ts";
import { ChatCompletion, EmbeddingsResponse, TextCompletion } from "./completion-schemas.ts";

/**
 * OpenAI's chat completions, completions and embeddings, under `/v1` in OpenAI's plain shape and
 * under `/api/v0` as LM Studio's v0 API (with stats), on any `InferenceBackend`.
 */
export function mountOpenAICompletions<E extends Env>(app: Hono<E>, options: GenerationRouteOptions<E>): void {
  const { backend } = options;
  const lmstudio = new DocumentedRoutes(app, { tag: "lmstudio", security: "apiKey" });
  const openai = new DocumentedRoutes(app, { tag: "openai", security: "apiKey" });
  /** Runs a chat or text completion and answers with JSON, or SSE when the request streams. */
  const generate = (c: Context<E>, call: CompletionCall, run: RunGeneration): Promise<Response> => {
    const shape = { kind: call.kind, flavor: call.flavor, choices: call.choices, head: { id: responseId(call.kind), created: unixSeconds(), model: call.model } };
    if (call.stream === undefined) {
      const texts = new ChoiceTexts(call.choices.count);
      return answerGeneration(c, (signal) => texts.tap(run(signal)), { json: (_text, result) => completionBody(shape, texts.all, result) }, options);
    }
    const shaper = new ChunkShaper(shape);
    const includeUsage = call.stream.includeUsage;
    return answerGeneration(c, run, {
      stream: {
        frames: (event) => {
          if (event.type === "start") return shaper.opening().map(sseData);
          if (event.type === "delta") return [sseData(shaper.delta(event.text, event.index, event.logprobs))];
          return [...shaper.closing(event.result, includeUsage).map(sseData), SSE_DONE];
        },
        failure: (error) => [sseData(error.toBody())],
      },
    }, options);
  };

  for (const [prefix, flavor, family] of [["/api/v0", "lmstudio", "LM Studio v0, with stats"], ["/v1", "openai", "OpenAI"]] as const) {
    const routes = flavor === "lmstudio" ? lmstudio : openai;
    routes.post(`${prefix}/chat/completions`, { summary: `Chat completion (${family})`, body: ChatRequest, response: ChatCompletion, streams: true }, async (c, body) => {
      const call = { kind: "chat", model: body.model, flavor, choices: { count: body.n ?? 1, logprobs: body.logprobs === true }, stream: streamOf(body) } as const;
      return generate(c, call, (signal) => backend(c).chat(body, signal));
    });
    routes.post(`${prefix}/completions`, { summary: `Text completion, no chat template (${family})`, body: CompletionRequest, response: TextCompletion, streams: true }, async (c, body) => {
      const call = { kind: "text", model: body.model, flavor, choices: { count: body.n ?? 1, logprobs: body.logprobs !== undefined }, stream: streamOf(body) } as const;
      return generate(c, call, (signal) => backend(c).completion(body, signal));
    });
    routes.post(`${prefix}/embeddings`, { summary: `Embeddings (${family})`, body: EmbeddingsRequest, response: EmbeddingsResponse }, async (c, body) => {
      return embeddingsBody(await backend(c).embeddings(body, c.req.raw.signal), body.encoding_format);
    });
  }
}

/** A chat or text completion as the request asks it answered: its API and flavor, its choices, and whether (and how) it streams. */
interface CompletionCall {
  kind: CompletionKind;
  model: string;
  flavor: Flavor;
  choices: ChoiceRequest;
  /** Absent: one JSON body. `includeUsage`: a last chunk carries the usage (`stream_options.include_usage`). */
  stream: { includeUsage: boolean } | undefined;
}

const streamOf = (body: ChatRequest | CompletionRequest): CompletionCall["stream"] =>
  body.stream ? { includeUsage: body.stream_options?.include_usage === true } : undefined;
