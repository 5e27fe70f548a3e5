// @ts-check
/**
 * The tables and the headline tiles. Everything the gateway or an agent names (nodes, models,
 * keys) goes into the page as text, never as HTML.
 */
import { backendOf, fmtAgo, fmtBytes, fmtCompact, fmtContext, fmtCount, fmtInt, fmtMs, fmtRate, laterWake, nodeSlots, wakeNote } from "./model.js";

/** @typedef {import("./api.js").NodeSummary} NodeSummary */
/** @typedef {import("./model.js").FleetModel} FleetModel */
/** @typedef {import("./model.js").KeyUsage} KeyUsage */
/** @typedef {import("./api.js").RequestRow} RequestRow */
/** @typedef {import("./api.js").UsageRow} UsageRow */
/** @typedef {import("./api.js").KeyView} KeyView */
/** @typedef {import("./api.js").WakeAttempt} WakeAttempt */
/**
 * A click on a node's Wake button: under way, or what it answered.
 * @typedef {{pending: true} | {attempt: WakeAttempt} | {error: string}} WakeClick
 */

/**
 * @param {string} tag
 * @param {Record<string, string | number | boolean | undefined | null>} [attrs] `class`, `title`, `data-*`, …
 * @param {...(Node | string | number | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/**
 * Replaces a table body's rows; shows `empty` across the table when there are none.
 * @param {HTMLTableSectionElement} tbody
 * @param {HTMLElement[]} rows
 * @param {string} empty
 */
function fillBody(tbody, rows, empty) {
  if (rows.length === 0) {
    const columns = tbody.closest("table")?.querySelectorAll("thead th").length ?? 1;
    tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: columns }, empty)));
  } else {
    tbody.replaceChildren(...rows);
  }
}

/** @param {string} filter @param {...string} fields */
const matches = (filter, ...fields) => filter === "" || fields.some((field) => field.toLowerCase().includes(filter));

/**
 * A small meter: busy of total, as text and a bar.
 * @param {number} busy
 * @param {number} total
 * @param {(value: number) => string} [format]
 */
function meter(busy, total, format = fmtInt) {
  if (total <= 0) return el("span", { class: "muted", title: "no model loaded" }, "—");
  const share = total > 0 ? Math.min(1, busy / total) : 0;
  const bar = el("span", { class: "meter-bar" });
  bar.style.width = `${Math.round(share * 100)}%`;
  return el(
    "span",
    { class: `meter${busy > 0 && busy >= total ? " full" : ""}`, title: `${busy} of ${total} slots busy` },
    el("span", { class: "meter-text" }, `${format(busy)} / ${format(total)}`),
    el("span", { class: "meter-track" }, bar),
  );
}

/**
 * A node's Wake-on-LAN: a Wake button while it is offline and its owner lets the fleet wake it, and
 * what the latest wake says (the peer that sent the packet, when the node came back) or the
 * gateway's error for the click.
 * @param {NodeSummary} node
 * @param {WakeClick | undefined} click
 * @param {number} now
 */
function wakeCell(node, click, now) {
  const wakeable = !node.online && node.wake?.wakeable === true;
  const pending = click !== undefined && "pending" in click;
  const button = wakeable ? el("button", { type: "button", class: "button subtle", "data-wake": node.name, disabled: pending }, pending ? "Waking…" : "Wake") : null;
  const attempt = laterWake(node.wake?.last, click !== undefined && "attempt" in click ? click.attempt : undefined);
  // A refused click matters while the node is still offline; once it is back, the latest wake says more.
  const note = click !== undefined && "error" in click && !node.online ? { text: click.error, bad: true } : attempt ? wakeNote(attempt, now) : null;
  if (button === null && note === null) return el("td", { class: "muted" }, node.left === "sleep" ? "asleep" : "—");
  return el(
    "td",
    { class: "wake-cell" },
    el("div", { class: "wake-line" }, button, note ? el("span", { class: `wake-note sub${note.bad ? " bad" : ""}`, title: note.text, "data-wake-note": "" }, note.text) : null),
  );
}

/**
 * @param {HTMLTableSectionElement} tbody
 * @param {NodeSummary[]} nodes
 * @param {{now: number, filter: string, staleMs: number, wakes: Map<string, WakeClick>}} options
 */
