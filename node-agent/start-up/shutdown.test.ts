import { afterEach, expect, test } from "vitest";
import { shutdownSignal, shutdownSignals, type ShutdownSignal } from "./shutdown.ts";

const listening = (signal: ShutdownSignal) => process.listeners(signal);
const before = new Map(shutdownSignals("win32").concat(shutdownSignals("linux")).map((signal) => [signal, listening(signal)]));
afterEach(() => {
  for (const [signal, listeners] of before) for (const listener of listening(signal)) if (!listeners.includes(listener)) process.off(signal, listener);
});

test("on Windows, where SIGTERM never comes, Ctrl+Break (SIGBREAK) and closing the console (SIGHUP) stop the agent", async () => {
  expect(shutdownSignals("win32")).toEqual(["SIGINT", "SIGBREAK", "SIGHUP"]);
  const seconds: string[] = [];
  const signal = shutdownSignal({ platform: "win32", onSecondSignal: (second) => seconds.push(second) });
  process.emit("SIGBREAK", "SIGBREAK");
  expect(await signal).toBe("SIGBREAK");
  process.emit("SIGHUP", "SIGHUP");
  expect(seconds).toEqual(["SIGHUP"]);
});

test("elsewhere SIGINT and SIGTERM", async () => {
  expect(shutdownSignals("darwin")).toEqual(["SIGINT", "SIGTERM"]);
  const signal = shutdownSignal({ platform: "linux", onSecondSignal: () => {} });
  process.emit("SIGTERM", "SIGTERM");
  expect(await signal).toBe("SIGTERM");
});
