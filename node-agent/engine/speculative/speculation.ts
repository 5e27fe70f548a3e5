import { withLock } from "lifecycle-utils";
import { DraftSequenceTokenPredictor, InputLookupTokenPredictor, type LlamaContextSequence, type Token, type TokenBias, type TokenPredictor } from "node-llama-cpp";
import type { DraftStats } from "../../../shared/protocol/generation-events.ts";
import { AdaptivePredictor } from "./adaptive-predictor.ts";
// Speculation accepts more than one drafted token per check only with this fix in place.
import "./validation-fix.ts";
import type { SlotPredictor } from "./slot-predictor.ts";

/** One of a loaded model's sequences, lent to draft for another model's generation. */
export interface SequenceLoan {
  readonly sequence: LlamaContextSequence;
  release(): void;
}

/** A loaded model that drafts for others, one of its free slots per generation. */
export interface DraftModel {
  readonly id: string;
  /** A free slot's sequence (the one holding most of `prompt`), or undefined when all are busy. */
  lendSequence(prompt: Token[]): SequenceLoan | undefined;
  /** The request's `logit_bias` for this model (a TokenBias belongs to one model), ids it lacks left out. */
  tokenBias(logitBias: Record<string, number>): TokenBias;
}

/**
 * How a generation drafts tokens for its model to check: with a draft model (biased as the request
 * biases the model, or its drafts would keep offering tokens the model may not choose), or from its
 * own prompt.
 */
export type Speculation = { draft: DraftModel; logitBias?: Record<string, number> } | { promptLookup: true };

/** Tokens that end the text and are looked up in the prompt to predict what follows (prompt lookup). */
const LOOKUP_PATTERN = { min: 2, max: 0 };
/**
 * Tokens drafted per check, at most. A draft model drafts them all before the check unless it is
 * unsure of one first (node-llama-cpp's `minConfidence`): left to run beside the model instead, a
 * small draft rarely keeps ahead of it, and most checks would have nothing to check.
 */
const DRAFT_TOKENS = 12;

/** The draft model a generation asked for, and its sequence when one was free. */
interface DraftInUse {
  model: string;
  loan?: { sequence: SequenceLoan; predictor: DraftSequenceTokenPredictor };
}

/**
 * A generation's speculation on its slot, from before its first evaluation to after its last:
 * `counts()` are the tokens drafted in between, `end()` frees what it took.
 */
export class ActiveSpeculation {
  readonly #sequence: LlamaContextSequence;
  readonly #slot: SlotPredictor;
  readonly #predictor: TokenPredictor | undefined;
  readonly #draft: DraftInUse | undefined;
  readonly #before: LlamaContextSequence["tokenPredictions"];

  private constructor(sequence: LlamaContextSequence, slot: SlotPredictor, predictor: TokenPredictor | undefined, draft?: DraftInUse) {
    this.#sequence = sequence;
    this.#slot = slot;
    this.#predictor = predictor;
    this.#draft = draft;
    this.#before = { ...sequence.tokenPredictions };
    slot.use(predictor);
  }

  /**
   * Puts the speculation's predictor in the slot. A draft model with no free slot drafts nothing
   * for this generation (which runs as it would without one) rather than making it wait.
   */
  static async start(sequence: LlamaContextSequence, slot: SlotPredictor, speculation: Speculation, prompt: Token[]): Promise<ActiveSpeculation> {
    if ("promptLookup" in speculation) {
      const lookup = new InputLookupTokenPredictor({ patternLength: LOOKUP_PATTERN, predictionLength: { min: 1, max: DRAFT_TOKENS } });
      return new ActiveSpeculation(sequence, slot, new AdaptivePredictor(lookup));
    }
    const model = speculation.draft.id;
    const loan = speculation.draft.lendSequence(prompt);
    if (!loan) return new ActiveSpeculation(sequence, slot, undefined, { model });
    try {
      await keepOnlyPromptPrefix(loan.sequence, prompt);
    } catch (error) {
      loan.release();
      throw error;
    }
    const tokenBias = speculation.logitBias && speculation.draft.tokenBias(speculation.logitBias);
    const drafting = new DraftSequenceTokenPredictor(loan.sequence, { minTokens: DRAFT_TOKENS, maxTokens: DRAFT_TOKENS, evaluateOptions: { tokenBias } });
    return new ActiveSpeculation(sequence, slot, new AdaptivePredictor(drafting), { model, loan: { sequence: loan, predictor: drafting } });
  }

  /** LM Studio's counters for what this generation drafted (see `DraftStats`). */
  counts(): DraftStats {
    const now = this.#sequence.tokenPredictions;
    const used = now.used - this.#before.used;
    const validated = now.validated - this.#before.validated;
    const refuted = now.refuted - this.#before.refuted;
    return {
      ...(this.#draft ? { draft_model: this.#draft.model } : {}),
      total_draft_tokens_count: validated + refuted,
      accepted_draft_tokens_count: used,
      rejected_draft_tokens_count: refuted,
      ignored_draft_tokens_count: validated - used,
    };
  }

  /**
   * Drafted tokens the sequence evaluated (with logits, so its token meter counts them as output)
   * that did not become part of the answer: the rejected ones, and those confirmed after it ended.
   */
  static evaluatedNotGenerated(counts: DraftStats): number {
    return (counts.rejected_draft_tokens_count ?? 0) + (counts.ignored_draft_tokens_count ?? 0);
  }

  /**
   * Takes the predictor out of the slot and gives the draft sequence back once nothing runs on
   * it: a draft step still in flight when the generation ended would otherwise land in the
   * sequence after its next user has read its state. `DraftSequenceTokenPredictor` runs its
   * steps, and their ending, under its "evaluate" lock (node-llama-cpp 3.21), so holding that
   * lock once after `stop()` waits for the last of them.
   */
  async end(): Promise<void> {
    this.#slot.use(undefined);
    const loan = this.#draft?.loan;
    try {
      await this.#predictor?.stop();
      if (loan) await withLock([loan.predictor, "evaluate"], () => {});
      await this.#predictor?.dispose();
    } finally {
      loan?.sequence.release();
    }
  }
}

/**
 * Erases what the lent draft sequence holds beyond the prompt's start it shares (and the prompt's
 * last token, which the draft predictor evaluates itself). node-llama-cpp 3.21.1's
 * `adaptStateToTokens`, which the draft predictor aligns the sequence with, keeps a tail beyond
 * the tokens it is given when they are all a prefix of the sequence (the previous request's
 * answer, say): the draft would then draft from that answer, and every draft be rejected.
 */
async function keepOnlyPromptPrefix(sequence: LlamaContextSequence, prompt: Token[]): Promise<void> {
  const keep = Math.min(sequence.compareContextTokens(prompt).firstDifferentIndex, Math.max(0, prompt.length - 1));
  if (keep < sequence.nextTokenIndex) await sequence.eraseContextTokenRanges([{ start: keep, end: sequence.nextTokenIndex }]);
}
