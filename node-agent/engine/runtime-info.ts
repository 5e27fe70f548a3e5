import { readFileSync } from "node:fs";
import { join } from "node:path";
import { availableParallelism, cpus, totalmem } from "node:os";
import type { Llama } from "node-llama-cpp";
import type { Hardware } from "../../shared/protocol/frames.ts";
import type { Runtime } from "../../shared/protocol/generation-events.ts";
import { NODE_LLAMA_CPP_ROOT } from "../platform/prebuilt-binaries.ts";

const PLATFORM_NAMES: Partial<Record<NodeJS.Platform, string>> = { darwin: "mac", win32: "windows" };
const ARCH_NAMES: Partial<Record<NodeJS.Architecture, string>> = { x64: "x86_64", ia32: "x86" };

const NODE_LLAMA_CPP_VERSION = (JSON.parse(readFileSync(join(NODE_LLAMA_CPP_ROOT, "package.json"), "utf8")) as { version: string }).version;

/** What answers report as `runtime`: the engine, the platform and the backend doing the math. */
export function runtimeInfo(llama: Llama): Runtime {
  const platform = PLATFORM_NAMES[process.platform] ?? process.platform;
  const arch = ARCH_NAMES[process.arch] ?? process.arch;
  const backend = llama.gpu === false ? "cpu" : llama.gpu;
  return {
    name: `llama.cpp-${platform}-${arch}-${backend}`,
    version: `node-llama-cpp ${NODE_LLAMA_CPP_VERSION} (llama.cpp ${llama.llamaCppRelease.release})`,
    supported_formats: ["gguf"],
  };
}

export async function hardwareInfo(llama: Llama): Promise<Hardware> {
  const gpu = llama.gpu === false ? null : llama.gpu;
  const [devices, vram] = gpu === null ? [[], null] : await Promise.all([llama.getGpuDeviceNames(), llama.getVramState()]);
  return {
    cpu: cpus()[0]?.model.trim() || process.arch,
    cores: availableParallelism(),
    memory_bytes: totalmem(),
    gpu,
    gpu_devices: devices,
    vram_bytes: vram?.total ?? null,
  };
}
