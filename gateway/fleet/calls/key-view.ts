import { KeyAction } from "../../../shared/gateway-admin/admin-schemas.ts";
import type { KeyView } from "../../../shared/gateway-admin/key-view-schemas.ts";
import type { AccessStore } from "../access/access-store.ts";
import { ROOT_CALLER_ID, ROOT_CALLER_NAME } from "../access/caller.ts";
import { ModelScope } from "../access/model-scope.ts";
import type { RateWindow } from "../access/rate-window.ts";
import { nextUtcMidnight } from "../access/token-budget.ts";
import { utcDay, type UsageLedger } from "../access/usage-ledger.ts";
import { fleetModels } from "../nodes/fleet-models.ts";
import type { NodeRegistry } from "../nodes/node-registry.ts";
import type { RequestLog } from "../state/request-log.ts";

/** Days of usage a key sees of itself. */
const USAGE_DAYS = 30;
/** Its most recent requests. */
const RECENT_REQUESTS = 50;

export interface KeyViewParts {
  access: AccessStore;
  ledger: UsageLedger;
  window: RateWindow;
  log: RequestLog;
  registry: NodeRegistry;
}

/**
 * What a key sees of itself (`GET /v1/key`), built only from rows filtered by its own id: nothing
 * of another key, of node tokens or of the admin's settings reaches it.
 */
export class KeyViews {
  readonly #parts: KeyViewParts;

  constructor(parts: KeyViewParts) {
    this.#parts = parts;
  }

  /** The view of key `keyId` (an authenticated caller's), or of the deployment's own key. */
  of(keyId: string, now: Date): KeyView {
    const { access, ledger, log, registry } = this.#parts;
    const key = keyId === ROOT_CALLER_ID ? undefined : access.key(keyId);
    const name = key?.name ?? ROOT_CALLER_NAME;
    const from = utcDay(new Date(now.getTime() - (USAGE_DAYS - 1) * 86_400_000));
    const scope = new ModelScope(key?.models ?? null);
    const rpm = key?.rpm ?? null;
    const tokensPerDay = key?.tokens_per_day ?? null;
    return {
      id: keyId,
      name,
      prefix: key?.prefix ?? "",
      models: key?.models ?? null,
      can: key?.can ?? KeyAction.options,
      created_at: key?.created_at ?? null,
      expires_at: key?.expires_at ?? null,
      limits: {
        requests_per_minute: rpm === null ? null : this.#rpm(keyId, rpm, now),
        tokens_per_day: tokensPerDay === null ? null : this.#tokens(keyId, tokensPerDay, now),
      },
      usage: ledger.query({ key: keyId, from }, new Map([[keyId, name]])),
      requests: log.query({ key: keyId, limit: RECENT_REQUESTS }).data,
      available_models: fleetModels(registry.alive()).filter((model) => scope.allows(model.id)),
    };
  }

  #rpm(keyId: string, limit: number, now: Date) {
    const { count, clearsAt } = this.#parts.window.used(keyId, now.getTime());
    return { limit, used: count, remaining: Math.max(0, limit - count), resets_at: new Date(clearsAt).toISOString() };
  }

  #tokens(keyId: string, limit: number, now: Date) {
    const used = this.#parts.ledger.tokensOn(keyId, now);
    return { limit, used, remaining: Math.max(0, limit - used), resets_at: new Date(nextUtcMidnight(now)).toISOString() };
  }
}
