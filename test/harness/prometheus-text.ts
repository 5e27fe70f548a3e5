import { expect } from "vitest";

/** Samples by series, e.g. `lmgate_agent_requests_total{model="m",route="r",status="200"}` (labels sorted). */
export type Samples = Map<string, number>;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;

/**
 * A strict reader of the Prometheus text exposition format (0.0.4): HELP and TYPE lines, samples
 * with well-formed names, labels and values, every sample under a declared family, histogram
 * buckets cumulative and ending in `+Inf` = `_count`. Throws on anything else. Used by the agent's
 * and the gateway's `/metrics` tests.
 */
export function parsePrometheus(text: string): { samples: Samples; types: Map<string, string> } {
  const samples: Samples = new Map();
  const types = new Map<string, string>();
  expect(text.endsWith("\n")).toBe(true);
  for (const line of text.split("\n").slice(0, -1)) {
    if (line === "") continue;
    if (line.startsWith("#")) {
      const [, keyword, name, ...rest] = line.split(" ");
      if (keyword === "TYPE") {
        expect(name).toMatch(NAME);
        expect(["counter", "gauge", "histogram", "summary", "untyped"]).toContain(rest[0]);
        expect(types.has(name as string), `TYPE ${name} twice`).toBe(false);
        types.set(name as string, rest[0] as string);
      } else expect(keyword, line).toBe("HELP");
      continue;
    }
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
    const [, name = "", labelText = "", valueText = ""] = match;
    const value = valueText === "+Inf" ? Infinity : valueText === "-Inf" ? -Infinity : Number(valueText);
    // Prometheus reads values with Go's ParseFloat, which takes NaN in any case; prom-client writes
    // "Nan" (e.g. the event-loop lag of a scrape that follows another before any lag was sampled).
    if (Number.isNaN(value) && valueText.toLowerCase() !== "nan") throw new Error(`bad value in: ${line}`);
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
    expect(types.has(family), `${name} has no TYPE line`).toBe(true);
    const labels: string[] = [];
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < labelText.length) {
      const label = LABEL.exec(labelText);
      if (!label) throw new Error(`bad labels in: ${line}`);
      labels.push(`${label[1]}="${label[2]}"`);
    }
    const key = labels.length > 0 ? `${name}{${labels.sort().join(",")}}` : name;
    expect(samples.has(key), `${key} twice`).toBe(false);
    samples.set(key, value);
  }
  for (const [family, type] of types) {
    if (type !== "histogram") continue;
    const series = new Map<string, Array<[number, number]>>();
    for (const [key, value] of samples) {
      if (!key.startsWith(`${family}_bucket{`)) continue;
      const le = /le="([^"]+)"/.exec(key)?.[1] as string;
      const rest = key.slice(`${family}_bucket`.length).replace(/,?le="[^"]+"/, "").replace("{,", "{");
      series.set(rest, [...(series.get(rest) ?? []), [le === "+Inf" ? Infinity : Number(le), value]]);
    }
    for (const [labels, buckets] of series) {
      buckets.sort((a, b) => a[0] - b[0]);
      buckets.forEach(([, count], index) => expect(count).toBeGreaterThanOrEqual(buckets[index - 1]?.[1] ?? 0));
      expect(buckets.at(-1)?.[0]).toBe(Infinity);
      expect(samples.get(`${family}_count${labels === "{}" ? "" : labels}`)).toBe(buckets.at(-1)?.[1]);
    }
  }
  return { samples, types };
}

export const series = (name: string, labels: Record<string, string> = {}) => {
  const entries = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  return entries.length > 0 ? `${name}{${entries.sort().join(",")}}` : name;
};
