/**
 * How many CPU threads a context evaluates with, unless the user says. llama.cpp's worker threads
 * busy-wait between batches: on a small CPU-only machine they fight Node's own thread for the
 * cores (measured on 2 cores with a tiny model: 4 threads ~3 tokens/s, 1 thread ~3000), so
 * CPU-only inference leaves half the cores free, and a 2-core machine uses one. With a GPU
 * backend the CPU threads mostly wait on the device, so node-llama-cpp's own default (the cores
 * useful for math) stands.
 */
export function defaultThreads(machine: { gpu: boolean; cores: number; mathCores: number }): number {
  if (machine.gpu) return Math.max(1, machine.mathCores);
  if (machine.cores <= 2) return 1;
  return Math.max(1, Math.floor(machine.cores / 2));
}