export function renderNodes(tbody, nodes, { now, filter, staleMs, wakes }) {
  const rows = nodes
    .filter((node) => matches(filter, node.name, node.hardware.cpu, node.hardware.gpu ?? "", node.runtime.name, ...node.models.map((m) => m.id)))
    .map((node) => {
      const hw = node.hardware;
      const heartbeatAge = node.last_heartbeat_at === null ? Infinity : now - Date.parse(node.last_heartbeat_at);
      const state = !node.online ? "offline" : heartbeatAge > staleMs ? "stale" : "online";
      const stateLabel = { online: "Online", stale: "Late", offline: "Offline" }[state];
      const slots = nodeSlots(node);
      const loaded = node.models.filter((model) => model.state === "loaded" && node.online);
      const device = hw.gpu_devices.length > 0 ? hw.gpu_devices.join(", ") : hw.gpu ? hw.gpu.toUpperCase() : hw.cpu;
      const details = [
        `${hw.cores} cores`,
        `${fmtBytes(hw.memory_bytes)} RAM`,
        hw.vram_bytes !== null ? `${fmtBytes(hw.vram_bytes)} VRAM` : null,
        // Free memory decides where the fleet may load another model (absent from older agents).
        node.memory && node.online ? `${fmtBytes(node.memory.vram_free_bytes ?? node.memory.ram_free_bytes)} free` : null,
      ].filter(Boolean).join(" · ");
      const backend = backendOf(node.runtime.name);
      const footprint = (/** @type {string} */ id) => {
        const needs = node.footprints?.[id];
        return needs ? ` · ${fmtBytes(needs.ram_bytes + needs.vram_bytes)}` : "";
      };
      const modelNames = node.models.map((model) => model.id + (model.state === "loaded" && node.online ? " (loaded)" : "") + footprint(model.id)).join("\n");
      return el(
        "tr",
        { "data-node": node.name, class: state },
        el("td", {}, el("span", { class: `pill ${state}` }, el("span", { class: "dot" }), stateLabel)),
        el("td", { class: "strong" }, node.name),
        el("td", { class: "hardware" }, el("span", { class: "ellipsis", title: `${device}\n${hw.cpu}\n${details}` }, device, el("span", { class: "sub" }, ` · ${details}`))),
        el("td", {}, el("span", { class: `badge backend-${backend.toLowerCase()}`, title: `${node.runtime.name}\n${node.runtime.version}` }, backend)),
        el("td", {}, meter(slots.busy, slots.total)),
        el("td", { class: "num" }, node.online ? fmtInt(node.in_flight) : "—"),
        el("td", { class: "muted nowrap", title: node.last_heartbeat_at ?? "" }, fmtAgo(node.last_heartbeat_at, now)),
        wakeCell(node, wakes.get(node.name), now),
        el(
          "td",
          { class: "models-cell", title: modelNames },
          el("span", { class: "count" }, `${loaded.length}/${node.models.length}`),
          el("span", { class: "ellipsis sub" }, node.models.map((model) => model.id).join(", ") || "no models"),
        ),
      );
    });
  fillBody(tbody, rows, nodes.length === 0 ? "No node has connected yet. Start an agent with --gateway and a node token." : "No node matches the filter.");
}

/**
 * @param {HTMLTableSectionElement} tbody
 * @param {FleetModel[]} models
 * @param {{filter: string}} options
 */
export function renderModels(tbody, models, { filter }) {
  const rows = models
    .filter((model) => matches(filter, model.id, model.arch, model.quantization, model.type, ...model.holders.map((h) => h.node)))
    .map((model) => {
      const speeds = model.holders.map((h) => h.tokensPerSecond).filter((v) => v !== null);
      const best = speeds.length > 0 ? Math.max(.../** @type {number[]} */ (speeds)) : null;
      const state =
        model.loadedOn > 0 ? el("span", { class: "pill online" }, el("span", { class: "dot" }), `Loaded · ${model.loadedOn}/${model.holders.length}`)
        : model.onlineHolders > 0 ? el("span", { class: "pill idle" }, el("span", { class: "dot" }), "Not loaded")
        : el("span", { class: "pill offline" }, el("span", { class: "dot" }), "No node online");
      return el(
        "tr",
        { "data-model": model.id },
        el("td", {}, el("span", { class: "ellipsis model-id", title: `${model.id}\n${model.arch} · ${model.type}` }, el("span", { class: "strong" }, model.id), el("span", { class: "sub" }, ` · ${model.arch}${model.type === "llm" ? "" : ` · ${model.type}`}`))),
        el("td", {}, el("span", { class: "badge" }, model.quantization)),
        el("td", { class: "num nowrap", title: "loaded context / max context (tokens)" }, model.loadedContext !== null ? `${fmtContext(model.loadedContext)} / ${fmtContext(model.maxContext)}` : fmtContext(model.maxContext)),
        el("td", {}, state),
        el("td", { class: "holders" }, ...holderChips(model)),
        el("td", { class: "num" }, best === null ? "—" : fmtRate(best)),
      );
    });
  fillBody(tbody, rows, models.length === 0 ? "No models yet: the connected nodes report none." : "No model matches the filter.");
}

