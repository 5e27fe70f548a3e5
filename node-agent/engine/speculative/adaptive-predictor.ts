import { TokenPredictor, type LlamaContextSequence, type Token } from "node-llama-cpp";

type ResetParams = Parameters<TokenPredictor["reset"]>[0];

/** Checked drafts before the acceptance rate is trusted to pause drafting. */
const MIN_SAMPLE = 8;
/** Below this share of accepted drafted tokens, checking them costs more than it saves. */
const MIN_ACCEPTANCE = 0.3;
/** Tokens generated without drafting before it is tried again; doubles each time it still does not pay. */
const FIRST_PAUSE = 32;
/** Drafted tokens the acceptance rate is mostly about. */
const RECENT = 64;
const MAX_PAUSE = 1024;

/**
 * Wraps a predictor (a draft model's, or prompt lookup) so that a poor one costs little, which
 * LM Studio leaves to the user. It reads how the target sequence judged the recent drafts
 * (`tokenPredictions`), and while fewer than MIN_ACCEPTANCE of them are accepted it stops
 * drafting, and the inner predictor's work, for a while (longer each time), then tries again.
 * How many tokens a draft model offers per check is its own affair: it stops at the first it is
 * unsure of (node-llama-cpp's `minConfidence`).
 */
export class AdaptivePredictor extends TokenPredictor {
  readonly #inner: TokenPredictor;
  #target: LlamaContextSequence | undefined;
  #evaluateOptions: ResetParams["evaluateOptions"] = {};
  /** Every token the target sequence holds or is about to evaluate, for re-aligning the inner predictor after a pause. */
  #state: Token[] = [];
  /** The target's counters when last read. */
  #seen = { validated: 0, refuted: 0 };
  /** Since drafting last (re)started. */
  #drafted = 0;
  #accepted = 0;
  #pause = FIRST_PAUSE;
  /** Tokens still to go before drafting resumes; 0 while drafting. */
  #pausedFor = 0;
  #resuming: Promise<void> | undefined;

  constructor(inner: TokenPredictor) {
    super();
    this.#inner = inner;
  }

  reset(params: ResetParams): Promise<void> | void {
    this.#target = params.targetSequence;
    this.#evaluateOptions = params.evaluateOptions;
    this.#state = params.stateTokens.slice();
    this.#seen = { ...params.targetSequence.tokenPredictions };
    this.#resuming = undefined;
    if (this.#pausedFor > 0) return;
    return this.#inner.reset(params);
  }

  pushTokens(tokens: Token[]): void {
    this.#state.push(...tokens);
    if (this.#pausedFor === 0) return this.#inner.pushTokens(tokens);
    this.#pausedFor = Math.max(0, this.#pausedFor - tokens.length);
    if (this.#pausedFor === 0) this.#resync();
  }

  predictTokens(): Promise<Token[]> | Token[] {
    this.#judgeLastDrafts();
    if (this.#pausedFor > 0) return [];
    const resuming = this.#resuming;
    if (resuming) {
      this.#resuming = undefined;
      return resuming.then(() => this.#inner.predictTokens());
    }
    return this.#inner.predictTokens();
  }

  override stop(untilPredictionsExhausted?: boolean): Promise<void> | void {
    return this.#inner.stop(untilPredictionsExhausted);
  }

  override updateInputTokens(tokens: Token[]): void {
    this.#inner.updateInputTokens(tokens);
  }

  override dispose(): Promise<void> | void {
    return this.#inner.dispose();
  }

  /**
   * Re-aligns the inner predictor with the target's tokens. node-llama-cpp 3.21.1's draft predictor
   * never evaluates the last token it drafted when the model accepts every one (it stops drafting
   * there, and the token it then gets pushed matches its prediction, so it is not queued): its
   * sequence misses that token, and its next drafts are made from a shifted text and rejected.
   * A reset evaluates the missing token (docs/upstream/node-llama-cpp-speculative-validation.md).
   */
  #resync(): void {
    if (!this.#target) return;
    this.#resuming = Promise.resolve(this.#inner.reset({ targetSequence: this.#target, stateTokens: this.#state.slice(), evaluateOptions: this.#evaluateOptions }));
  }

  #judgeLastDrafts(): void {
    if (!this.#target) return;
    const now = this.#target.tokenPredictions;
    const accepted = now.validated - this.#seen.validated;
    const rejected = now.refuted - this.#seen.refuted;
    this.#seen = { validated: now.validated, refuted: now.refuted };
    if (accepted + rejected === 0) return;
    if (rejected === 0 && this.#pausedFor === 0 && this.#resuming === undefined) this.#resync();
    this.#drafted += accepted + rejected;
    this.#accepted += accepted;
    if (this.#drafted > RECENT) {
      // The rate is a recent one: halving the tallies lets older drafts fade.
      this.#drafted /= 2;
      this.#accepted /= 2;
    }
    if (this.#drafted >= MIN_SAMPLE && this.#accepted < this.#drafted * MIN_ACCEPTANCE) {
      this.#pausedFor = this.#pause;
      this.#pause = Math.min(MAX_PAUSE, this.#pause * 2);
      this.#drafted = 0;
      this.#accepted = 0;
      void this.#inner.stop();
    } else if (this.#drafted >= MIN_SAMPLE && this.#accepted >= this.#drafted * MIN_ACCEPTANCE) {
      // Paying off: a later pause starts short again.
      this.#pause = FIRST_PAUSE;
    }
  }
}
