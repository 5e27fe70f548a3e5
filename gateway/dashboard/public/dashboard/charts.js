// @ts-check
/**
 * The three time-series charts (uPlot, vendored into ./vendor/ by scripts/build-dashboard.ts and
 * loaded only after sign-in, so the sign-in page stays a few kilobytes).
 */

/** @typedef {ReturnType<typeof import("./model.js").seriesGrid>} Grid */
/** @typedef {import("uplot")} UPlot */
/** @typedef {import("uplot").Options} UPlotOptions */

/** @type {Promise<typeof import("uplot")> | null} */
let loading = null;

/** Adds uPlot's script and stylesheet once. */
export function loadUPlot() {
  loading ??= new Promise((resolve, reject) => {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = new URL("vendor/uPlot.min.css", import.meta.url).href;
    document.head.append(css);
    const script = document.createElement("script");
    script.src = new URL("vendor/uPlot.iife.min.js", import.meta.url).href;
    script.onload = () => {
      const uPlot = /** @type {any} */ (globalThis).uPlot;
      if (typeof uPlot === "function") resolve(uPlot);
      else reject(new Error("uPlot did not load"));
    };
    script.onerror = () => {
      loading = null;
      reject(new Error("The chart library (vendor/uPlot.iife.min.js) is missing: run `node scripts/build-dashboard.ts`."));
    };
    document.head.append(script);
  });
  return loading;
}

/** @param {string} name */
const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const minutes = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

/**
 * @typedef {object} ChartSpec
 * @property {"throughput" | "ttft" | "requests"} kind
 * @property {HTMLElement} container the plot goes here; it gets `data-points` and `data-nonzero`
 * @property {HTMLElement} readout the value under the cursor, or the latest
 * @property {HTMLElement} note a message over the plot when it has nothing to show
 */

export class FleetCharts {
  /** @type {Map<string, {plot: UPlot, spec: ChartSpec, latest: string}>} */
  #charts = new Map();
  /** @type {ResizeObserver} */
  #resize;
  /** @type {Grid | null} */
  #grid = null;
  /** Nothing real to show: the y axis goes without numbers. */
  #blank = false;

  /**
   * @param {typeof import("uplot")} uPlot
   * @param {ChartSpec[]} specs
   */
  constructor(uPlot, specs) {
    this.#resize = new ResizeObserver((entries) => {
      for (const entry of entries) {
        const chart = [...this.#charts.values()].find((item) => item.spec.container === entry.target);
        const width = Math.floor(entry.contentRect.width);
        if (chart && width > 0 && Math.abs(chart.plot.width - width) > 1) chart.plot.setSize({ width, height: chart.plot.height });
      }
    });
    for (const spec of specs) {
      const plot = new uPlot(this.#options(uPlot, spec), [[], [], ...(spec.kind === "requests" ? [[]] : [])], spec.container);
      this.#charts.set(spec.kind, { plot, spec, latest: "" });
      this.#resize.observe(spec.container);
    }
  }

