import { expect, test } from "vitest";
import type { BatchItem, Token } from "node-llama-cpp";
import { slotOrderStrategy, slotPriority } from "./batch-order.ts";

function item(slot: number, slots: number, tokens: number): BatchItem {
  return { tokens: Array.from({ length: tokens }, () => 1 as Token), logits: [true], evaluationPriority: slotPriority(slot, slots) };
}

test("each slot gets a lower priority than the one before it, up to node-llama-cpp's 5 levels", () => {
  expect([0, 1, 2, 3].map((slot) => slotPriority(slot, 4))).toEqual([5, 4, 3, 2]);
  const eight = Array.from({ length: 8 }, (_, slot) => slotPriority(slot, 8));
  expect(eight).toEqual([...eight].sort((a, b) => b - a));
  expect(Math.min(...eight)).toBeGreaterThanOrEqual(1);
});

test("a batch lists its sequences in slot order, whatever order they queued in", () => {
  const queued = [item(2, 4, 1), item(3, 4, 1), item(0, 4, 1), item(1, 4, 1)];
  const batch = slotOrderStrategy({ items: queued, size: 512 });
  expect(batch.map((entry) => queued.indexOf(entry.item))).toEqual([2, 3, 0, 1]);
  expect(batch.map((entry) => entry.processAmount)).toEqual([1, 1, 1, 1]);
});

test("prompts share the batch as node-llama-cpp's default does: an even share each, then what is left in slot order", () => {
  const queued = [item(1, 4, 300), item(0, 4, 100), item(3, 4, 1)];
  const batch = slotOrderStrategy({ items: queued, size: 512 });
  // Shares of 170: slot 0 needs only 100 and slot 3 one; slot 1 takes the rest of its 300 from what is left.
  expect(batch.map((entry) => [queued.indexOf(entry.item), entry.processAmount])).toEqual([
    [1, 100],
    [0, 300],
    [2, 1],
  ]);
  expect(batch.reduce((sum, entry) => sum + entry.processAmount, 0)).toBeLessThanOrEqual(512);
});

test("a batch never holds more than its size: items that get no room wait for the next one", () => {
  const queued = [item(2, 3, 1), item(0, 3, 1), item(1, 3, 1)];
  const batch = slotOrderStrategy({ items: queued, size: 2 });
  expect(batch.map((entry) => [queued.indexOf(entry.item), entry.processAmount])).toEqual([
    [1, 1],
    [2, 1],
  ]);
});

test("with a prompt chunk, a long prompt takes at most that much of each batch while a running stream shares it", () => {
  const queued = [item(0, 4, 1), item(1, 4, 2000), item(2, 4, 1)];
  const batch = slotOrderStrategy({ items: queued, size: 512 }, 128);
  expect(batch.map((entry) => [queued.indexOf(entry.item), entry.processAmount])).toEqual([
    [0, 1],
    [1, 128],
    [2, 1],
  ]);
});

test("with a prompt chunk, prompts with no stream beside them still fill the batch", () => {
  const alone = slotOrderStrategy({ items: [item(1, 4, 2000)], size: 512 }, 128);
  expect(alone.map((entry) => entry.processAmount)).toEqual([512]);
  const two = slotOrderStrategy({ items: [item(0, 4, 2000), item(1, 4, 300)], size: 512 }, 128);
  expect(two.map((entry) => entry.processAmount)).toEqual([256, 256]);
});
