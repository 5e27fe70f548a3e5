import cliProgress from "cli-progress";
import { InvalidArgumentError, type Command } from "commander";
import pc from "picocolors";
import type { DownloadJob } from "../shared/protocol/download-schemas.ts";
import type { V1Model } from "../shared/protocol/v1-model-schemas.ts";
import type { ModelsClient } from "./models-client.ts";
import { printRows } from "./output.ts";

/** How often `pull` asks for progress. */
const POLL_MS = 500;

const contextLength = (value: string) => {
  if (!/^\d+$/.test(value) || Number(value) < 16) throw new InvalidArgumentError("expected a whole number of tokens, at least 16");
  return Number(value);
};

const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
const size = (bytes: number) => (bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(2)} GiB` : mib(bytes));

/** `lmgate models list | pull | rm | load | unload`: every machine's models, through the gateway's v1 model API. */
export function addModelsCommand(program: Command, client: () => ModelsClient, json: () => boolean): void {
  const models = program.command("models").description("every node's models: list, pull (download), rm, load, unload");

  models
    .command("list", { isDefault: true })
    .description("models on every node, with where each is loaded")
    .option("--node <node>", "only the models on this node")
    .action(async (options: { node?: string }) => {
      const all = await client().list();
      const rows = options.node === undefined ? all : all.filter((model) => model.nodes?.some((entry) => entry.node === options.node));
      printRows(
        rows,
        [
          { header: "model", value: (model: V1Model) => model.key },
          { header: "type", value: (model) => model.type },
          { header: "quant", value: (model) => model.quantization.name },
          { header: "size", value: (model) => size(model.size_bytes) },
          { header: "context", value: (model) => model.max_context_length },
          { header: "nodes", value: (model) => (model.nodes ?? []).map((entry) => entry.node).join(", ") },
          {
            header: "loaded",
            value: (model) => model.loaded_instances.map((instance) => `${instance.node ?? "here"} (ctx ${instance.config.context_length})`).join(", ") || null,
          },
        ],
        json(),
        options.node === undefined ? "no models: lmgate models pull <publisher/repo> --quant Q4_K_M" : `no models on ${options.node}`,
      );
    });

  models
    .command("pull <model>")
    .description("download a model (a Hugging Face repo, a hub URL, or a direct .gguf URL) onto a node, with a progress bar; Ctrl-C cancels it")
    .option("--quant <quantization>", "which quantization of a repo, e.g. Q4_K_M (default: Q4_K_M, then Q8_0, then the first)")
    .option("--node <node>", "the node to download to (default: the one with the most memory)")
    .option("--detach", "start the download and return its job id", false)
    .action(async (model: string, options: { quant?: string; node?: string; detach: boolean }) => {
      const started = await client().download({ model, quantization: options.quant, node: options.node });
      if (options.detach || started.job_id === undefined || started.status !== "downloading") return report(started, json());
      report(await follow(client(), started, json()), json());
    });

  models
    .command("rm <model>")
    .description("delete a model's files from a node (refused while loaded, unless --force)")
    .option("--node <node>", "the node to delete it from (needed when several hold it)")
    .option("--force", "unload it first if it is loaded", false)
    .action(async (model: string, options: { node?: string; force: boolean }) => {
      const deleted = await client().delete({ model, node: options.node, force: options.force });
      if (json()) return console.log(JSON.stringify(deleted, null, 2));
      console.log(`${pc.yellow("Deleted")} ${deleted.model}${deleted.node ? ` from ${deleted.node}` : ""}: ${deleted.files.join(", ")}`);
    });

  models
    .command("load <model>")
    .description("load a model (kept until unloaded)")
    .option("--node <node>", "the node to load it on (default: placed by the fleet)")
    .option("--context-length <tokens>", "context length per slot", contextLength)
    .action(async (model: string, options: { node?: string; contextLength?: number }) => {
      const loaded = await client().load({ model, node: options.node, context_length: options.contextLength, echo_load_config: true });
      if (json()) return console.log(JSON.stringify(loaded, null, 2));
      const config = loaded.load_config ? ` (context ${loaded.load_config.context_length})` : "";
      console.log(`${pc.green("Loaded")} ${loaded.instance_id}${config} in ${loaded.load_time_seconds.toFixed(1)} s`);
    });

  models
    .command("unload <instance>")
    .description("unload a model instance (from every node that has it loaded, or from --node), once its running generations finish")
    .option("--node <node>", "only on this node")
    .option("--force", "unload at once, cutting running generations (the admin token only)")
    .action(async (instance: string, options: { node?: string; force?: boolean }) => {
      const unloaded = await client().unload({ instance_id: instance, node: options.node, ...(options.force ? { force: true } : {}) });
      if (json()) return console.log(JSON.stringify(unloaded, null, 2));
      const drained = unloaded.drained;
      const waited = drained === undefined || drained.generations === 0 ? "" : ` after waiting ${drained.waited_seconds.toFixed(1)} s for ${drained.generations} generation(s)${drained.cut > 0 ? `, ${drained.cut} cut` : ""}`;
      console.log(`${pc.yellow("Unloaded")} ${unloaded.instance_id}${waited}`);
    });
}

/** Polls the job until it ends, drawing a progress bar (not with --json); Ctrl-C cancels the download. */
async function follow(client: ModelsClient, started: DownloadJob, json: boolean): Promise<DownloadJob> {
  const jobId = started.job_id as string;
  const bar = json
    ? undefined
    : new cliProgress.SingleBar(
        { format: `${pc.cyan("{bar}")} {percentage}% | {done} of {total} | {speed} | {eta}`, hideCursor: true },
        cliProgress.Presets.shades_classic,
      );
  const draw = (job: DownloadJob) => {
    const payload = {
      done: mib(job.downloaded_bytes),
      total: mib(job.total_size_bytes),
      speed: job.bytes_per_second === undefined ? "…" : `${mib(job.bytes_per_second)}/s`,
      eta: job.estimated_completion ? `done ~${job.estimated_completion.slice(11, 19)} UTC` : "",
    };
    bar?.setTotal(Math.max(1, job.total_size_bytes));
    bar?.update(job.downloaded_bytes, payload);
  };
  bar?.start(Math.max(1, started.total_size_bytes), 0, { done: "0", total: mib(started.total_size_bytes), speed: "…", eta: "" });
  let cancelling: Promise<DownloadJob> | undefined;
  const onInterrupt = () => {
    cancelling ??= client.cancelDownload(jobId);
  };
  process.once("SIGINT", onInterrupt);
  try {
    let job = started;
    while (job.status === "downloading" && cancelling === undefined) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      job = await client.downloadStatus(jobId);
      draw(job);
    }
    return cancelling ? await cancelling : job;
  } finally {
    process.removeListener("SIGINT", onInterrupt);
    bar?.stop();
  }
}

function report(job: DownloadJob, json: boolean): void {
  if (json) return console.log(JSON.stringify(job, null, 2));
  const where = job.node ? ` on ${job.node}` : "";
  if (job.status === "completed") console.log(`${pc.green("Downloaded")} ${job.model_key ?? ""}${where} (${size(job.total_size_bytes)})`);
  else if (job.status === "already_downloaded") console.log(`${pc.green("Already downloaded")}${job.model_key ? ` ${job.model_key}` : ""}${where}`);
  else if (job.status === "downloading") console.log(`Downloading${where}: job ${job.job_id} (lmgate models pull shows progress; status at /api/v1/models/download/status/${job.job_id})`);
  else {
    console.log(`${pc.red(job.status === "cancelled" ? "Cancelled" : "Failed")}${where}${job.error ? `: ${job.error}` : ""}`);
    process.exitCode = 1;
  }
}
