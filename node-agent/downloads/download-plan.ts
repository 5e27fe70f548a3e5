import { ApiError, invalidRequest } from "../../shared/protocol/api-error.ts";
import type { HubClient, HubFile } from "./hub-client.ts";

/** One file to fetch, and where it goes below the models folder. */
export interface PlannedFile {
  /** The URL to GET: a hub `resolve` URL (which redirects to its CDN) or a direct URL. */
  url: string;
  /** `<publisher>/<repo>/<file>`: LM Studio's layout. */
  relativePath: string;
  /** Bytes, when the source says before the download starts. */
  size: number | undefined;
  /** Lower-case hex, when the hub gives one (its LFS object id). */
  sha256: string | undefined;
  /** Whether `url` is on the hub (its token may be sent there, never elsewhere). */
  hub: boolean;
}

/** A whole model: one file, or every shard of a split GGUF, which only together make a model. */
export interface DownloadPlan {
  /** What the job is about, for messages: `publisher/repo` or the file name. */
  label: string;
  files: PlannedFile[];
}

const REPO_ID = /^[\w.-]+\/[\w.-]+$/;
/** A folder or file name that stays where it is put: no separators, no leading dot (`..`, hidden files), no control characters. */
const SAFE_NAME = /^[^./\\\x00-\x1f][^/\\\x00-\x1f]{0,254}$/;
const SPLIT_NAME = /^(.+)-(\d{5})-of-(\d{5})\.gguf$/i;
/** llama.cpp's preference when no quantization is asked for. */
const DEFAULT_QUANTIZATIONS = ["Q4_K_M", "Q8_0"];

/**
 * Turns LM Studio's download request into files: a repo id (`publisher/repo`) or hub URL with an
 * optional quantization, chosen the way llama.cpp's `-hf` chooses; or a direct URL to a `.gguf`.
 */
export async function planDownload(hub: HubClient, model: string, quantization: string | undefined, signal?: AbortSignal): Promise<DownloadPlan> {
  const target = parseModelReference(hub.endpoint, model);
  if (target.kind === "direct") {
    if (quantization !== undefined) throw invalidRequest("quantization applies to Hugging Face repositories, not to a direct file URL", "quantization");
    const name = safeName(decodeURIComponent(target.url.pathname.split("/").at(-1) ?? ""));
    const host = safeName(target.url.hostname.replace(/[^\w.-]/g, "-"));
    const size = await hub.probeSize(target.url, signal);
    return {
      label: name,
      files: [{ url: target.url.href, relativePath: `${host}/${name.replace(/\.gguf$/i, "")}/${name}`, size, sha256: undefined, hub: false }],
    };
  }
  const [publisher, repo] = target.repo.split("/").map(safeName) as [string, string];
  const listing = await hub.listFiles(target.repo, target.revision, signal);
  const ggufs = listing.filter((file) => file.path.toLowerCase().endsWith(".gguf"));
  const first = target.path !== undefined ? ggufs.find((file) => file.path === target.path) : chooseFile(ggufs, quantization);
  if (!first) {
    const what = target.path ?? (quantization ? `a ${quantization} GGUF` : "a GGUF model file");
    const available = modelFiles(ggufs).map((file) => file.path);
    throw new ApiError(404, `${target.repo} has no ${what}.` + (available.length > 0 ? ` Its GGUF files: ${available.join(", ")}.` : ""), {
      param: quantization !== undefined ? "quantization" : "model",
      code: "model_not_found",
    });
  }
  return {
    label: target.repo,
    files: shardsOf(first, ggufs).map((file) => ({
      url: hub.resolveUrl(target.repo, target.revision, file.path),
      // LM Studio keeps models exactly two levels deep, so a file in a repo subfolder lands beside the others.
      relativePath: `${publisher}/${repo}/${safeName(file.path.split("/").at(-1) ?? "")}`,
      size: file.size,
      sha256: file.sha256,
      hub: true,
    })),
  };
}

/** Names from a caller or a hub become paths on the node: one that could leave its folder is refused. */
function safeName(name: string): string {
  if (!SAFE_NAME.test(name)) throw invalidRequest(`"${name}" cannot be a file or folder name in the models folder`, "model");
  return name;
}

type ModelReference =
  | { kind: "hub"; repo: string; revision: string; path: string | undefined }
  | { kind: "direct"; url: URL };

function parseModelReference(endpoint: string, model: string): ModelReference {
  if (REPO_ID.test(model)) return { kind: "hub", repo: model, revision: "main", path: undefined };
  let url: URL;
  try {
    url = new URL(model);
  } catch {
    throw invalidRequest(`"${model}" is neither a repository id (publisher/repo) nor a URL`, "model");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw invalidRequest("model URLs must be http(s)", "model");
  const base = new URL(endpoint.endsWith("/") ? endpoint : `${endpoint}/`);
  const hubHosts = new Set([base.host, "huggingface.co", "hf.co"]);
  if (hubHosts.has(url.host)) {
    const below = url.host === base.host && url.pathname.startsWith(base.pathname) ? url.pathname.slice(base.pathname.length) : url.pathname.slice(1);
    const match = /^([\w.-]+\/[\w.-]+)(?:\/(?:resolve|blob)\/([^/]+)\/(.+))?\/?$/.exec(below);
    // A bare `<a>/<b>.gguf` on the hub's host is a file, not a repository.
    if (match && (match[3] !== undefined || !below.toLowerCase().endsWith(".gguf"))) {
      const [, repo, revision, path] = match as unknown as [string, string, string | undefined, string | undefined];
      return { kind: "hub", repo, revision: revision ? decodeURIComponent(revision) : "main", path: path ? decodeURIComponent(path) : undefined };
    }
  }
  if (!url.pathname.toLowerCase().endsWith(".gguf")) throw invalidRequest("a direct model URL must name a .gguf file", "model");
  return { kind: "direct", url };
}

/** Files that are models on their own: not projectors, importance matrices, or shards after the first. */
function modelFiles(ggufs: HubFile[]): HubFile[] {
  return ggufs.filter((file) => {
    const name = file.path.toLowerCase();
    if (name.includes("mmproj") || name.includes("imatrix")) return false;
    const split = SPLIT_NAME.exec(file.path.split("/").at(-1) ?? "");
    return split === null || Number(split[2]) === 1;
  });
}

function chooseFile(ggufs: HubFile[], quantization: string | undefined): HubFile | undefined {
  const candidates = modelFiles(ggufs);
  const byTag = (tag: string) => {
    const pattern = new RegExp(`${tag.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}[.-]`, "i");
    return candidates.find((file) => pattern.test(file.path));
  };
  if (quantization !== undefined) return byTag(quantization);
  for (const tag of DEFAULT_QUANTIZATIONS) {
    const found = byTag(tag);
    if (found) return found;
  }
  return candidates[0];
}

/** A split GGUF's every shard, in order; llama.cpp opens them side by side under their original names. */
function shardsOf(first: HubFile, ggufs: HubFile[]): HubFile[] {
  const split = SPLIT_NAME.exec(first.path);
  if (!split) return [first];
  const [, prefix, , count] = split as unknown as [string, string, string, string];
  const shards = [];
  for (let index = 1; index <= Number(count); index++) {
    const path = `${prefix}-${String(index).padStart(5, "0")}-of-${count}.gguf`;
    const shard = ggufs.find((file) => file.path === path);
    if (!shard) throw new ApiError(404, `${path} is missing from the repository: the split model is incomplete.`, { code: "model_not_found", param: "model" });
    shards.push(shard);
  }
  return shards;
}