/** At most this many node chips per model row; the rest are summed up in a "+N" chip. */
const MAX_CHIPS = 3;

/** @param {FleetModel} model */
function holderChips(model) {
  /** @param {import("./model.js").Holder} h */
  const describe = (h) => `${h.node}: ${h.loaded ? `loaded, ${h.slotsBusy}/${h.slots} slots busy` : h.online ? "holds it, not loaded" : "offline"}`;
  const shown = model.holders.slice(0, MAX_CHIPS);
  const rest = model.holders.slice(MAX_CHIPS);
  const chips = shown.map((h) =>
    el(
      "span",
      { class: `chip ${h.loaded ? "loaded" : h.online ? "idle" : "offline"}`, title: describe(h), "data-holder": h.node },
      h.node,
      h.loaded && h.slotsBusy > 0 ? el("span", { class: "chip-busy" }, `${h.slotsBusy}/${h.slots}`) : null,
    ),
  );
  if (rest.length > 0) {
    const restLoaded = rest.filter((h) => h.loaded).length;
    chips.push(el("span", { class: `chip more${restLoaded > 0 ? " loaded" : ""}`, title: rest.map(describe).join("\n") }, `+${rest.length}`));
  }
  return chips;
}

/** Statuses of a download job, as pills. */
const DOWNLOAD_PILLS = {
  downloading: ["online", "Downloading"],
  paused: ["idle", "Paused"],
  completed: ["idle", "Completed"],
  already_downloaded: ["idle", "Completed"],
  failed: ["offline", "Failed"],
  cancelled: ["offline", "Cancelled"],
};

/**
 * "40 s left", "12 min left"; "…" until the speed is known.
 * @param {string | undefined} iso the estimated completion
 * @param {number} now ms
 */
function timeLeft(iso, now) {
  if (iso === undefined) return "…";
  const s = Math.max(0, Math.round((Date.parse(iso) - now) / 1000));
  return s < 90 ? `${s} s left` : s < 5400 ? `${Math.round(s / 60)} min left` : `${Math.round(s / 3600)} h left`;
}

/**
 * Every node's download jobs, running ones first, with progress, speed and when they end(ed).
 * @param {HTMLTableSectionElement} tbody
 * @param {NodeSummary[]} nodes
 * @param {number} now
 * @returns {number} how many are running
 */
export function renderDownloads(tbody, nodes, now) {
  const jobs = nodes
    .flatMap((node) => (node.downloads ?? []).map((job) => ({ node: node.name, job })))
    .sort((a, b) => Number(b.job.status === "downloading") - Number(a.job.status === "downloading") || b.job.started_at.localeCompare(a.job.started_at));
  const rows = jobs.map(({ node, job }) => {
    const [tone, label] = DOWNLOAD_PILLS[job.status];
    const share = job.total_size_bytes > 0 ? Math.min(1, job.downloaded_bytes / job.total_size_bytes) : 0;
    const bar = el("span", { class: "meter-bar" });
    bar.style.width = `${Math.round(share * 100)}%`;
    const end = job.status === "downloading" ? timeLeft(job.estimated_completion, now) : fmtAgo(job.completed_at ?? job.started_at, now);
    return el(
      "tr",
      { "data-job": job.job_id ?? "", "data-status": job.status },
      el("td", {}, el("span", { class: `pill ${tone}`, title: job.error ?? "" }, el("span", { class: "dot" }), label)),
      el("td", { class: "strong" }, node),
      el("td", {}, el("span", { class: "ellipsis", title: job.model_key ?? job.model ?? "" }, job.model_key ?? job.model ?? job.job_id ?? "")),
      el(
        "td",
        {},
        el(
          "span",
          { class: "meter", title: `${fmtBytes(job.downloaded_bytes)} of ${fmtBytes(job.total_size_bytes)}` },
          el("span", { class: "meter-text" }, `${Math.round(share * 100)}% · ${fmtBytes(job.downloaded_bytes)} / ${fmtBytes(job.total_size_bytes)}`),
          el("span", { class: "meter-track" }, bar),
        ),
      ),
      el("td", { class: "num nowrap" }, job.status === "downloading" && job.bytes_per_second !== undefined ? `${fmtBytes(job.bytes_per_second)}/s` : "—"),
      el("td", { class: "muted nowrap", title: job.error ?? "" }, job.error ?? end),
    );
  });
  fillBody(tbody, rows, "No downloads.");
  return jobs.filter(({ job }) => job.status === "downloading").length;
}

