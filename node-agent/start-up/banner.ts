import Table from "cli-table3";
import pc from "picocolors";
import type { Hardware } from "../../shared/protocol/frames.ts";
import type { Runtime } from "../../shared/protocol/generation-events.ts";
import type { ModelObject } from "../../shared/protocol/model-schemas.ts";
import { gib } from "../serving/load-limits.ts";

export interface BannerInfo {
  version: string;
  runtime: Runtime;
  hardware: Hardware;
  /** `--cpu` was given: no GPU was looked for. */
  cpuForced: boolean;
  threads: number;
  slots: number;
  modelDirs: string[];
  models: ModelObject[];
}

/** What the agent says about itself on start-up, before it says where it serves. */
export function formatBanner(info: BannerInfo): string {
  const { hardware } = info;
  const row = (label: string, text: string) => `  ${pc.dim(label.padEnd(9))}${text}`;
  const lines = [
    `${pc.bold(`lmgate-agent ${info.version}`)} ${pc.dim(`· ${info.runtime.version}`)}`,
    row("backend", info.runtime.name),
    row("gpu", gpuLine(hardware, info.cpuForced)),
    row("cpu", `${hardware.cpu}, ${hardware.cores} cores, ${gib(hardware.memory_bytes)} RAM`),
    row("threads", `${info.threads} thread${info.threads === 1 ? "" : "s"} per model, ${info.slots} slot${info.slots === 1 ? "" : "s"} per model`),
    row("models", `${info.models.length} found in ${info.modelDirs.join(", ")}`),
  ];
  if (info.models.length > 0) {
    const table = new Table({
      chars: Object.fromEntries(TABLE_PARTS.map((part) => [part, ""])),
      style: { head: [], border: [], "padding-left": 0, "padding-right": 2 },
    });
    for (const model of info.models) {
      table.push([model.id, model.type, model.quantization, `${model.max_context_length} ctx`, model.arch]);
    }
    lines.push(...table.toString().split("\n").map((line) => `  ${" ".repeat(9)}${line.trimEnd()}`));
  } else {
    lines.push(row("", pc.yellow("no .gguf files: requests will get 404 model_not_found until some are added")));
  }
  return lines.join("\n");
}

const TABLE_PARTS = [
  "top",
  "top-mid",
  "top-left",
  "top-right",
  "bottom",
  "bottom-mid",
  "bottom-left",
  "bottom-right",
  "left",
  "left-mid",
  "mid",
  "mid-mid",
  "right",
  "right-mid",
  "middle",
] as const;

function gpuLine(hardware: Hardware, cpuForced: boolean): string {
  if (cpuForced) return "not used (--cpu): CPU only";
  if (hardware.gpu === null) return "none found (no usable CUDA, Vulkan or Metal device): CPU only";
  const devices = hardware.gpu_devices.length > 0 ? hardware.gpu_devices.join(", ") : "unnamed device";
  const vram = hardware.vram_bytes === null ? "" : `, ${gib(hardware.vram_bytes)} VRAM`;
  return `${hardware.gpu}: ${devices}${vram}`;
}
