import { constants } from "node:os";

export type ShutdownSignal = "SIGINT" | "SIGTERM" | "SIGBREAK" | "SIGHUP";

/**
 * The signals that mean "stop". Windows never delivers SIGTERM: there Ctrl+Break is SIGBREAK, and
 * closing the console window is SIGHUP (Windows then gives the process a few seconds).
 */
export function shutdownSignals(platform: NodeJS.Platform): ShutdownSignal[] {
  return platform === "win32" ? ["SIGINT", "SIGBREAK", "SIGHUP"] : ["SIGINT", "SIGTERM"];
}

export interface ShutdownSignalOptions {
  /**
   * A second signal while the first one's shutdown runs: the default exits at once with
   * 128 + the signal's number, as a shell reports a process killed by it.
   */
  onSecondSignal?: (signal: ShutdownSignal) => void;
  platform?: NodeJS.Platform;
}

/**
 * Resolves with the first of the platform's shutdown signals. Listening replaces Node's default of
 * dying on the spot, so the agent can drain; a second signal is the impatient "now", and gets its way.
 */
export function shutdownSignal(options: ShutdownSignalOptions = {}): Promise<ShutdownSignal> {
  const onSecond = options.onSecondSignal ?? ((signal: ShutdownSignal) => process.exit(128 + constants.signals[signal]));
  return new Promise((resolve) => {
    let received = false;
    const listener = (signal: ShutdownSignal) => {
      if (received) return onSecond(signal);
      received = true;
      resolve(signal);
    };
    for (const signal of shutdownSignals(options.platform ?? process.platform)) process.on(signal, listener);
  });
}
