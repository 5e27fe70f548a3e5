/**
 * A small Prometheus registry for workerd, where prom-client cannot run (it needs Node APIs):
 * counters, gauges and histograms with typed label names, rendered in the text exposition format
 * 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
 */

/** What Prometheus expects for the text format (the same header prom-client sends). */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type Labels<L extends string> = Readonly<Record<L, string>>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

interface MetricOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
}

abstract class Metric<L extends string, S> {
  abstract readonly type: "counter" | "gauge" | "histogram";
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  /** By label values (JSON of the values in `labelNames` order). */
  protected series = new Map<string, { values: string[]; state: S }>();

  constructor(options: MetricOptions<L>) {
    const labelNames = options.labelNames ?? [];
    // Programming errors, caught on the first construction rather than by a failing scrape.
    if (!METRIC_NAME.test(options.name)) throw new Error(`invalid metric name "${options.name}"`);
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith("__")) throw new Error(`invalid label name "${label}" on ${options.name}`);
    }
    this.name = options.name;
    this.help = options.help;
    this.labelNames = labelNames;
  }

  protected abstract initial(): S;

  /** Every series as plain data, for `restore` in the next life of the object. */
  saved(): Array<{ values: string[]; state: S }> {
    return [...this.series.values()];
  }

  /** Puts back what `saved` returned; series whose shape no longer fits (changed buckets or labels) are left out. */
  restore(saved: Array<{ values: string[]; state: S }>): void {
    for (const { values, state } of saved) {
      if (values.length !== this.labelNames.length || !this.fits(state)) continue;
      this.series.set(JSON.stringify(values), { values, state });
    }
  }

  protected fits(state: S): boolean {
    const initial = this.initial();
    return typeof state === "object" && state !== null && Object.keys(initial as object).every((field) => field in (state as object));
  }

  protected stateOf(labels: Labels<L>): S {
    const values = this.labelNames.map((name) => labels[name]);
    const key = JSON.stringify(values);
    let entry = this.series.get(key);
    if (entry === undefined) {
      entry = { values, state: this.initial() };
      this.series.set(key, entry);
    }
    return entry.state;
  }

  protected abstract sampleLines(values: string[], state: S): string[];

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    // A metric without labels has exactly one series, reported as zero before anything happens.
    const series = this.series.size === 0 && this.labelNames.length === 0 ? [{ values: [], state: this.initial() }] : this.series.values();
    for (const { values, state } of series) lines.push(...this.sampleLines(values, state));
    return lines.join("\n");
  }

  protected sample(name: string, labels: Array<[string, string]>, value: number): string {
    const text = labels.map(([label, labelValue]) => `${label}="${escapeLabelValue(labelValue)}"`).join(",");
    return `${name}${text === "" ? "" : `{${text}}`} ${formatValue(value)}`;
  }

  protected pairs(values: string[]): Array<[string, string]> {
    return this.labelNames.map((name, index) => [name, values[index] as string]);
  }
}

export class Counter<L extends string = never> extends Metric<L, { value: number }> {
  readonly type = "counter";

  protected initial() {
    return { value: 0 };
  }

  inc(labels: Labels<L>, by = 1): void {
    if (!(by >= 0)) throw new Error(`${this.name}: a counter only goes up (got ${by})`);
    this.stateOf(labels).value += by;
  }

  protected sampleLines(values: string[], state: { value: number }): string[] {
    return [this.sample(this.name, this.pairs(values), state.value)];
  }
}

export class Gauge<L extends string = never> extends Metric<L, { value: number }> {
  readonly type = "gauge";

  protected initial() {
    return { value: 0 };
  }

  set(labels: Labels<L>, value: number): void {
    this.stateOf(labels).value = value;
  }

  /** Forgets every labelled series, so one that no longer exists (a node that left) stops being reported. */
  reset(): void {
    this.series.clear();
  }

  protected sampleLines(values: string[], state: { value: number }): string[] {
    return [this.sample(this.name, this.pairs(values), state.value)];
  }
}

interface HistogramState {
  /** Observations per bucket (not cumulative); one more slot at the end for those above every bound. */
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram<L extends string = never> extends Metric<L, HistogramState> {
  readonly type = "histogram";
  readonly buckets: readonly number[];

  constructor(options: MetricOptions<L> & { buckets: readonly number[] }) {
    super(options);
    if (this.labelNames.some((label) => label === "le")) throw new Error(`${options.name}: "le" is reserved for buckets`);
    this.buckets = [...options.buckets].sort((a, b) => a - b);
  }

  protected initial(): HistogramState {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  observe(labels: Labels<L>, value: number): void {
    const state = this.stateOf(labels);
    const index = this.buckets.findIndex((bound) => value <= bound);
    state.counts[index === -1 ? this.buckets.length : index]! += 1;
    state.sum += value;
    state.count += 1;
  }

  protected override fits(state: HistogramState): boolean {
    return super.fits(state) && Array.isArray(state.counts) && state.counts.length === this.buckets.length + 1;
  }

  protected sampleLines(values: string[], state: HistogramState): string[] {
    const labels = this.pairs(values);
    const lines: string[] = [];
    let cumulative = 0;
    this.buckets.forEach((bound, index) => {
      cumulative += state.counts[index] ?? 0;
      lines.push(this.sample(`${this.name}_bucket`, [...labels, ["le", formatValue(bound)]], cumulative));
    });
    lines.push(this.sample(`${this.name}_bucket`, [...labels, ["le", "+Inf"]], state.count));
    lines.push(this.sample(`${this.name}_sum`, labels, state.sum));
    lines.push(this.sample(`${this.name}_count`, labels, state.count));
    return lines;
  }
}

/** Metrics in the order they were registered, rendered together. */
export class MetricsRegistry {
  readonly #metrics: Array<Metric<string, unknown>> = [];

  counter<L extends string = never>(options: MetricOptions<L>): Counter<L> {
    return this.#add(new Counter<L>(options));
  }

  gauge<L extends string = never>(options: MetricOptions<L>): Gauge<L> {
    return this.#add(new Gauge<L>(options));
  }

  histogram<L extends string = never>(options: MetricOptions<L> & { buckets: readonly number[] }): Histogram<L> {
    return this.#add(new Histogram<L>(options));
  }

  /** The counters and histograms (gauges are read afresh), by metric name, as plain data. */
  saved(): Record<string, unknown> {
    return Object.fromEntries(this.#metrics.filter((metric) => metric.type !== "gauge").map((metric) => [metric.name, metric.saved()]));
  }

  /** Puts back what `saved` returned, skipping metrics that are gone or changed type. */
  restore(saved: Record<string, unknown>): void {
    for (const metric of this.#metrics) {
      const series = saved[metric.name];
      if (metric.type !== "gauge" && Array.isArray(series)) metric.restore(series as Array<{ values: string[]; state: unknown }>);
    }
  }

  /** Every metric in the text format, ending with a newline as the format requires. */
  render(): string {
    return `${this.#metrics.map((metric) => metric.render()).join("\n")}\n`;
  }

  #add<M extends Metric<string, unknown>>(metric: M): M {
    if (this.#metrics.some((existing) => existing.name === metric.name)) throw new Error(`metric ${metric.name} registered twice`);
    this.#metrics.push(metric);
    return metric;
  }
}

const escapeHelp = (text: string) => text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");

const escapeLabelValue = (text: string) => text.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");

function formatValue(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return Number.isNaN(value) ? "NaN" : String(value);
}
