import { describe, expect, test } from "vitest";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { ApiError } from "../../../shared/protocol/api-error.ts";
import { AccessControl } from "./access-control.ts";
import { AccessStore } from "./access-store.ts";
import { sha256Hex } from "./credentials.ts";
import { FailedAttempts } from "./failed-attempts.ts";
import { RateWindow } from "./rate-window.ts";
import { UsageLedger } from "./usage-ledger.ts";

/**
 * README: a key's limits lift by themselves — tokens per day at the next UTC midnight, requests
 * per minute as old requests leave the minute, and the wrong-credential brake a minute after the
 * attempts that set it. Each test drives the Fleet's own limit keepers on a Fleet's SQLite with
 * the time it hands them (the Fleet hands them `Date.now()`), so no test waits a minute or a day.
 */

/** The limit keepers on the storage of a Fleet of their own, as the Fleet wires them. */
async function withLimits<T>(name: string, run: (limits: { store: AccessStore; ledger: UsageLedger; control: AccessControl; attempts: FailedAttempts }) => Promise<T>): Promise<T> {
  return runInDurableObject(env.FLEET.getByName(`limits-recover-${name}`), async (_instance, state) => {
    const sql = state.storage.sql;
    const store = new AccessStore(sql);
    // Flushed by hand: no batch timer outlives the test.
    const ledger = new UsageLedger(sql, { flushAfterMs: 3_600_000, onFlush: () => undefined });
    const attempts = new FailedAttempts(sql);
    return run({ store, ledger, control: new AccessControl(store, ledger, new RateWindow(sql), attempts), attempts });
  });
}

/** The refusal `admit` throws at `at`, or null when the request is admitted. */
function refusal(control: AccessControl, grant: ReturnType<AccessControl["authenticate"]>, at: Date): { status: number; code: string | null | undefined; retryAfter: number | undefined } | null {
  try {
    control.admit(grant, at);
    return null;
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    return { status: error.status, code: error.code, retryAfter: error.retryAfter };
  }
}

const at = (iso: string) => new Date(iso);

describe("limits that recover", () => {
  test("tokens per day: used up at 23:59:30 UTC, refused until midnight (Retry-After says so), admitted again at 00:00", async () => {
    await withLimits("tokens-per-day", async ({ store, ledger, control }) => {
      const { secret, record } = await store.createKey({ name: "daily", tokens_per_day: 10 }, at("2026-03-01T08:00:00Z"));
      const grant = control.authenticate(await sha256Hex(secret), "203.0.113.9", at("2026-03-01T23:59:00Z"));
      expect(refusal(control, grant, at("2026-03-01T23:59:00Z"))).toBeNull();
      ledger.record(record.id, "m", { promptTokens: 4, completionTokens: 6, failed: false }, at("2026-03-01T23:59:30Z"));
      expect(refusal(control, grant, at("2026-03-01T23:59:50Z"))).toEqual({ status: 429, code: "tokens_per_day_exceeded", retryAfter: 10 });
      // Written to storage as the Fleet's batch timer would: the new day reads the table, not the batch.
      ledger.flush();
      expect(refusal(control, grant, at("2026-03-01T23:59:59.999Z"))).toMatchObject({ code: "tokens_per_day_exceeded" });
      expect(refusal(control, grant, at("2026-03-02T00:00:00Z"))).toBeNull();
      expect(ledger.tokensOn(record.id, at("2026-03-02T00:00:00Z"))).toBe(0);
      // Yesterday's usage is kept, only no longer counted against today.
      expect(ledger.tokensOn(record.id, at("2026-03-01T12:00:00Z"))).toBe(10);
    });
  });

  test("requests per minute: the request past the limit waits for the oldest to leave the minute, and is admitted then", async () => {
    await withLimits("rpm", async ({ store, control }) => {
      const t0 = Date.parse("2026-03-01T10:00:00Z");
      const after = (ms: number) => new Date(t0 + ms);
      const { secret } = await store.createKey({ name: "per-minute", rpm: 2 }, after(0));
      const grant = control.authenticate(await sha256Hex(secret), "203.0.113.9", after(0));
      expect(refusal(control, grant, after(0))).toBeNull();
      expect(refusal(control, grant, after(10_000))).toBeNull();
      expect(refusal(control, grant, after(20_000))).toEqual({ status: 429, code: "rate_limit_exceeded", retryAfter: 40 });
      // Refused requests are not counted: the first still leaves the window at 60 s.
      expect(refusal(control, grant, after(59_999))).toMatchObject({ code: "rate_limit_exceeded", retryAfter: 0.001 });
      expect(refusal(control, grant, after(60_000))).toBeNull();
      // A sliding minute, not a fixed one: the request at 10 s still counts until 70 s.
      expect(refusal(control, grant, after(61_000))).toEqual({ status: 429, code: "rate_limit_exceeded", retryAfter: 9 });
      expect(refusal(control, grant, after(70_000))).toBeNull();
    });
  });

  test("the wrong-credential brake: ten wrong tries in a minute brake the address, and it lifts a minute after the first", async () => {
    await withLimits("brake", async ({ attempts }) => {
      const t0 = Date.parse("2026-03-01T10:00:00Z");
      for (let second = 0; second < 10; second++) expect(attempts.fail("203.0.113.7", t0 + second * 1000)).toBeNull();
      expect(attempts.fail("203.0.113.7", t0 + 30_000)).toBe(30);
      // Another address is not braked by this one's tries.
      expect(attempts.fail("198.51.100.1", t0 + 30_000)).toBeNull();
      // Braked tries do not push the window on: at 60 s the first try has left it.
      expect(attempts.fail("203.0.113.7", t0 + 59_999)).toBeCloseTo(0.001);
      expect(attempts.fail("203.0.113.7", t0 + 60_000)).toBeNull();
      // That try counts again: ten in the minute before 60.5 s (1 s .. 9 s and 60 s).
      expect(attempts.fail("203.0.113.7", t0 + 60_500)).toBe(0.5);
    });
  });
});

