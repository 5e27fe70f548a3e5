import * as z from "zod";
import { ApiError } from "../../shared/protocol/api-error.ts";
import { AddressGuard, type Resolve } from "./address-guard.ts";

export const DEFAULT_HUB_ENDPOINT = "https://huggingface.co";

export interface HubClientOptions {
  /** `HF_ENDPOINT`: the hub or a mirror of it. */
  endpoint?: string;
  /** `HF_TOKEN`: sent to the hub only, never to the CDN it redirects to, never logged. */
  token?: string;
  /** `LMGATE_ALLOW_PRIVATE_DOWNLOADS=1`: direct URLs and redirects may reach private addresses (see `AddressGuard`). */
  allowPrivate?: boolean;
  /** Name resolution for that check; the system's by default. */
  resolve?: Resolve;
}

/** The variables `huggingface_hub` and llama.cpp read: `MODEL_ENDPOINT` first (llama.cpp), then `HF_ENDPOINT`; `HF_TOKEN`. */
export function hubOptionsFromEnv(env: NodeJS.ProcessEnv): HubClientOptions {
  return {
    endpoint: env.MODEL_ENDPOINT || env.HF_ENDPOINT || undefined,
    token: env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || undefined,
    allowPrivate: env.LMGATE_ALLOW_PRIVATE_DOWNLOADS === "1",
  };
}

/** A file of a repository as the hub's tree API lists it. */
export interface HubFile {
  path: string;
  size: number;
  /** The LFS object id, which is the SHA-256 of the content. */
  sha256: string | undefined;
}

/** The opened body of a file, possibly from an offset. */
export interface OpenedFile {
  body: ReadableStream<Uint8Array>;
  /** Where the body starts: the requested offset if the server honoured the range, else 0. */
  start: number;
  /** The whole file's size when the server says. */
  size: number | undefined;
  /** SHA-256 of the whole file, when the hub says (`X-Linked-Etag` of an LFS file). */
  sha256: string | undefined;
}

const TreeEntry = z.object({
  type: z.string(),
  path: z.string(),
  size: z.number().int().nonnegative(),
  lfs: z.object({ oid: z.string(), size: z.number().int().nonnegative() }).optional(),
});

const SHA256 = /^[0-9a-f]{64}$/;
const MAX_REDIRECTS = 5;

/**
 * Talks to a Hugging Face hub the way `huggingface_hub` and llama.cpp do: the tree API for
 * listings, `resolve` URLs that redirect to a CDN with the size and hash in `X-Linked-*` headers,
 * `Range` for resuming.
 */
export class HubClient {
  readonly endpoint: string;
  readonly #token: string | undefined;
  readonly #guard: AddressGuard;

  constructor(options: HubClientOptions = {}) {
    this.endpoint = (options.endpoint ?? DEFAULT_HUB_ENDPOINT).replace(/\/+$/, "");
    this.#token = options.token;
    this.#guard = new AddressGuard({ trustedHost: new URL(this.endpoint).host, allowPrivate: options.allowPrivate, resolve: options.resolve });
  }

  resolveUrl(repo: string, revision: string, path: string): string {
    return `${this.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${path.split("/").map(encodeURIComponent).join("/")}`;
  }

  /** Every file of the repository at `revision`, following the API's pagination. */
  async listFiles(repo: string, revision: string, signal?: AbortSignal): Promise<HubFile[]> {
    const files: HubFile[] = [];
    let next: string | undefined = `${this.endpoint}/api/models/${repo}/tree/${encodeURIComponent(revision)}?recursive=true`;
    while (next !== undefined) {
      const response: Response = await this.#fetchOk(next, { signal, headers: this.#headers(next) }, repo);
      const parsed = z.array(TreeEntry).safeParse(await response.json().catch(() => null));
      if (!parsed.success) throw new ApiError(502, `The hub answered the file listing of ${repo} with something unexpected.`, { code: "hub_error" });
      for (const entry of parsed.data) {
        if (entry.type !== "file") continue;
        const oid = entry.lfs?.oid.toLowerCase();
        files.push({ path: entry.path, size: entry.lfs?.size ?? entry.size, sha256: oid !== undefined && SHA256.test(oid) ? oid : undefined });
      }
      next = nextLink(response.headers.get("link"), next);
    }
    return files;
  }

