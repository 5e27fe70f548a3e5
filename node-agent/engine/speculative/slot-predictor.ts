import { TokenPredictor, type Token } from "node-llama-cpp";

/**
 * A slot's token predictor. node-llama-cpp fixes a sequence's predictor when the sequence is
 * created, but a slot serves one request after another, each with its own draft model, prompt
 * lookup or neither; so every slot's sequence gets one of these, and each request puts its own
 * predictor in it (`use`) for as long as it holds the slot. Without one it predicts nothing, and
 * the sequence evaluates exactly as it would without a predictor.
 */
export class SlotPredictor extends TokenPredictor {
  #inner: TokenPredictor | undefined;

  /** Only while the slot is held and idle: the next evaluation resets the predictor it finds here. */
  use(inner: TokenPredictor | undefined): void {
    this.#inner = inner;
  }

  reset(params: Parameters<TokenPredictor["reset"]>[0]): Promise<void> | void {
    return this.#inner?.reset(params);
  }

  pushTokens(tokens: Token[]): void {
    this.#inner?.pushTokens(tokens);
  }

  predictTokens(): Promise<Token[]> | Token[] {
    return this.#inner?.predictTokens() ?? [];
  }

  override stop(untilPredictionsExhausted?: boolean): Promise<void> | void {
    return this.#inner?.stop(untilPredictionsExhausted);
  }

  override updateInputTokens(tokens: Token[]): void {
    this.#inner?.updateInputTokens(tokens);
  }

  /** The request that put a predictor here disposes of it; the sequence's own disposal has nothing to free. */
  override dispose(): void {}
}
