import { SingleBar, Presets } from "cli-progress";

/**
 * Shows model loading on the terminal: a bar per load on a TTY, a start and a done line
 * elsewhere (logs and CI have no use for redrawn bars).
 */
export function createLoadProgress(stream: NodeJS.WriteStream = process.stderr): (modelId: string, fraction: number) => void {
  const bars = new Map<string, { bar: SingleBar | null; started: number }>();
  return (modelId, fraction) => {
    let entry = bars.get(modelId);
    if (!entry) {
      const bar = stream.isTTY
        ? new SingleBar({ format: `loading ${modelId} [{bar}] {percentage}%`, stream, hideCursor: true }, Presets.shades_classic)
        : null;
      bar?.start(100, 0);
      if (!bar) stream.write(`lmgate-agent: loading ${modelId}…\n`);
      entry = { bar, started: performance.now() };
      bars.set(modelId, entry);
    }
    entry.bar?.update(Math.round(fraction * 100));
    if (fraction >= 1) {
      entry.bar?.stop();
      stream.write(`lmgate-agent: loaded ${modelId} in ${((performance.now() - entry.started) / 1000).toFixed(1)} s\n`);
      bars.delete(modelId);
    }
  };
}
