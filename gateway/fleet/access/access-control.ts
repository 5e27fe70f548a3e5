import { ApiError, invalidApiKey } from "../../../shared/protocol/api-error.ts";
import type { KeyAction, KeyRecord } from "../../../shared/gateway-admin/admin-schemas.ts";
import type { AccessStore } from "./access-store.ts";
import { tooManyAttempts, type FailedAttempts } from "./failed-attempts.ts";
import { ModelScope } from "./model-scope.ts";
import type { RateWindow } from "./rate-window.ts";
import { exhausted } from "./token-budget.ts";
import type { UsageLedger } from "./usage-ledger.ts";

/** A key that passed authentication, for the rest of one request. */
export interface Grant {
  readonly key: KeyRecord;
  readonly scope: ModelScope;
}

/**
 * Decides, inside the Fleet and in the same hop as routing, whether a key may make a request:
 * known, not revoked or expired, allowed the model, under its requests/minute and tokens/day.
 */
export class AccessControl {
  readonly #store: AccessStore;
  readonly #ledger: UsageLedger;
  readonly #window: RateWindow;
  readonly #attempts: FailedAttempts;

  constructor(store: AccessStore, ledger: UsageLedger, window: RateWindow, attempts: FailedAttempts) {
    this.#store = store;
    this.#ledger = ledger;
    this.#window = window;
    this.#attempts = attempts;
  }

  /**
   * The key with this hash, presented from `address`. A key nobody holds is a wrong credential:
   * counted against the address, and past its allowance answered 429 (a guesser is braked); a key
   * that exists (even revoked or expired) is never counted, so the right one always passes.
   */
  authenticate(keyHash: string, address: string, now: Date): Grant {
    const key = this.#store.keyByHash(keyHash);
    if (!key) {
      const wait = this.#attempts.fail(address, now.getTime());
      throw wait === null ? invalidApiKey("Incorrect API key provided.") : tooManyAttempts("API key", wait);
    }
    if (key.revoked_at !== null) throw invalidApiKey("This API key has been revoked.");
    if (key.expires_at !== null && key.expires_at <= now.toISOString()) throw invalidApiKey(`This API key expired at ${key.expires_at}.`);
    return { key, scope: new ModelScope(key.models) };
  }

  /** 403 for a model outside the key's allowlist; said without confirming the model exists. */
  checkModel(grant: Grant, model: string): void {
    if (!grant.scope.allows(model)) {
      throw new ApiError(403, `This API key may not use model "${model}".`, { param: "model", code: "model_not_allowed" });
    }
  }

  /** 403 unless the key was granted this kind of model management (`lmgate keys create --can …`). */
  checkAction(grant: Grant, action: KeyAction): void {
    if (!grant.key.can.includes(action)) {
      const what = action === "load" ? "load or unload" : action;
      throw new ApiError(403, `This API key may not ${what} models: that takes a key created with --can ${action}, or the admin token.`, {
        code: "action_not_allowed",
      });
    }
  }

  /** Counts the request against the key's limits, or refuses it with 429 and when to retry. */
  admit(grant: Grant, now: Date): void {
    const { key } = grant;
    if (key.tokens_per_day !== null && this.#ledger.tokensOn(key.id, now) >= key.tokens_per_day) throw exhausted(key.tokens_per_day, now);
    if (key.rpm !== null) {
      const window = this.#window.admit(key.id, key.rpm, now.getTime());
      if (!window.admitted) {
        throw new ApiError(429, `This API key is limited to ${key.rpm} requests per minute.`, {
          code: "rate_limit_exceeded",
          retryAfter: window.retryAfterMs / 1000,
        });
      }
    }
  }
}
