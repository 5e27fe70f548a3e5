import {
  LlamaChat,
  LlamaCompletion,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatModelFunctions,
  type ChatWrapper,
  type EvaluationPriority,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaGrammar,
  type LlamaModel,
  type LlamaText,
  type Token,
} from "node-llama-cpp";
import { ApiError, contextOverflow, invalidRequest, toApiError } from "../../shared/protocol/api-error.ts";
import type { DraftStats, GenerationEvent, GenerationResult, ModelInfo, Runtime, TokenLogprob } from "../../shared/protocol/generation-events.ts";
import type { ChatRequest, CompletionRequest, ResponseFormat, ToolCall } from "../../shared/protocol/request-schemas.ts";
import { AsyncQueue } from "./async-queue.ts";
import { slotPriority } from "./batch-order.ts";
import { createBatchedContext, type BatchCounts } from "./batched-context.ts";
import { reusablePrefixLength } from "./cached-prefix.ts";
import { choiceSeed, mergeChoices } from "./choices.ts";
import { toChatHistory } from "./chat-history.ts";
import { modelUnloaded, requestCancelled } from "../../shared/protocol/api-error.ts";
import { finishReasonOf, GenerationTimer, stopReasonOf, type EngineStopReason } from "./generation-stats.ts";
import { createJsonGrammar, createJsonSchemaGrammar, toGrammarSchema, UnsupportedSchemaError } from "./json-schema.ts";
import { samplingOptions, tokenBias, type SamplingOptions } from "./sampling-options.ts";
import { SlotPool } from "./slot-pool.ts";
import { SlotPredictor } from "./speculative/slot-predictor.ts";
import { ActiveSpeculation, type SequenceLoan, type Speculation } from "./speculative/speculation.ts";
import { vocabularyMismatch } from "./speculative/vocabulary-match.ts";
import type { MeasuredSpeed } from "./speed-tracker.ts";
import { generateWithLogprobs } from "./token-logprobs.ts";
import { parseForcedCall, planTools, toToolCalls } from "./tool-calls.ts";

export interface LlmLoadOptions {
  id: string;
  path: string;
  /** Context per slot, in tokens. */
  contextLength: number;
  slots: number;
  maxQueue: number;
  threads: number;
  arch: string;
  quantization: string;
  runtime: Runtime;
  onLoadProgress?: (fraction: number) => void;
  /** Slots went busy or free. */
  onSlotsChange?: () => void;
  /** A generation finished with a measurable decode speed. */
  onMeasured?: (speed: MeasuredSpeed) => void;
}

/** One context sequence and the node-llama-cpp helpers bound to it. */
interface Slot {
  sequence: LlamaContextSequence;
  /** Puts the slot's tokens in sequence order in a batch (batch-order.ts). */
  priority: EvaluationPriority;
  /** Holds the draft model's or prompt lookup's predictor of the request on the slot, if it asked for one. */
  predictor: SlotPredictor;
  chat: LlamaChat;
  completion: LlamaCompletion;
}

interface RunHooks {
  signal: AbortSignal;
  onText: (text: string, logprobs?: TokenLogprob[]) => void;
  onToken: () => void;
}

interface RunOutcome {
  stopReason: EngineStopReason;
  /** The caller's stop string that ended the text. */
  stopString?: string;
  toolCalls?: ToolCall[];
}

/** A request checked against the loaded model, ready to run as soon as it holds a slot. */
interface Plan {
  /** The prompt as the slot's sequence will hold it, which also picks the slot that caches most of it. */
  prompt: Token[];
  maxTokens: number;
  limitIsContextEnd: boolean;
  run(slot: Slot, hooks: RunHooks): Promise<RunOutcome>;
}

/**
 * A loaded LLM: one llama.cpp context whose sequences are the slots parallel requests run in
 * (batched together by node-llama-cpp), behind a bounded queue.
 */
