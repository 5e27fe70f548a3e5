import { availableParallelism } from "node:os";
import { getLlama, GgufInsights, LlamaLogLevel, readGgufFileInfo, type Llama } from "node-llama-cpp";
import { fitsIn } from "../../shared/protocol/memory-fit.ts";
import type { Hardware, ModelFootprint, NodeMemory } from "../../shared/protocol/frames.ts";
import type { Runtime } from "../../shared/protocol/generation-events.ts";
import { LoadedEmbeddingModel, type EmbeddingLoadOptions } from "./loaded-embedding-model.ts";
import { LoadedLlm, type LlmLoadOptions } from "./loaded-llm.ts";
import type { LoadConfig } from "./model-lifecycle.ts";
import { hardwareInfo, runtimeInfo } from "./runtime-info.ts";
import { defaultThreads } from "./threads.ts";

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

export interface EngineOptions {
  /** `"auto"` picks CUDA, Vulkan or Metal when usable, else the CPU; `false` forces the CPU. Defaults to `"auto"`. */
  gpu?: "auto" | false;
  /** CPU threads per context. Defaults to `defaultThreads()` for this machine. */
  threads?: number;
  /** Receives llama.cpp's warnings and errors. */
  logger?: Logger;
}

/**
 * The process's llama.cpp: one `Llama` (backend chosen once), the thread count every context uses,
 * and what the agent reports about itself. It creates the loaded models; their lifecycle is
 * `ModelLifecycle`'s.
 */
export class Engine {
  readonly llama: Llama;
  readonly runtime: Runtime;
  readonly threads: number;
  #disposed: Promise<void> | undefined;

  private constructor(llama: Llama, threads: number) {
    this.llama = llama;
    this.runtime = runtimeInfo(llama);
    this.threads = threads;
  }

  static async create(options: EngineOptions = {}): Promise<Engine> {
    const logger = options.logger;
    const llama = await getLlama({
      gpu: options.gpu ?? "auto",
      // A missing binary should fail fast, not start compiling llama.cpp on a server.
      build: "never",
      logLevel: LlamaLogLevel.warn,
      logger: (level, message) => {
        const text = message.trim();
        if (text !== "" && (level === LlamaLogLevel.warn || level === LlamaLogLevel.error || level === LlamaLogLevel.fatal)) {
          logger?.warn(`llama.cpp: ${text}`);
        }
      },
    });
    const threads =
      options.threads ?? defaultThreads({ gpu: llama.gpu !== false, cores: availableParallelism(), mathCores: llama.cpuMathCores });
    return new Engine(llama, threads);
  }

  hardware(): Promise<Hardware> {
    return hardwareInfo(this.llama);
  }

  loadLlm(options: Omit<LlmLoadOptions, "threads" | "runtime">): Promise<LoadedLlm> {
    return LoadedLlm.load(this.llama, { ...options, threads: this.threads, runtime: this.runtime });
  }

  loadEmbeddingModel(options: Omit<EmbeddingLoadOptions, "threads">): Promise<LoadedEmbeddingModel> {
    return LoadedEmbeddingModel.load(this.llama, { ...options, threads: this.threads });
  }

  /** node-llama-cpp's estimate of what the model, fully offloaded when a GPU is in use, and its context take. */
  async footprint(path: string, config: LoadConfig, embedding: boolean): Promise<ModelFootprint> {
    const insights = await GgufInsights.from(await readGgufFileInfo(path, { logWarnings: false }), this.llama);
    const gpuLayers = this.llama.gpu === false ? 0 : insights.totalLayers;
    const model = insights.estimateModelResourceRequirements({ gpuLayers });
    const context = insights.estimateContextResourceRequirements({
      contextSize: config.contextLength,
      sequences: config.slots,
      modelGpuLayers: gpuLayers,
      isEmbeddingContext: embedding,
      flashAttention: !embedding,
    });
    return { ram_bytes: model.cpuRam + context.cpuRam, vram_bytes: model.gpuVram + context.gpuVram };
  }

  async freeMemory(): Promise<NodeMemory> {
    const [ram, vram] = await Promise.all([this.llama.getRamState(), this.llama.getVramState()]);
    return { ram_free_bytes: ram.free, vram_free_bytes: this.llama.gpu === false ? null : vram.free };
  }

  /** Whether the model and its context fit in the memory free right now. */
  async fits(path: string, config: LoadConfig, embedding: boolean): Promise<boolean> {
    const [needs, free] = await Promise.all([this.footprint(path, config, embedding), this.freeMemory()]);
    return fitsIn(needs, free);
  }

  /** All the memory of this machine, RAM and VRAM together: what no load can exceed, whatever is unloaded first. */
  async totalMemory(): Promise<number> {
    const [ram, vram] = await Promise.all([this.llama.getRamState(), this.llama.getVramState()]);
    // Unified memory (Apple silicon) is counted in both.
    return ram.total + vram.total - vram.unifiedSize;
  }

  /** Frees llama.cpp; models it loaded go with it. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= this.llama.dispose();
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
