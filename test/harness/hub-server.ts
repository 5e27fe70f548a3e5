import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** A request the hub saw, for tests to check what the downloader sent. */
export interface SeenRequest {
  method: string;
  path: string;
  range: string | undefined;
  authorization: string | undefined;
}

export interface HubServer {
  /** What `HF_ENDPOINT` is set to. */
  readonly url: string;
  readonly requests: SeenRequest[];
  addFile(repo: string, path: string, bytes: Uint8Array): void;
  /** The next download of `path` sends this many bytes, then hangs until the client gives up or `cutStalled()`. */
  stall(path: string, afterBytes: number): void;
  /** Drops the connections of stalled downloads, as a flaky network would. */
  cutStalled(): void;
  /** The listing and headers give a hash that is not the file's. */
  lieAboutHash(path: string): void;
  /** The listing and headers give this size, not the file's (which the CDN still sends, whole). */
  lieAboutSize(path: string, size: number): void;
  /** The repo is gated, as on the hub: 403 with `X-Error-Code: GatedRepo` to anyone. */
  gate(repo: string): void;
  close(): Promise<void>;
}

interface HostedFile {
  id: number;
  bytes: Uint8Array;
  sha256: string;
  stallAfter?: number;
  lie?: boolean;
  advertisedSize?: number;
}

/**
 * A local stand-in for huggingface.co that serves files the way the hub does: the tree API with
 * LFS sizes and SHA-256s; `resolve` URLs answering 302 to a CDN URL with `X-Linked-Size` and
 * `X-Linked-Etag`; the CDN honouring `Range` with 206. Direct files live under `/files/`.
 */
export interface HubServerOptions {
  /**
   * The host name the CDN redirects go to, on the same port (e.g. `localhost` for a hub on
   * 127.0.0.1): another host, as the real hub's CDN is, so a client must drop the hub's token.
   * Defaults to the hub's own host.
   */
  cdnHost?: string;
}

export async function startHubServer(options: HubServerOptions = {}): Promise<HubServer> {
  const repos = new Map<string, Map<string, HostedFile>>();
  const cdnFiles: HostedFile[] = [];
  const direct = new Map<string, HostedFile>();
  const requests: SeenRequest[] = [];
  const gated = new Set<string>();
  const hanging = new Set<ServerResponse>();

  const find = (path: string) => [...repos.values()].map((files) => files.get(path)).find((file) => file !== undefined) ?? direct.get(path);
  const advertisedSha = (file: HostedFile) => (file.lie ? createHash("sha256").update("not the file").digest("hex") : file.sha256);
  const advertisedSize = (file: HostedFile) => file.advertisedSize ?? file.bytes.byteLength;

  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://hub");
    requests.push({ method: request.method ?? "GET", path: url.pathname, range: request.headers.range, authorization: request.headers.authorization });
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/[^/]+$/.exec(url.pathname);
    const repo = tree?.[1] ?? /^\/([^/]+\/[^/]+)\/resolve\//.exec(url.pathname)?.[1];
    if (repo !== undefined && gated.has(repo)) return void response.writeHead(403, { "x-error-code": "GatedRepo" }).end("Access to this repo is restricted.");
    if (tree) {
      const files = repos.get(tree[1] as string);
      if (!files) return notFound(response, "RepoNotFound");
      const listing = [...files].map(([path, file]) => ({
        type: "file",
        oid: createHash("sha1").update(file.bytes).digest("hex"),
        size: advertisedSize(file),
        path,
        lfs: { oid: advertisedSha(file), size: advertisedSize(file), pointerSize: 134 },
      }));
      return void response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(listing));
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/[^/]+\/(.+)$/.exec(url.pathname);
    if (resolve) {
      const files = repos.get(resolve[1] as string);
      if (!files) return notFound(response, "RepoNotFound");
      const file = files.get(decodeURIComponent(resolve[2] as string));
      if (!file) return notFound(response, "EntryNotFound");
      // Like the hub: a signed URL elsewhere, and the LFS size and hash on the redirect itself.
      return void response
        .writeHead(302, {
          location: `http://${options.cdnHost === undefined ? request.headers.host : `${options.cdnHost}:${port}`}/cdn/${file.id}?X-Amz-Signature=test`,
          "x-linked-size": String(advertisedSize(file)),
          "x-linked-etag": `"${advertisedSha(file)}"`,
          "x-repo-commit": "0".repeat(40),
        })
        .end();
    }
    const cdn = /^\/cdn\/(\d+)$/.exec(url.pathname);
    if (cdn) {
      const file = cdnFiles[Number(cdn[1])];
      return file ? serveBytes(request, response, file) : notFound(response, "EntryNotFound");
    }
    const file = url.pathname.startsWith("/files/") ? direct.get(decodeURIComponent(url.pathname.slice("/files/".length))) : undefined;
    if (file) return serveBytes(request, response, file);
    notFound(response, "EntryNotFound");
  });

  function serveBytes(request: IncomingMessage, response: ServerResponse, file: HostedFile): void {
    const total = file.bytes.byteLength;
    const range = /^bytes=(\d+)-$/.exec(request.headers.range ?? "");
    const start = range ? Number(range[1]) : 0;
    if (start >= total && total > 0) return void response.writeHead(416, { "content-range": `bytes */${total}` }).end();
    const headers: Record<string, string> = { "accept-ranges": "bytes", "content-length": String(total - start), "content-type": "application/octet-stream" };
    if (range) headers["content-range"] = `bytes ${start}-${total - 1}/${total}`;
    response.writeHead(range ? 206 : 200, headers);
    if (request.method === "HEAD") return void response.end();
    const body = file.bytes.subarray(start);
    if (file.stallAfter !== undefined) {
      const stall = file.stallAfter;
      file.stallAfter = undefined;
      hanging.add(response);
      response.on("close", () => hanging.delete(response));
      response.write(body.subarray(0, stall));
      return;
    }
    response.end(body);
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const host = (bytes: Uint8Array): HostedFile => {
    const file: HostedFile = { id: cdnFiles.length, bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
    cdnFiles.push(file);
    return file;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    addFile(repo, path, bytes) {
      if (!repos.has(repo)) repos.set(repo, new Map());
      const hosted = host(bytes);
      repos.get(repo)?.set(path, hosted);
      direct.set(path, hosted);
    },
    stall(path, afterBytes) {
      const file = find(path);
      if (file) file.stallAfter = afterBytes;
    },
    cutStalled() {
      for (const response of hanging) response.socket?.destroy();
    },
    lieAboutHash(path) {
      const file = find(path);
      if (file) file.lie = true;
    },
    lieAboutSize(path, size) {
      const file = find(path);
      if (file) file.advertisedSize = size;
    },
    gate(repo) {
      gated.add(repo);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const response of hanging) response.socket?.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function notFound(response: ServerResponse, code: string): void {
  response.writeHead(404, { "x-error-code": code, "x-error-message": code, "content-type": "application/json" }).end(JSON.stringify({ error: code }));
}
