import { expect, test } from "vitest";
import { defaultThreads } from "./threads.ts";

test("CPU-only machines keep cores free for Node: 1 thread up to 2 cores, then half the cores", () => {
  expect(defaultThreads({ gpu: false, cores: 1, mathCores: 1 })).toBe(1);
  expect(defaultThreads({ gpu: false, cores: 2, mathCores: 2 })).toBe(1);
  expect(defaultThreads({ gpu: false, cores: 8, mathCores: 4 })).toBe(4);
  expect(defaultThreads({ gpu: false, cores: 3, mathCores: 3 })).toBe(1);
});

test("with a GPU backend, node-llama-cpp's default (cores useful for math) stands", () => {
  expect(defaultThreads({ gpu: true, cores: 16, mathCores: 8 })).toBe(8);
});
