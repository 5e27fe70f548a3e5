// @ts-check
/** Pure derivations from the admin API's answers, and number formatting. No DOM here. */

/** @typedef {import("./api.js").NodeSummary} NodeSummary */
/** @typedef {import("./api.js").FleetStats} FleetStats */
/** @typedef {import("./api.js").UsageRow} UsageRow */
/** @typedef {import("./api.js").KeyRecord} KeyRecord */
/** @typedef {import("./api.js").WakeAttempt} WakeAttempt */

const BACKENDS = { cuda: "CUDA", vulkan: "Vulkan", metal: "Metal", cpu: "CPU", rocm: "ROCm", hip: "ROCm", sycl: "SYCL" };

/**
 * The compute backend from the runtime name, e.g. `llama.cpp-linux-x86_64-cuda` → "CUDA".
 * @param {string} runtimeName
 */
export function backendOf(runtimeName) {
  const last = runtimeName.split("-").pop()?.toLowerCase() ?? "";
  return /** @type {Record<string, string>} */ (BACKENDS)[last] ?? runtimeName;
}

/**
 * Slots of a node: each loaded model has `slots_per_model` slots.
 * @param {NodeSummary} node
 * @returns {{busy: number, total: number}}
 */
export function nodeSlots(node) {
  const loaded = node.models.filter((model) => model.state === "loaded");
  const total = node.online ? node.slots_per_model * loaded.length : 0;
  let busy = 0;
  let known = false;
  for (const model of loaded) {
    const info = model.nodes?.find((entry) => entry.node === node.name) ?? model.nodes?.[0];
    if (info) {
      busy += info.slots_busy;
      known = true;
    }
  }
  if (!known) busy = node.in_flight;
  return { busy: node.online ? busy : 0, total };
}

/**
 * @typedef {object} Holder
 * @property {string} node
 * @property {boolean} online
 * @property {boolean} loaded
 * @property {number} slots
 * @property {number} slotsBusy
 * @property {number | null} tokensPerSecond
 */

/**
 * @typedef {object} FleetModel
 * @property {string} id
 * @property {string} type
 * @property {string} arch
 * @property {string} quantization
 * @property {number} maxContext
 * @property {number | null} loadedContext
 * @property {Holder[]} holders
 * @property {number} loadedOn   online nodes that have it loaded
 * @property {number} onlineHolders
 */

/**
 * Every model in the fleet, from the nodes' own lists: which nodes hold it and where it is loaded.
 * Loaded models first, then the ones online nodes can load, then the rest; by id within each.
 * @param {NodeSummary[]} nodes
 * @returns {FleetModel[]}
 */
export function fleetModels(nodes) {
  /** @type {Map<string, FleetModel>} */
  const byId = new Map();
  for (const node of nodes) {
    for (const model of node.models) {
      let entry = byId.get(model.id);
      if (!entry) {
        entry = {
          id: model.id,
          type: model.type,
          arch: model.arch,
          quantization: model.quantization,
          maxContext: model.max_context_length,
          loadedContext: null,
          holders: [],
          loadedOn: 0,
          onlineHolders: 0,
        };
        byId.set(model.id, entry);
      }
      const loaded = node.online && model.state === "loaded";
      const info = model.nodes?.find((item) => item.node === node.name) ?? model.nodes?.[0];
      entry.holders.push({
        node: node.name,
        online: node.online,
        loaded,
        slots: info?.slots ?? node.slots_per_model,
        slotsBusy: loaded ? (info?.slots_busy ?? 0) : 0,
        tokensPerSecond: info?.tokens_per_second ?? null,
      });
      entry.maxContext = Math.max(entry.maxContext, model.max_context_length);
      if (loaded) {
        entry.loadedOn++;
        if (model.loaded_context_length !== undefined) {
          entry.loadedContext = Math.max(entry.loadedContext ?? 0, model.loaded_context_length);
        }
      }
      if (node.online) entry.onlineHolders++;
    }
  }
  const rank = (/** @type {FleetModel} */ model) => (model.loadedOn > 0 ? 0 : model.onlineHolders > 0 ? 1 : 2);
  return [...byId.values()]
    .map((model) => ({ ...model, holders: model.holders.sort((a, b) => Number(b.loaded) - Number(a.loaded) || Number(b.online) - Number(a.online) || a.node.localeCompare(b.node)) }))
    .sort((a, b) => rank(a) - rank(b) || a.id.localeCompare(b.id));
}