export class LoadedLlm {
  readonly id: string;
  readonly contextLength: number;
  /**
   * Whether requests may draft (speculative decoding). Not on models whose state cannot simply be
   * cut back (recurrent or hybrid layers, sliding-window attention): node-llama-cpp would take a
   * checkpoint at every token of every request, and rolls drafted tokens back inexactly there.
   */
  readonly speculates: boolean;
  readonly #llama: Llama;
  readonly #model: LlamaModel;
  readonly #context: LlamaContext;
  readonly #batches: BatchCounts;
  readonly #slots: Slot[];
  readonly #pool: SlotPool;
  readonly #chatWrapper: ChatWrapper;
  readonly #vocabularySize: number;
  /** The token `LlamaCompletion` puts before every input, which the prompt count must include. */
  readonly #completionBos: Token | null;
  readonly #modelInfo: ModelInfo;
  readonly #runtime: Runtime;
  readonly #onMeasured: (speed: MeasuredSpeed) => void;
  readonly #unloading = new AbortController();
  readonly #running = new Set<Promise<unknown>>();
  #jsonGrammar: Promise<LlamaGrammar> | undefined;
  #disposed: Promise<void> | undefined;

  private constructor(llama: Llama, model: LlamaModel, { context, counts }: { context: LlamaContext; counts: BatchCounts }, options: LlmLoadOptions) {
    this.id = options.id;
    this.#batches = counts;
    this.contextLength = context.contextSize;
    this.#llama = llama;
    this.#model = model;
    this.#context = context;
    this.#chatWrapper = resolveChatWrapper(model);
    const insights = model.fileInsights;
    this.speculates = !insights.isRecurrent && !insights.isHybrid && insights.swaSize == null;
    this.#slots = Array.from({ length: context.totalSequences }, (_, index) => {
      const predictor = new SlotPredictor();
      const sequence = context.getSequence(this.speculates ? { tokenPredictor: predictor } : {});
      return {
        sequence,
        priority: slotPriority(index, context.totalSequences),
        predictor,
        chat: new LlamaChat({ contextSequence: sequence, chatWrapper: this.#chatWrapper }),
        completion: new LlamaCompletion({ contextSequence: sequence }),
      };
    });
    this.#pool = new SlotPool({ size: this.#slots.length, maxQueue: options.maxQueue, label: `model "${options.id}"`, onChange: options.onSlotsChange });
    this.#vocabularySize = Array.from(model.iterateAllTokens()).length;
    this.#completionBos = model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
    this.#modelInfo = { arch: options.arch, quant: options.quantization, format: "gguf", context_length: context.contextSize };
    this.#runtime = options.runtime;
    this.#onMeasured = options.onMeasured ?? (() => {});
  }

  static async load(llama: Llama, options: LlmLoadOptions): Promise<LoadedLlm> {
    const model = await llama.loadModel({ modelPath: options.path, onLoadProgress: options.onLoadProgress });
    try {
      const batched = await createBatchedContext(model, {
        contextSize: options.contextLength,
        sequences: options.slots,
        threads: options.threads,
        // llama.cpp's own default where supported: attention without the full score matrix reads a
        // coding agent's long prompt several times faster (4.5x at 10k tokens on a 2-core CPU).
        flashAttention: true,
      });
      return new LoadedLlm(llama, model, batched, options);
    } catch (error) {
      await model.dispose();
      throw error;
    }
  }

  get slots(): number {
    return this.#pool.size;
  }

  get busySlots(): number {
    return this.#pool.busy;
  }

