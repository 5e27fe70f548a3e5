import { constants } from "node:os";

const SIGNALS = ["SIGINT", "SIGTERM"] as const;
export type ShutdownSignal = (typeof SIGNALS)[number];

export interface ShutdownSignalOptions {
  /**
   * A second signal while the first one's shutdown runs: the default exits at once with
   * 128 + the signal's number, as a shell reports a process killed by it.
   */
  onSecondSignal?: (signal: ShutdownSignal) => void;
}

/**
 * Resolves with the first SIGINT or SIGTERM. Listening replaces Node's default of dying on the
 * spot, so the agent can drain; a second signal is the impatient "now", and gets its way.
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
    for (const signal of SIGNALS) process.on(signal, listener);
  });
}