/**
 * @param {HTMLTableSectionElement} tbody
 * @param {KeyUsage[]} usage
 */
export function renderUsage(tbody, usage) {
  const rows = usage.map((key) => {
    const tokens = key.promptTokens + key.completionTokens;
    const quota =
      key.tokensPerDay === null ? el("span", { class: "muted" }, "no limit") : meter(tokens, key.tokensPerDay, fmtCompact);
    if (key.tokensPerDay !== null) quota.setAttribute("title", `${fmtInt(tokens)} of ${fmtInt(key.tokensPerDay)} tokens today`);
    const models = key.models.length > 0 ? key.models.join(", ") : "no requests";
    return el(
      "tr",
      { "data-key": key.keyId, class: key.revoked ? "revoked" : undefined, title: `${key.name}${key.prefix ? ` (${key.prefix}…)` : ""}\nmodels today: ${models}` },
      el(
        "td",
        { class: "key-cell" },
        el("span", { class: "ellipsis" }, el("span", { class: "strong" }, key.name), el("span", { class: "sub mono" }, `  ${key.prefix ? `${key.prefix}…` : key.keyId}`), key.revoked ? el("span", { class: "tag" }, "revoked") : null),
      ),
      el("td", { class: "num" }, fmtCount(key.requests)),
      el("td", { class: "num" }, fmtCount(key.promptTokens)),
      el("td", { class: "num" }, fmtCount(key.completionTokens)),
      el("td", { class: `num${key.errors > 0 ? " bad" : ""}` }, fmtCount(key.errors)),
      el("td", { class: "models-used" }, el("span", { class: "ellipsis sub" }, models)),
      el("td", {}, quota),
    );
  });
  fillBody(tbody, rows, "No usage today.");
}

/**
 * The headline tiles: `data-kpi` elements get their text; a missing value shows as "—".
 * @param {ParentNode} root
 * @param {Record<string, {value: string, sub?: string, tone?: "bad" | "warn" | null}>} values
 */
export function renderKpis(root, values) {
  for (const tile of root.querySelectorAll("[data-kpi]")) {
    const item = values[/** @type {HTMLElement} */ (tile).dataset.kpi ?? ""];
    const value = tile.querySelector(".kpi-value");
    const sub = tile.querySelector(".kpi-sub");
    if (value) value.textContent = item?.value ?? "—";
    if (sub) sub.textContent = item?.sub ?? "";
    tile.classList.toggle("bad", item?.tone === "bad");
    tile.classList.toggle("warn", item?.tone === "warn");
  }
}

/**
 * The request log's rows, newest first: who, where, how it ended, how fast.
 * @param {HTMLTableSectionElement} tbody
 * @param {RequestRow[]} rows
 * @param {{ filter: string }} options
 */
