import { describe, expect, test } from "vitest";
import { ApiError } from "../../shared/protocol/api-error.ts";
import { SlotPool } from "./slot-pool.ts";

const never = new AbortController().signal;

describe("SlotPool", () => {
  test("hands out distinct slots, then queues first come first served", async () => {
    const pool = new SlotPool({ size: 2, maxQueue: 2, label: "model x" });
    const a = await pool.acquire(never);
    const b = await pool.acquire(never);
    expect(new Set([a.index, b.index]).size).toBe(2);
    const order: string[] = [];
    const c = pool.acquire(never).then((lease) => (order.push("c"), lease));
    const d = pool.acquire(never).then((lease) => (order.push("d"), lease));
    expect(pool.waiting).toBe(2);
    b.release();
    expect((await c).index).toBe(b.index);
    a.release();
    await d;
    expect(order).toEqual(["c", "d"]);
  });

  test("a full queue refuses with a 503 no_capacity that says when to retry", async () => {
    const pool = new SlotPool({ size: 1, maxQueue: 1, label: 'model "x"' });
    await pool.acquire(never);
    void pool.acquire(never);
    const refused = await pool.acquire(never).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused).toMatchObject({ status: 503, code: "no_capacity" });
    expect((refused as ApiError).retryAfter).toBeGreaterThan(0);
    expect((refused as ApiError).message).toContain('model "x"');
  });

  test("an aborted waiter leaves the queue, making room for another", async () => {
    const pool = new SlotPool({ size: 1, maxQueue: 1, label: "model x" });
    const held = await pool.acquire(never);
    const abort = new AbortController();
    const waiting = pool.acquire(abort.signal);
    abort.abort();
    await expect(waiting).rejects.toMatchObject({ status: 499, code: "request_cancelled" });
    expect(pool.waiting).toBe(0);
    const next = pool.acquire(never);
    held.release();
    await next;
  });

  test("release is idempotent and reports busy changes", async () => {
    let changes = 0;
    const pool = new SlotPool({ size: 1, maxQueue: 0, label: "model x", onChange: () => changes++ });
    const lease = await pool.acquire(never);
    expect(pool.busy).toBe(1);
    lease.release();
    lease.release();
    expect(pool.busy).toBe(0);
    expect(changes).toBe(2);
  });

  test("close refuses waiting and later requests with the given error", async () => {
    const pool = new SlotPool({ size: 1, maxQueue: 1, label: "model x" });
    await pool.acquire(never);
    const waiting = pool.acquire(never);
    const error = new ApiError(503, "gone");
    pool.close(error);
    await expect(waiting).rejects.toBe(error);
    await expect(pool.acquire(never)).rejects.toBe(error);
  });

  test("takes the free slot that holds most of the request's work, else the least recently used", async () => {
    const pool = new SlotPool({ size: 3, maxQueue: 0, label: "model x" });
    const leases = [await pool.acquire(never), await pool.acquire(never), await pool.acquire(never)];
    const [first, second, third] = leases.map((lease) => lease.index) as [number, number, number];
    for (const index of [second, third, first]) leases.find((lease) => lease.index === index)?.release();
    const holds = (index: number) => (index === third ? 50 : index === first ? 20 : 0);
    const best = await pool.acquire(never, holds);
    expect(best.index).toBe(third);
    // Nothing worth reusing: the slot released longest ago.
    const oldest = await pool.acquire(never, () => 0);
    expect(oldest.index).toBe(second);
    best.release();
    oldest.release();
  });

  test("a waiter gets the slot freed for it, whatever it would have preferred", async () => {
    const pool = new SlotPool({ size: 2, maxQueue: 1, label: "model x" });
    const a = await pool.acquire(never);
    const b = await pool.acquire(never);
    const waiting = pool.acquire(never, (index) => (index === a.index ? 100 : 0));
    b.release();
    expect((await waiting).index).toBe(b.index);
  });
});