  /**
   * @param {typeof import("uplot")} uPlot
   * @param {ChartSpec} spec
   * @returns {UPlotOptions}
   */
  #options(uPlot, spec) {
    const accent = cssVar("--chart-1") || "#4f6bed";
    const second = cssVar("--chart-2") || "#16a394";
    const bad = cssVar("--bad") || "#d64545";
    const axis = cssVar("--muted") || "#6b7280";
    const grid = cssVar("--grid") || "#e5e7eb";
    const font = `11px ${cssVar("--font") || "system-ui, sans-serif"}`;
    const axes = /** @type {import("uplot").Axis[]} */ ([
      {
        stroke: axis,
        font,
        grid: { stroke: grid, width: 1 },
        ticks: { stroke: grid, width: 1 },
        space: 64,
        size: 26,
        values: (_u, splits) => splits.map((t) => minutes.format(new Date(t * 1000))),
      },
      {
        stroke: axis,
        font,
        grid: { stroke: grid, width: 1 },
        ticks: { show: false },
        size: 44,
        values: (_u, splits) => splits.map((v) => (this.#blank ? "" : spec.kind === "ttft" ? (v >= 1000 ? `${v / 1000}s` : `${v}`) : v >= 1000 ? `${v / 1000}k` : `${v}`)),
      },
    ]);
    const zeroBased = (/** @type {any} */ _u, /** @type {number} */ _min, /** @type {number} */ max) => /** @type {[number, number]} */ ([0, Math.max(max * 1.15, spec.kind === "ttft" ? 100 : 1)]);
    /** @type {import("uplot").Series[]} */
    let series;
    if (spec.kind === "requests") {
      const bars = uPlot.paths.bars?.({ size: [0.7, 12], gap: 1 });
      series = [
        {},
        { label: "requests", stroke: second, fill: withAlpha(second, 0.55), width: 0, paths: bars, points: { show: false } },
        { label: "errors", stroke: bad, fill: withAlpha(bad, 0.8), width: 0, paths: bars, points: { show: false } },
      ];
    } else if (spec.kind === "ttft") {
      series = [{}, { label: "TTFT p50", stroke: second, width: 2, spanGaps: false, points: { show: true, size: 3, fill: second } }];
    } else {
      series = [{}, { label: "tokens/s", stroke: accent, fill: withAlpha(accent, 0.12), width: 2, points: { show: false } }];
    }
    return {
      width: Math.max(200, spec.container.clientWidth),
      height: 156,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      scales: { x: { time: true }, y: { range: zeroBased } },
      axes,
      series,
      padding: [8, 24, 0, 0],
      hooks: {
        setCursor: [(u) => this.#showReadout(spec.kind, u.cursor.idx ?? null)],
      },
    };
  }

  /**
   * @param {string} kind
   * @param {number | null} idx
   */
  #showReadout(kind, idx) {
    const chart = this.#charts.get(kind);
    const grid = this.#grid;
    if (!chart) return;
    if (idx === null || grid === null || grid.t[idx] === undefined) {
      chart.spec.readout.textContent = chart.latest;
      return;
    }
    const at = clock.format(new Date((grid.t[idx] ?? 0) * 1000));
    chart.spec.readout.textContent = `${at} · ${describe(kind, grid, idx)}`;
  }

  /**
   * @param {Grid} grid
   * @param {Record<string, string>} latest the readout when the cursor is elsewhere
   * @param {string | null} note shown over the charts (no data, no stats)
   * @param {boolean} blank draw the frame only: the grid's values are not real
   */
  update(grid, latest, note, blank) {
    this.#grid = blank ? null : grid;
    this.#blank = blank;
    for (const [kind, chart] of this.#charts) {
      const values = blank ? [] : kind === "requests" ? [grid.requests, grid.errors] : kind === "ttft" ? [grid.ttft] : [grid.tokensPerSecond];
      const nulls = grid.t.map(() => null);
      const data = [grid.t, ...(blank ? (kind === "requests" ? [nulls, nulls] : [nulls]) : values)];
      chart.plot.setData(/** @type {any} */ (data));
      const nonzero = values.flat().filter((v) => v !== null && v > 0).length;
      chart.spec.container.dataset.points = String(blank ? 0 : grid.t.length);
      chart.spec.container.dataset.nonzero = String(nonzero);
      chart.latest = latest[kind] ?? "";
      if (chart.plot.cursor.idx === null || chart.plot.cursor.idx === undefined) chart.spec.readout.textContent = chart.latest;
      const overlay = chart.spec.note;
      const text = blank || nonzero === 0 ? note ?? (kind === "ttft" ? "No requests in the last 15 minutes" : "No traffic in the last 15 minutes") : null;
      overlay.hidden = text === null;
      overlay.replaceChildren(...(text === null ? [] : [Object.assign(document.createElement("span"), { textContent: text })]));
    }
  }

  destroy() {
    this.#resize.disconnect();
    for (const chart of this.#charts.values()) chart.plot.destroy();
    this.#charts.clear();
  }
}

/**
 * @param {string} kind
 * @param {Grid} grid
 * @param {number} idx
 */
function describe(kind, grid, idx) {
  if (kind === "requests") return `${grid.requests[idx] ?? 0} requests, ${grid.errors[idx] ?? 0} errors`;
  if (kind === "ttft") {
    const value = grid.ttft[idx];
    return value === null || value === undefined ? "no requests" : `${Math.round(value)} ms`;
  }
  const value = grid.tokensPerSecond[idx] ?? 0;
  return `${value >= 100 ? Math.round(value) : value.toFixed(1)} tok/s`;
}

/**
 * `#rrggbb` → `rgba(…)`; other colour syntaxes are returned as they are.
 * @param {string} color
 * @param {number} alpha
 */
function withAlpha(color, alpha) {
  const match = /^#([0-9a-f]{6})$/i.exec(color);
  if (!match) return color;
  const n = parseInt(match[1] ?? "0", 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