export function renderRequests(tbody, rows, { filter }) {
  const shown = rows.filter((row) => matches(filter, row.key_name ?? "", row.model, row.node ?? "", row.route ?? row.op, String(row.status), row.error_code ?? ""));
  const body = shown.map((row) => {
    const failed = row.status >= 400;
    return el(
      "tr",
      { "data-request": row.id, title: row.traceparent ? `trace ${row.traceparent}` : undefined },
      el("td", { class: "nowrap mono sub" }, row.at.slice(0, 19).replace("T", " ")),
      el("td", {}, el("span", { class: "ellipsis" }, row.key_name ?? "unknown key")),
      el("td", { class: "nowrap" }, row.route ?? row.op),
      el("td", {}, el("span", { class: "ellipsis" }, row.model || "—")),
      el("td", { class: "nowrap" }, row.node ?? "—"),
      el("td", { class: `nowrap${failed ? " bad" : ""}` }, row.error_code ? `${row.status} ${row.error_code}` : String(row.status)),
      el("td", { class: "num nowrap" }, `${fmtCount(row.prompt_tokens)} / ${fmtCount(row.completion_tokens)}`, row.cached_tokens > 0 ? el("span", { class: "sub" }, ` (${fmtCount(row.cached_tokens)} cached)`) : null),
      el("td", { class: "num" }, fmtMs(row.queue_ms)),
      el("td", { class: "num" }, fmtMs(row.ttft_ms === null ? null : Math.round(row.ttft_ms))),
      el("td", { class: "num" }, fmtMs(row.duration_ms)),
      el("td", { class: "num" }, row.tokens_per_second === null ? "—" : fmtRate(row.tokens_per_second)),
      el("td", { class: "num" }, fmtInt(row.retries)),
    );
  });
  fillBody(tbody, body, rows.length === 0 ? "No requests yet." : "No request matches the filter.");
}

/**
 * A key's usage per UTC day and model, newest day first.
 * @param {HTMLTableSectionElement} tbody
 * @param {UsageRow[]} usage
 */
export function renderKeyUsage(tbody, usage) {
  const rows = usage
    .toSorted((a, b) => b.day.localeCompare(a.day) || a.model.localeCompare(b.model))
    .map((row) =>
      el(
        "tr",
        {},
        el("td", { class: "nowrap" }, row.day),
        el("td", {}, el("span", { class: "ellipsis" }, row.model)),
        el("td", { class: "num" }, fmtCount(row.requests)),
        el("td", { class: "num" }, fmtCount(row.prompt_tokens)),
        el("td", { class: "num" }, fmtCount(row.completion_tokens)),
        el("td", { class: `num${row.errors > 0 ? " bad" : ""}` }, fmtCount(row.errors)),
      ),
    );
  fillBody(tbody, rows, "No usage in the last 30 days.");
}

/**
 * A key's tokens per UTC day over the last two weeks, as bars (today last); each bar says its numbers.
 * @param {HTMLElement} root
 * @param {UsageRow[]} usage
 * @param {Date} now
 */
export function renderKeyUsageChart(root, usage, now) {
  const days = Array.from({ length: 14 }, (_, i) => new Date(now.getTime() - (13 - i) * 86_400_000).toISOString().slice(0, 10));
  /** @type {Map<string, number>} */
  const tokens = new Map();
  for (const row of usage) tokens.set(row.day, (tokens.get(row.day) ?? 0) + row.prompt_tokens + row.completion_tokens);
  const most = Math.max(1, ...days.map((day) => tokens.get(day) ?? 0));
  root.replaceChildren(
    ...days.map((day) => {
      const value = tokens.get(day) ?? 0;
      const bar = el("span", { class: "day-bar-fill" });
      bar.style.height = `${Math.round((value / most) * 100)}%`;
      return el("div", { class: "day-bar", "data-day": day, "data-tokens": value, title: `${day}: ${fmtInt(value)} tokens` }, bar, el("span", { class: "day-bar-label sub" }, day.slice(5)));
    }),
  );
}

/**
 * The models a key may use now, with the nodes serving each.
 * @param {HTMLTableSectionElement} tbody
 * @param {KeyView["available_models"]} models
 */
export function renderKeyModels(tbody, models) {
  const rows = models.map((model) =>
    el(
      "tr",
      { "data-model": model.id },
      el("td", {}, el("span", { class: "ellipsis strong" }, model.id)),
      el("td", { class: "nowrap" }, model.state === "loaded" ? "loaded" : "on disk"),
      el("td", {}, el("span", { class: "ellipsis sub" }, (model.nodes ?? []).map((where) => where.node).join(", ") || "—")),
    ),
  );
  fillBody(tbody, rows, "No model this key may use is online.");
}

export { fmtMs, fmtRate, fmtInt };
