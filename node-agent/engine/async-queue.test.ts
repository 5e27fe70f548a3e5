import { expect, test } from "vitest";
import { AsyncQueue } from "./async-queue.ts";

test("delivers items pushed before and after the consumer waits, in order, then ends", async () => {
  const queue = new AsyncQueue<number>();
  queue.push(1);
  const seen: number[] = [];
  const consumed = (async () => {
    for await (const item of queue) seen.push(item);
  })();
  await Promise.resolve();
  queue.push(2);
  queue.push(3);
  queue.end();
  queue.push(4);
  await consumed;
  expect(seen).toEqual([1, 2, 3]);
});

test("a failure reaches the consumer after the items pushed before it", async () => {
  const queue = new AsyncQueue<string>();
  queue.push("a");
  queue.fail(new Error("boom"));
  const seen: string[] = [];
  await expect(
    (async () => {
      for await (const item of queue) seen.push(item);
    })(),
  ).rejects.toThrow("boom");
  expect(seen).toEqual(["a"]);
});