/**
 * @typedef {object} KeyUsage
 * @property {string} keyId
 * @property {string} name
 * @property {string | null} prefix
 * @property {boolean} revoked
 * @property {number} requests
 * @property {number} promptTokens
 * @property {number} completionTokens
 * @property {number} errors
 * @property {string[]} models  by tokens, most first
 * @property {number | null} tokensPerDay the key's daily limit
 */

/**
 * Usage per key for one day: the usage rows summed over models, plus the keys with no traffic
 * (revoked ones only if they were used). Most tokens first.
 * @param {UsageRow[]} rows
 * @param {KeyRecord[] | null} keys
 * @returns {KeyUsage[]}
 */
export function usageByKey(rows, keys) {
  /** @type {Map<string, KeyUsage & {byModel: Map<string, number>}>} */
  const byKey = new Map();
  const entry = (/** @type {string} */ keyId, /** @type {string} */ name) => {
    let item = byKey.get(keyId);
    if (!item) {
      item = { keyId, name, prefix: null, revoked: false, requests: 0, promptTokens: 0, completionTokens: 0, errors: 0, models: [], tokensPerDay: null, byModel: new Map() };
      byKey.set(keyId, item);
    }
    return item;
  };
  for (const row of rows) {
    const item = entry(row.key_id, row.key_name);
    item.requests += row.requests;
    item.promptTokens += row.prompt_tokens;
    item.completionTokens += row.completion_tokens;
    item.errors += row.errors;
    item.byModel.set(row.model, (item.byModel.get(row.model) ?? 0) + row.prompt_tokens + row.completion_tokens);
  }
  for (const key of keys ?? []) {
    if (key.revoked_at !== null && !byKey.has(key.id)) continue;
    const item = entry(key.id, key.name);
    item.name = key.name;
    item.prefix = key.prefix;
    item.revoked = key.revoked_at !== null;
    item.tokensPerDay = key.tokens_per_day;
  }
  return [...byKey.values()]
    .map(({ byModel, ...item }) => ({ ...item, models: [...byModel.entries()].sort((a, b) => b[1] - a[1]).map(([model]) => model) }))
    .sort((a, b) => b.promptTokens + b.completionTokens - (a.promptTokens + a.completionTokens) || b.requests - a.requests || a.name.localeCompare(b.name));
}

/**
 * The stats series laid on a full grid of buckets ending at `at`, so gaps show as zero traffic.
 * @param {FleetStats} stats
 * @param {number} [minutes]
 * @returns {{t: number[], tokensPerSecond: number[], ttft: (number | null)[], requests: number[], errors: number[]}}
 */
export function seriesGrid(stats, minutes = 15) {
  const step = stats.bucket_seconds > 0 ? stats.bucket_seconds : 10;
  const series = [...stats.series].sort((a, b) => a.t - b.t);
  const atSeconds = Math.floor(Date.parse(stats.at) / 1000);
  const lastKnown = series.length > 0 ? series[series.length - 1]?.t ?? 0 : 0;
  const end = Math.max(Number.isFinite(atSeconds) ? Math.floor(atSeconds / step) * step : 0, lastKnown);
  const count = Math.max(1, Math.round((minutes * 60) / step));
  const start = end - (count - 1) * step;
  const byT = new Map(series.map((bucket) => [Math.floor(bucket.t / step) * step, bucket]));
  const grid = { t: /** @type {number[]} */ ([]), tokensPerSecond: /** @type {number[]} */ ([]), ttft: /** @type {(number|null)[]} */ ([]), requests: /** @type {number[]} */ ([]), errors: /** @type {number[]} */ ([]) };
  for (let t = start; t <= end; t += step) {
    const bucket = byT.get(t);
    grid.t.push(t);
    grid.tokensPerSecond.push(bucket?.tokens_per_second ?? 0);
    grid.ttft.push(bucket?.ttft_ms_p50 ?? null);
    grid.requests.push(bucket?.requests ?? 0);
    grid.errors.push(bucket?.errors ?? 0);
  }
  return grid;
}

/**
 * Headline numbers over the last minute of a grid.
 * @param {ReturnType<typeof seriesGrid>} grid
 */
