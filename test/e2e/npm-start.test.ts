import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, test } from "vitest";
import { holdPort } from "../harness/gateway-process.ts";

/** `npm start` refuses a port it cannot use before it starts anything, and says what to do. */

const START = fileURLToPath(new URL("../../scripts/start.ts", import.meta.url));

function start(port: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [START], { env: { ...process.env, LMGATE_PORT: port }, timeout: 30_000 }, (_error, _stdout, stderr) =>
      resolve({ code: child.exitCode, stderr }),
    );
  });
}

let busy: Awaited<ReturnType<typeof holdPort>>;
beforeAll(async () => {
  busy = await holdPort();
});
afterAll(() => busy.close());

test("a port already in use is named, with the way out, and nothing starts", async () => {
  const { code, stderr } = await start(String(busy.port));
  expect(code).toBe(1);
  expect(stderr).toContain(`127.0.0.1:${busy.port} is already in use`);
  expect(stderr).toContain("LMGATE_PORT=8787 npm start");
  expect(stderr).not.toContain("wrangler");
});

test("a port that is not a number is refused", async () => {
  const { code, stderr } = await start("twelve");
  expect(code).toBe(1);
  expect(stderr).toContain('LMGATE_PORT must be a port number (1–65535), got "twelve"');
});
