/**
 * `wrangler dev` serves a Worker through a proxy of its own: its public port belongs to a second
 * workerd process whose ProxyWorker hands every request, response stream and WebSocket message to
 * one Durable Object (`idFromName("")`) before fetching the Worker's own socket. Nothing of it runs
 * on Cloudflare. This finds the Worker's own socket, so a section can measure the gateway with and
 * without that hop side by side.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * The URL of the Worker's own socket under the `wrangler dev` whose process group is `group`
 * (serving `publicUrl`), or null where it cannot be found (no `pgrep`/`lsof`, another layout).
 */
export async function workerSocketUrl(group: number, publicUrl: string): Promise<string | null> {
  const publicPort = new URL(publicUrl).port;
  try {
    const { stdout: pids } = await run("pgrep", ["-g", String(group), "workerd"]);
    for (const pid of pids.split(/\s+/).filter((pid) => pid !== "")) {
      const { stdout } = await run("lsof", ["-a", "-p", pid, "-iTCP", "-sTCP:LISTEN", "-P", "-n", "-Fn"]);
      const ports = [...stdout.matchAll(/^n127\.0\.0\.1:(\d+)$/gm)].map((match) => match[1]).filter((port) => port !== publicPort);
      for (const port of ports) {
        // The Worker's own entry answers its /health; workerd's other sockets (inspector, debug) do not.
        const url = `http://127.0.0.1:${port}`;
        const health = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) }).catch(() => null);
        if (health?.ok && (await health.text()).includes('"ok"')) return url;
      }
    }
  } catch {
    // no pgrep or lsof here, or the process is gone
  }
  return null;
}