export function recent(grid, seconds = 60) {
  const step = grid.t.length > 1 ? (grid.t[1] ?? 0) - (grid.t[0] ?? 0) : 10;
  const n = Math.max(1, Math.round(seconds / step));
  const tps = grid.tokensPerSecond.slice(-n);
  const ttft = grid.ttft.slice(-n).filter((value) => value !== null);
  return {
    tokensPerSecond: tps.reduce((sum, value) => sum + value, 0) / tps.length,
    ttftMs: ttft.length > 0 ? median(/** @type {number[]} */ (ttft)) : null,
    requests15m: grid.requests.reduce((sum, value) => sum + value, 0),
    errors15m: grid.errors.reduce((sum, value) => sum + value, 0),
  };
}

/** @param {number[]} values */
function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/**
 * What a wake says: which peer sent the packet and when the node came back, or why it did not.
 * @param {WakeAttempt} attempt
 * @param {number} now ms
 * @returns {{text: string, bad: boolean}}
 */
export function wakeNote(attempt, now) {
  if (attempt.failure !== null) return { text: `Wake failed: ${attempt.failure}`, bad: true };
  if (attempt.back_at !== null) {
    const took = Math.max(0, Math.round((Date.parse(attempt.back_at) - Date.parse(attempt.sent_at)) / 1000));
    return { text: `Woken by ${attempt.peer} · back ${fmtAgo(attempt.back_at, now)}, ${took} s after the packet`, bad: false };
  }
  return { text: `Packet sent by ${attempt.peer} ${fmtAgo(attempt.sent_at, now)} · waiting for the node (up to ${attempt.timeout_s} s)`, bad: false };
}

/**
 * The later of two wakes of a node (the listing's, and the one a click just started, which the
 * listing shows from its next refresh on).
 * @param {WakeAttempt | undefined} a
 * @param {WakeAttempt | undefined} b
 */
export const laterWake = (a, b) => (a === undefined ? b : b === undefined || a.sent_at >= b.sent_at ? a : b);

/** Today in UTC, YYYY-MM-DD (usage days are UTC). */
export const utcDay = (date = new Date()) => date.toISOString().slice(0, 10);

// ---- formatting ---------------------------------------------------------------------------------

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

/** @param {number} value */
export const fmtInt = (value) => integer.format(value);
/** 1234 → "1,234"; 1234567 → "1.2M". @param {number} value */
export const fmtCount = (value) => (Math.abs(value) >= 100_000 ? compact.format(value) : integer.format(value));
/** 1234 → "1.2K". @param {number} value */
export const fmtCompact = (value) => compact.format(value);
/** @param {number} value */
export const fmtRate = (value) => (value >= 100 ? integer.format(value) : oneDecimal.format(value));
/** @param {number | null} ms */
export const fmtMs = (ms) => (ms === null ? "—" : ms >= 10_000 ? `${oneDecimal.format(ms / 1000)} s` : `${integer.format(ms)} ms`);

/** @param {number | null} bytes */
export function fmtBytes(bytes) {
  if (bytes === null || !Number.isFinite(bytes) || bytes <= 0) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 10 || unit === 0 ? integer.format(value) : oneDecimal.format(value)} ${units[unit]}`;
}

/** "4K", "32K", "128K" for context lengths. @param {number | null} tokens */
export function fmtContext(tokens) {
  if (tokens === null) return "—";
  if (tokens >= 1024 && tokens % 1024 === 0) return `${tokens / 1024}K`;
  return tokens >= 1000 ? `${oneDecimal.format(tokens / 1000)}k` : integer.format(tokens);
}

/**
 * "just now", "12 s ago", "3 min ago", "2 h ago", "4 d ago".
 * @param {string | null} iso
 * @param {number} now ms
 */
export function fmtAgo(iso, now) {
  if (iso === null) return "—";
  const ms = now - Date.parse(iso);
  if (!Number.isFinite(ms)) return "—";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 2) return "just now";
  if (s < 90) return `${s} s ago`;
  const min = Math.round(s / 60);
  if (min < 90) return `${min} min ago`;
  const h = Math.round(min / 60);
  if (h < 36) return `${h} h ago`;
  return `${Math.round(h / 24)} d ago`;
}