  /**
   * The size of a direct URL's file, from a HEAD request; undefined when the server does not say
   * (or takes no HEAD). A missing or forbidden file is the caller's error at once.
   */
  async probeSize(url: URL, signal?: AbortSignal): Promise<number | undefined> {
    // Redirects are followed by hand, so each hop's address is checked before it is asked.
    let current = url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const response = await this.#fetch(current.href, { method: "HEAD", redirect: "manual", signal, headers: { "accept-encoding": "identity" } });
      await response.body?.cancel();
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location !== null) {
        current = new URL(location, current);
        continue;
      }
      if (response.ok) return contentLength(response);
      const error = hubError(response, url.pathname);
      if (error.code !== "download_failed") throw error;
      return undefined;
    }
    return undefined;
  }

  /**
   * GETs a file from `offset`, following redirects by hand so the hub's `X-Linked-*` headers are
   * seen and its token is dropped when the redirect leaves the hub's host (signed CDN URLs).
   */
  async open(url: string, options: { offset: number; hub: boolean; signal: AbortSignal }): Promise<OpenedFile> {
    let current = url;
    let linkedSize: number | undefined;
    let linkedSha: string | undefined;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { "accept-encoding": "identity", ...(options.hub ? this.#headers(current) : {}) };
      if (options.offset > 0) headers.range = `bytes=${options.offset}-`;
      const response = await this.#fetch(current, { headers, redirect: "manual", signal: options.signal });
      const size = response.headers.get("x-linked-size");
      if (size !== null && /^\d+$/.test(size)) linkedSize = Number(size);
      const etag = normalizeEtag(response.headers.get("x-linked-etag"));
      if (etag !== undefined && SHA256.test(etag)) linkedSha = etag;
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location !== null) {
        await response.body?.cancel();
        if (hop >= MAX_REDIRECTS) throw new ApiError(502, "The download redirected too many times.", { code: "download_failed" });
        current = new URL(location, current).href;
        continue;
      }
      if (!response.ok || response.body === null) {
        await response.body?.cancel();
        throw hubError(response, url);
      }
      if (response.status === 206) {
        const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(response.headers.get("content-range") ?? "");
        if (!range || Number(range[1]) !== options.offset) {
          await response.body.cancel();
          throw new ApiError(502, "The server answered a resume with the wrong range.", { code: "download_failed" });
        }
        return { body: response.body, start: options.offset, size: linkedSize ?? (range[2] === "*" ? undefined : Number(range[2])), sha256: linkedSha };
      }
      return { body: response.body, start: 0, size: linkedSize ?? contentLength(response), sha256: linkedSha };
    }
  }

  /** The token goes to the hub's own host only. */
  #headers(url: string): Record<string, string> {
    if (this.#token === undefined || new URL(url).host !== new URL(this.endpoint).host) return {};
    return { authorization: `Bearer ${this.#token}` };
  }

  /** A fetch to an address the guard allows; an unreachable server is a 502. */
  async #fetch(url: string, init: RequestInit): Promise<Response> {
    await this.#guard.check(new URL(url));
    try {
      return await fetch(url, init);
    } catch (error) {
      if (init.signal?.aborted) throw error;
      throw new ApiError(502, `Could not reach ${new URL(url).host}: ${(error as Error).message}`, { code: "hub_unreachable" });
    }
  }

  async #fetchOk(url: string, init: RequestInit, what: string): Promise<Response> {
    const response = await this.#fetch(url, init);
    if (!response.ok) {
      await response.body?.cancel();
      throw hubError(response, what);
    }
    return response;
  }
}

/** The hub names its errors in `X-Error-Code`; they become LM Studio-style 4xx/5xx for the caller. */
function hubError(response: Response, what: string): ApiError {
  const code = response.headers.get("x-error-code");
  if (code === "GatedRepo" || response.status === 401 || response.status === 403) {
    return new ApiError(403, `Access to ${what} is restricted: set HF_TOKEN on the node to a token that may read it.`, { code: "hub_access_denied" });
  }
  if (response.status === 404 || code === "RepoNotFound" || code === "EntryNotFound" || code === "RevisionNotFound") {
    return new ApiError(404, `${what} was not found (${code ?? "404"}).`, { param: "model", code: "model_not_found" });
  }
  return new ApiError(502, `The download source answered ${response.status} for ${what}.`, { code: "download_failed" });
}

function contentLength(response: Response): number | undefined {
  const length = response.headers.get("content-length");
  return length !== null && /^\d+$/.test(length) ? Number(length) : undefined;
}

function normalizeEtag(etag: string | null): string | undefined {
  return etag?.replace(/^W\//, "").replaceAll('"', "").toLowerCase();
}

function nextLink(header: string | null, base: string): string | undefined {
  const match = header && /<([^>]+)>;\s*rel="?next"?/.exec(header);
  return match ? new URL(match[1] as string, base).href : undefined;
}