  /** Decodes run so far and the sequences they carried: their ratio is how well concurrent streams batch. */
  get batchCounts(): Readonly<BatchCounts> {
    return { ...this.#batches };
  }

  /** Requests waiting for a slot. */
  get queuedRequests(): number {
    return this.#pool.waiting;
  }

  /** Chat through the model's own chat template. Errors (also a prompt too long) come before any event. */
  chat(request: ChatRequest, signal: AbortSignal, speculation?: Speculation): AsyncGenerator<GenerationEvent> {
    return this.#choices(request, (seed) => this.#generate(() => this.#planChat({ ...request, seed }), signal, speculation));
  }

  /** Tokens the model would read for this chat request (template and tools included), counted as `chat` counts them. */
  countTokens(request: ChatRequest): number {
    const prompt = this.#chatPrompt(request);
    return prompt.tools.mode === "forced" ? this.#forcedInput(prompt.tokens).prompt.length : prompt.tokens.length;
  }

  /** Raw text completion: no template; special tokens written in the prompt are honoured, as llama.cpp's server does. */
  completion(request: CompletionRequest, signal: AbortSignal, speculation?: Speculation): AsyncGenerator<GenerationEvent> {
    return this.#choices(request, (seed) => this.#generate(() => this.#planCompletion({ ...request, seed }), signal, speculation));
  }

  /** As a draft model: the request's logit_bias for this model, ids beyond its vocabulary left out. */
  tokenBias(logitBias: Record<string, number>) {
    const known = Object.entries(logitBias).filter(([id]) => /^\d+$/.test(id) && Number(id) < this.#vocabularySize);
    return tokenBias(Object.fromEntries(known), { tokenizer: this.#model.tokenizer, vocabularySize: this.#vocabularySize });
  }

  /** Why `draft` cannot draft for this model (its vocabulary differs), or undefined when it can. */
  draftMismatch(draft: LoadedLlm): string | undefined {
    return vocabularyMismatch({ model: this.#model, size: this.#vocabularySize }, { model: draft.#model, size: draft.#vocabularySize });
  }

  /**
   * As a draft model: one of this model's free slots, for another model's generation to draft
   * on, until released. Never waits: a generation does without a draft rather than queue for one.
   * Unloading waits for lent slots to come back, as their drafting must not outlive the context.
   */
  lendSequence(prompt: Token[]): SequenceLoan | undefined {
    const lease = this.#pool.tryAcquire((index) => reusablePrefixLength((this.#slots[index] as Slot).sequence, prompt));
    if (!lease) return undefined;
    let returned = () => {};
    const lent = new Promise<void>((resolve) => (returned = resolve));
    this.#running.add(lent);
    void lent.then(() => this.#running.delete(lent));
    return {
      sequence: (this.#slots[lease.index] as Slot).sequence,
      release: () => {
        lease.release();
        returned();
      },
    };
  }

  /** `n` > 1: that many generations of the same prompt, on the slots free now, the rest after them. */
  #choices(request: { n?: number; seed?: number }, generate: (seed: number | undefined) => AsyncGenerator<GenerationEvent>): AsyncGenerator<GenerationEvent> {
    const count = request.n ?? 1;
    if (count === 1) return generate(request.seed);
    const runs = Array.from({ length: count }, (_, index) => () => generate(choiceSeed(request.seed, index)));
    return mergeChoices(runs, this.#pool.size - this.#pool.busy);
  }

  /** Stops running generations (`modelUnloaded`), refuses queued ones, then frees the context and the model. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      this.#unloading.abort();
      this.#pool.close(modelUnloaded(this.id));
      await Promise.allSettled(this.#running);
      await this.#context.dispose();
      await this.#model.dispose();
    })();
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  async *#generate(makePlan: () => Promise<Plan>, signal: AbortSignal, speculation: Speculation | undefined): AsyncGenerator<GenerationEvent> {
    try {
      yield* this.#run(makePlan, signal, speculation);
    } catch (error) {
      throw this.#failure(error, signal);
    }
  }

  async *#run(makePlan: () => Promise<Plan>, signal: AbortSignal, speculation: Speculation | undefined): AsyncGenerator<GenerationEvent> {
    if (signal.aborted) throw requestCancelled();
    const plan = await makePlan();
    const lease = await this.#pool.acquire(signal, (index) => reusablePrefixLength((this.#slots[index] as Slot).sequence, plan.prompt));
    const slot = this.#slots[lease.index] as Slot;
    const stop = new AbortController();
    const timer = new GenerationTimer();
    const texts = new AsyncQueue<{ text: string; logprobs?: TokenLogprob[] }>();
    const generationSignal = AbortSignal.any([signal, stop.signal, this.#unloading.signal]);

    const outcome = (async () => {
      let speculating: ActiveSpeculation | undefined;
      try {
        speculating = speculation && (await ActiveSpeculation.start(slot.sequence, slot.predictor, speculation, plan.prompt));
        const meter = slot.sequence.tokenMeter.getState();
        const ran = await plan.run(slot, { signal: generationSignal, onText: (text, logprobs) => texts.push({ text, logprobs }), onToken: timer.onToken });
        // Read before the slot goes to the next request, which would add its own tokens.
        const used = slot.sequence.tokenMeter.diff(meter);
        const drafted: DraftStats = speculating?.counts() ?? {};
        const completionTokens = used.usedOutputTokens - ActiveSpeculation.evaluatedNotGenerated(drafted);
        return { ...ran, completionTokens, cachedTokens: cachedPromptTokens(plan.prompt.length, used.usedInputTokens), drafted };
      } finally {
        try {
          await speculating?.end();
        } finally {
          lease.release();
        }
      }
    })();
    this.#running.add(outcome);
    outcome.then(
      () => texts.end(),
      (error: unknown) => texts.fail(error),
    );
    outcome.finally(() => this.#running.delete(outcome)).catch(() => {});

    try {
      yield { type: "start", model: this.id, prompt_tokens: plan.prompt.length };
      for await (const { text, logprobs } of texts) yield { type: "delta", text, ...(logprobs ? { logprobs } : {}) };
      const ran = await outcome;
      const stopReason = stopReasonOf(ran.stopReason, {
        limitIsContextEnd: plan.limitIsContextEnd,
        unloading: this.#unloading.signal.aborted && !signal.aborted,
      });
      const stats = { ...timer.stats(ran.completionTokens, stopReason), cached_prompt_tokens: ran.cachedTokens, ...ran.drafted };
      if (stats.tokens_per_second > 0) {
        this.#onMeasured({ tokens_per_second: stats.tokens_per_second, time_to_first_token: stats.time_to_first_token });
      }
      const result: GenerationResult = {
        finish_reason: finishReasonOf(stopReason),
        usage: {
          prompt_tokens: plan.prompt.length,
          completion_tokens: ran.completionTokens,
          total_tokens: plan.prompt.length + ran.completionTokens,
          prompt_tokens_details: { cached_tokens: ran.cachedTokens },
        },
        stats,
        model_info: this.#modelInfo,
        runtime: this.#runtime,
        ...(ran.toolCalls ? { tool_calls: ran.toolCalls } : {}),
        ...(ran.stopString !== undefined ? { stop_string: ran.stopString } : {}),
      };
      yield { type: "done", result };
    } finally {
      // Reached early when the consumer stops iterating: stop generating and give the slot back now.
      stop.abort();
      await outcome.catch(() => {});
    }
  }

  /** The conversation as the template renders it, with the tools the model is offered. */
  #chatPrompt(request: ChatRequest) {
    const tools = planTools(request);
    const history = toChatHistory(request.messages);
    const functions = tools.mode === "none" ? undefined : tools.functions;
    return { tools, history, functions, tokens: this.#renderChat(history, functions).tokenize(this.#model.tokenizer) };
  }

  /**
   * A forced call's grammar cannot ride along `functions` in LlamaChat, so the rendered prompt
   * (which shows the tools) goes through LlamaCompletion, which puts its own BOS first.
   */
  #forcedInput(promptTokens: Token[]): { input: Token[]; prompt: Token[] } {
    const input = promptTokens[0] === this.#completionBos ? promptTokens.slice(1) : promptTokens;
    return { input, prompt: this.#withCompletionBos(input) };
  }

  async #planChat(request: ChatRequest): Promise<Plan> {
    const { tools, history, functions, tokens: promptTokens } = this.#chatPrompt(request);
    const format = request.response_format;
    if (request.top_logprobs !== undefined && request.top_logprobs > 0 && request.logprobs !== true) {
      throw invalidRequest("top_logprobs needs logprobs: true.", "top_logprobs");
    }
    if (tools.mode === "auto" && format !== undefined && format.type !== "text") {
      throw invalidRequest("response_format cannot be combined with tools the model may call (tool_choice auto).", "response_format");
    }
    const sampling = this.#sampling(request);

    if (tools.mode === "forced") {
      const grammar = await createJsonSchemaGrammar(this.#llama, tools.callSchema);
      const { input, prompt } = this.#forcedInput(promptTokens);
      const budget = this.#budget(prompt.length, request.max_completion_tokens ?? request.max_tokens);
      return {
        prompt,
        ...budget,
        run: async (slot, hooks) => {
          const response = await slot.completion.generateCompletionWithMeta(input, {
            ...this.#completionSampling(sampling),
            grammar,
            maxTokens: budget.maxTokens,
            evaluationPriority: slot.priority,
            signal: hooks.signal,
            stopOnAbortSignal: true,
            onToken: hooks.onToken,
          });
          const call = parseForcedCall(response.response);
          if (call) return { stopReason: "functionCalls", toolCalls: toToolCalls([call]) };
          // Cut short (max_tokens, abort): no call and no text, as half a call in `content` would
          // be read as the answer; finish_reason "length" says what happened.
          return outcomeOf(response.metadata);
        },
      };
    }

    if (request.logprobs === true) {
      // The log-probability loop samples without a grammar, which tools and response_format need.
      if (tools.mode !== "none") throw invalidRequest("logprobs cannot be combined with tools; send one or the other.", "logprobs");
      if (format !== undefined && format.type !== "text") {
        throw invalidRequest("logprobs cannot be combined with response_format json_object or json_schema.", "logprobs");
      }
      const endOfTurn = this.#chatWrapper
        .generateContextState({ chatHistory: history })
        .stopGenerationTriggers.map((trigger) => trigger.tokenize(this.#model.tokenizer));
      const requested = request.max_completion_tokens ?? request.max_tokens;
      return this.#logprobPlan(promptTokens, requested, sampling, request.top_logprobs ?? 0, { endOfTurn });
    }

    const grammar = await this.#responseGrammar(format);
    const budget = this.#budget(promptTokens.length, request.max_completion_tokens ?? request.max_tokens);
    return {
      prompt: promptTokens,
      ...budget,
      run: async (slot, hooks) => {
        const common = {
          ...sampling,
          maxTokens: budget.maxTokens,
          evaluationPriority: slot.priority,
          signal: hooks.signal,
          stopOnAbortSignal: true,
          onTextChunk: hooks.onText,
          onToken: hooks.onToken,
        };
        const response = functions
          ? await slot.chat.generateResponse(history, { ...common, functions })
          : await slot.chat.generateResponse(history, { ...common, grammar });
        const calls = response.functionCalls ?? [];
        return {
          ...outcomeOf(response.metadata),
          ...(calls.length > 0 ? { toolCalls: toToolCalls(calls.map((call) => ({ name: call.functionName, params: call.params }))) } : {}),
        };
      },
    };
  }

  async #planCompletion(request: CompletionRequest): Promise<Plan> {
    const prompt = Array.isArray(request.prompt) ? (request.prompt[0] ?? "") : request.prompt;
    // Tokenized exactly as LlamaCompletion would, so the count is what the model reads.
    const input = this.#model.tokenize(prompt, true, this.#completionBos === null ? undefined : "trimLeadingSpace");
    const held = this.#withCompletionBos(input);
    if (request.logprobs !== undefined) {
      return this.#logprobPlan(held, request.max_tokens, this.#sampling(request), request.logprobs, { promptParam: "prompt" });
    }
    const budget = this.#budget(held.length, request.max_tokens, "prompt");
    const sampling = this.#completionSampling(this.#sampling(request));
    return {
      prompt: held,
      ...budget,
      run: async (slot, hooks) => {
        const response = await slot.completion.generateCompletionWithMeta(input, {
          ...sampling,
          maxTokens: budget.maxTokens,
          evaluationPriority: slot.priority,
          signal: hooks.signal,
          stopOnAbortSignal: true,
          onTextChunk: hooks.onText,
          onToken: hooks.onToken,
        });
        return outcomeOf(response.metadata);
      },
    };
  }

  /** `input` as LlamaCompletion evaluates it: after its own BOS. */
  #withCompletionBos(input: Token[]): Token[] {
    return this.#completionBos === null ? input : [this.#completionBos, ...input];
  }

  /** Generation that reports every token's log probability and `top` alternatives (see token-logprobs.ts). */
  #logprobPlan(
    input: Token[],
    requested: number | undefined,
    sampling: SamplingOptions,
    top: number,
    options: { endOfTurn?: Token[][]; promptParam?: string },
  ): Plan {
    const budget = this.#budget(input.length, requested, options.promptParam);
    return {
      prompt: input,
      ...budget,
      run: (slot, hooks) =>
        generateWithLogprobs({
          sequence: slot.sequence,
          model: this.#model,
          input,
          sampling,
          maxTokens: budget.maxTokens,
          top,
          endOfTurn: options.endOfTurn,
          ...hooks,
        }),
    };
  }

  /** The exact text LlamaChat will evaluate; templates that reject a conversation (e.g. roles out of order) say why. */
  #renderChat(history: ChatHistoryItem[], functions: ChatModelFunctions | undefined): LlamaText {
    try {
      return this.#chatWrapper.generateContextState({ chatHistory: history, availableFunctions: functions }).contextText;
    } catch (error) {
      throw invalidRequest(`The model's chat template cannot render these messages: ${(error as Error).message}`, "messages");
    }
  }

  /**
   * Tokens the answer may use. Without max_tokens (or -1) it runs to the end of the context; the
   * context is never shifted, which would silently drop the start of the conversation.
   */
  #budget(promptTokens: number, requested: number | undefined, promptParam = "messages"): { maxTokens: number; limitIsContextEnd: boolean } {
    if (requested === 0) throw invalidRequest("max_tokens must be at least 1, or -1 for no limit.", "max_tokens");
    // node-llama-cpp keeps one cell free beyond the prompt before it would shift the context.
    const room = this.contextLength - promptTokens - 1;
    if (room < 1) throw contextOverflow(promptTokens, this.contextLength, promptParam);
    if (requested === undefined || requested < 0 || requested >= room) return { maxTokens: room, limitIsContextEnd: true };
    return { maxTokens: requested, limitIsContextEnd: false };
  }

  #sampling(request: ChatRequest | CompletionRequest): SamplingOptions {
    return samplingOptions(request, { tokenizer: this.#model.tokenizer, vocabularySize: this.#vocabularySize });
  }

  /** LlamaCompletion's context shift would cut the prompt's start; the budget already keeps it from being needed. */
  #completionSampling(sampling: SamplingOptions) {
    return { ...sampling, contextShiftSize: 0, disableContextShift: true };
  }

  async #responseGrammar(format: ResponseFormat | undefined): Promise<LlamaGrammar | undefined> {
    if (format === undefined || format.type === "text") return undefined;
    if (format.type === "json_object") {
      this.#jsonGrammar ??= createJsonGrammar(this.#llama);
      return this.#jsonGrammar;
    }
    try {
      return await createJsonSchemaGrammar(this.#llama, toGrammarSchema(format.json_schema.schema));
    } catch (error) {
      const reason = error instanceof UnsupportedSchemaError ? error.message : (error as Error).message;
      throw invalidRequest(`response_format.json_schema cannot be enforced: ${reason}.`, "response_format");
    }
  }

  #failure(error: unknown, signal: AbortSignal): ApiError {
    if (error instanceof ApiError) return error;
    if (signal.aborted) return requestCancelled();
    if (this.#unloading.signal.aborted) return modelUnloaded(this.id);
    return toApiError(error);
  }
}

/**
 * Prompt tokens the slot already held from its previous request (llama.cpp's prefix reuse), so
 * not evaluated again. The meter counts the prompt's last token as output: it is evaluated (again,
 * if it was held) in the batch that yields the first token's logits.
 */
function cachedPromptTokens(promptTokens: number, evaluatedInputTokens: number): number {
  return Math.max(0, promptTokens - evaluatedInputTokens - 1);
}

/** Why node-llama-cpp stopped, and which of the caller's stop strings did it (given as strings, so its parts are text). */
function outcomeOf(metadata: { stopReason: EngineStopReason; customStopTrigger?: readonly (string | Token)[] }): RunOutcome {
  const trigger = metadata.stopReason === "customStopTrigger" ? metadata.customStopTrigger : undefined;
  return { stopReason: metadata.stopReason, ...(trigger ? { stopString: trigger.filter((part) => typeof part === "string").join("") } : {}) };
}
