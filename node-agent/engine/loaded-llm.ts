import { LlamaChat, LlamaCompletion, resolveChatWrapper, type Llama, type LlamaContext, type LlamaGrammar, type LlamaModel, type Token } from "node-llama-cpp";
import { ApiError, modelUnloaded, requestCancelled, toApiError } from "../../shared/protocol/api-error.ts";
import type { DraftStats, GenerationEvent, ModelInfo, Runtime, TokenLogprob } from "../../shared/protocol/generation-events.ts";
import type { ChatRequest, CompletionRequest } from "../../shared/protocol/request-schemas.ts";
import { AsyncQueue } from "./async-queue.ts";
import { slotPriority } from "./batch-order.ts";
import { createBatchedContext, type BatchCounts } from "./batched-context.ts";
import { reusablePrefixLength } from "./cached-prefix.ts";
import { choiceSeed, mergeChoices } from "./choices.ts";
import { cachedPromptTokens, generationResult, runStats, type FinishedRun } from "./generation-result.ts";
import { GenerationTimer, stopReasonOf } from "./generation-stats.ts";
import { createJsonGrammar } from "./json-schema.ts";
import { chatPlan, chatPromptTokens } from "./plans/chat-plan.ts";
import { completionPlan } from "./plans/completion-plan.ts";
import type { Plan, PlanModel, Slot } from "./plans/plan.ts";
import { tokenBias } from "./sampling-options.ts";
import { SlotPool } from "./slot-pool.ts";
import { SlotPredictor } from "./speculative/slot-predictor.ts";
import { ActiveSpeculation, type SequenceLoan, type Speculation } from "./speculative/speculation.ts";
import { vocabularyMismatch } from "./speculative/vocabulary-match.ts";
import type { MeasuredSpeed } from "./speed-tracker.ts";

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
  readonly #model: LlamaModel;
  readonly #context: LlamaContext;
  readonly #batches: BatchCounts;
  readonly #slots: Slot[];
  readonly #pool: SlotPool;
  /** What the plans read of this model. */
  readonly #planModel: PlanModel;
  readonly #modelInfo: ModelInfo;
  readonly #runtime: Runtime;
  readonly #onMeasured: (speed: MeasuredSpeed) => void;
  readonly #unloading = new AbortController();
  readonly #running = new Set<Promise<unknown>>();
  #disposed: Promise<void> | undefined;

  private constructor(llama: Llama, model: LlamaModel, { context, counts }: { context: LlamaContext; counts: BatchCounts }, options: LlmLoadOptions) {
    this.id = options.id;
    this.#batches = counts;
    this.contextLength = context.contextSize;
    this.#model = model;
    this.#context = context;
    const chatWrapper = resolveChatWrapper(model);
    const insights = model.fileInsights;
    this.speculates = !insights.isRecurrent && !insights.isHybrid && insights.swaSize == null;
    this.#slots = Array.from({ length: context.totalSequences }, (_, index) => {
      const predictor = new SlotPredictor();
      const sequence = context.getSequence(this.speculates ? { tokenPredictor: predictor } : {});
      return {
        sequence,
        priority: slotPriority(index, context.totalSequences),
        predictor,
        chat: new LlamaChat({ contextSequence: sequence, chatWrapper }),
        completion: new LlamaCompletion({ contextSequence: sequence }),
      };
    });
    this.#pool = new SlotPool({ size: this.#slots.length, maxQueue: options.maxQueue, label: `model "${options.id}"`, onChange: options.onSlotsChange });
    let jsonGrammar: Promise<LlamaGrammar> | undefined;
    this.#planModel = {
      llama,
      model,
      chatWrapper,
      contextLength: context.contextSize,
      vocabularySize: Array.from(model.iterateAllTokens()).length,
      completionBos: model.tokens.shouldPrependBosToken ? model.tokens.bos : null,
      jsonGrammar: () => (jsonGrammar ??= createJsonGrammar(llama)),
    };
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
    return this.#choices(request, (seed) => this.#generate(() => chatPlan(this.#planModel, { ...request, seed }), signal, speculation));
  }

  /** Tokens the model would read for this chat request (template and tools included), counted as `chat` counts them. */
  countTokens(request: ChatRequest): number {
    return chatPromptTokens(this.#planModel, request);
  }

  /** Raw text completion: no template; special tokens written in the prompt are honoured, as llama.cpp's server does. */
  completion(request: CompletionRequest, signal: AbortSignal, speculation?: Speculation): AsyncGenerator<GenerationEvent> {
    return this.#choices(request, (seed) => this.#generate(() => completionPlan(this.#planModel, { ...request, seed }), signal, speculation));
  }

  /** As a draft model: the request's logit_bias for this model, ids beyond its vocabulary left out. */
  tokenBias(logitBias: Record<string, number>) {
    const { vocabularySize } = this.#planModel;
    const known = Object.entries(logitBias).filter(([id]) => /^\d+$/.test(id) && Number(id) < vocabularySize);
    return tokenBias(Object.fromEntries(known), { tokenizer: this.#model.tokenizer, vocabularySize });
  }

  /** Why `draft` cannot draft for this model (its vocabulary differs), or undefined when it can. */
  draftMismatch(draft: LoadedLlm): string | undefined {
    return vocabularyMismatch(
      { model: this.#model, size: this.#planModel.vocabularySize },
      { model: draft.#model, size: draft.#planModel.vocabularySize },
    );
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

  async *#generate(makePlan: () => Plan | Promise<Plan>, signal: AbortSignal, speculation: Speculation | undefined): AsyncGenerator<GenerationEvent> {
    try {
      yield* this.#run(makePlan, signal, speculation);
    } catch (error) {
      throw this.#failure(error, signal);
    }
  }

  async *#run(makePlan: () => Plan | Promise<Plan>, signal: AbortSignal, speculation: Speculation | undefined): AsyncGenerator<GenerationEvent> {
    if (signal.aborted) throw requestCancelled();
    const plan = await makePlan();
    const lease = await this.#pool.acquire(signal, (index) => reusablePrefixLength((this.#slots[index] as Slot).sequence, plan.prompt));
    const slot = this.#slots[lease.index] as Slot;
    const stop = new AbortController();
    const timer = new GenerationTimer();
    const texts = new AsyncQueue<{ text: string; logprobs?: TokenLogprob[] }>();
    const generationSignal = AbortSignal.any([signal, stop.signal, this.#unloading.signal]);

    const outcome = (async (): Promise<FinishedRun> => {
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
      const stats = runStats(timer, ran, stopReason);
      if (stats.tokens_per_second > 0) {
        this.#onMeasured({ tokens_per_second: stats.tokens_per_second, time_to_first_token: stats.time_to_first_token });
      }
      yield { type: "done", result: generationResult(plan.prompt.length, ran, stats, { modelInfo: this.#modelInfo, runtime: this.#runtime }) };
    } finally {
      // Reached early when the consumer stops iterating: stop generating and give the slot back now.
      stop.abort();
      await outcome.catch(() => {});
    }
  }

  #failure(error: unknown, signal: AbortSignal): ApiError {
    if (error instanceof ApiError) return error;
    if (signal.aborted) return requestCancelled();
    if (this.#unloading.signal.aborted) return modelUnloaded(this.id);
    return toApiError(error);
  }
}
