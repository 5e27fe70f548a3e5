import { ApiError, invalidApiKey } from "../../shared/errors.ts";
import type { KeyAction, KeyRecord } from "../../shared/schemas/admin.ts";
import type { AccessStore } from "./access-store.ts";
import { ModelScope } from "./model-scope.ts";
import { utcDay, type UsageLedger } from "./usage-ledger.ts";

/** A key that passed authentication, for the rest of one request. */
export interface Grant {
  readonly key: KeyRecord;
  readonly scope: ModelScope;
}

const MINUTE_MS = 60_000;

/**
 * Decides, inside the Fleet and in the same hop as routing, whether a key may make a request:
 * known, not revoked or expired, allowed the model, under its requests/minute and tokens/day.
 */
export class AccessControl {
  readonly #store: AccessStore;
  readonly #ledger: UsageLedger;
  /** Request times in the last minute per key; in memory, as a rate window needs no durability. */
  readonly #recent = new Map<string, number[]>();

  constructor(store: AccessStore, ledger: UsageLedger) {
    this.#store = store;
    this.#ledger = ledger;
  }

  authenticate(keyHash: string, now: Date): Grant {
    const key = this.#store.keyByHash(keyHash);
    if (!key) throw invalidApiKey("Incorrect API key provided.");
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
    if (key.tokens_per_day !== null && this.#ledger.tokensOn(key.id, now) >= key.tokens_per_day) {
      const midnight = Date.parse(`${utcDay(now)}T00:00:00.000Z`) + 24 * 60 * MINUTE_MS;
      throw new ApiError(429, `This API key has used its ${key.tokens_per_day} tokens for today (UTC).`, {
        code: "tokens_per_day_exceeded",
        retryAfter: (midnight - now.getTime()) / 1000,
      });
    }
    if (key.rpm !== null) {
      const since = now.getTime() - MINUTE_MS;
      const recent = (this.#recent.get(key.id) ?? []).filter((at) => at > since);
      if (recent.length >= key.rpm) {
        this.#recent.set(key.id, recent);
        throw new ApiError(429, `This API key is limited to ${key.rpm} requests per minute.`, {
          code: "rate_limit_exceeded",
          retryAfter: ((recent[0] ?? now.getTime()) + MINUTE_MS - now.getTime()) / 1000,
        });
      }
      recent.push(now.getTime());
      this.#recent.set(key.id, recent);
    }
  }
}
