// @ts-check
/**
 * The dashboard's controller: sign-in (the admin token lives in sessionStorage only: this tab,
 * until it closes), then a refresh every few seconds while the tab is visible.
 */
import { fetchKeys, fetchNodes, fetchStats, fetchUsage, AdminApiError } from "./api.js";
import { FleetCharts, loadUPlot } from "./charts.js";
import { fleetModels, fmtAgo, fmtCount, fmtInt, fmtMs, fmtRate, nodeSlots, recent, seriesGrid, usageByKey, utcDay } from "./model.js";
import { renderDownloads, renderKpis, renderModels, renderNodes, renderUsage } from "./views.js";

/** @typedef {import("./api.js").NodeSummary} NodeSummary */
/** @typedef {import("./api.js").FleetStats} FleetStats */
/** @typedef {import("./api.js").UsageRow} UsageRow */
/** @typedef {import("./api.js").KeyRecord} KeyRecord */
/** @typedef {"nodes" | "stats" | "usage" | "keys"} Source */

const TOKEN_KEY = "lmgate.dashboard.adminToken";
const REFRESH_MS = 3_000;
/** How often the slower-moving parts are fetched. */
const EVERY_MS = { nodes: 0, stats: 0, usage: 9_000, keys: 30_000 };
/** A heartbeat older than this marks an online node as late. */
const LATE_HEARTBEAT_MS = 12_000;

/** @param {string} id */
const $ = (id) => {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing from the page`);
  return found;
};
const tbody = (/** @type {string} */ id) => /** @type {HTMLTableSectionElement} */ ($(id));

const ui = {
  signinView: $("signin-view"),
  dashboardView: $("dashboard-view"),
  form: /** @type {HTMLFormElement} */ ($("signin-form")),
  tokenInput: /** @type {HTMLInputElement} */ ($("token")),
  signinButton: /** @type {HTMLButtonElement} */ ($("signin-button")),
  signinError: $("signin-error"),
  signinNote: $("signin-note"),
  signOut: /** @type {HTMLButtonElement} */ ($("sign-out")),
  status: $("status"),
  statusText: $("status-text"),
  kpis: $("kpis"),
  nodesBody: tbody("nodes-body"),
  nodesCount: $("nodes-count"),
  nodesFilter: /** @type {HTMLInputElement} */ ($("nodes-filter")),
  modelsBody: tbody("models-body"),
  modelsCount: $("models-count"),
  modelsFilter: /** @type {HTMLInputElement} */ ($("models-filter")),
  downloadsCard: $("downloads-card"),
  downloadsBody: tbody("downloads-body"),
  downloadsCount: $("downloads-count"),
  usageBody: tbody("usage-body"),
  usageDay: $("usage-day"),
  usageNote: $("usage-note"),
  usageScroll: $("usage-scroll"),
};

const state = {
  /** @type {string | null} */
  token: null,
  /** Bumped on every sign-in and sign-out: answers for an older session are dropped. */
  session: 0,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  timer: undefined,
  inFlight: false,
  /** @type {NodeSummary[] | null} */
  nodes: null,
  /** @type {FleetStats | null} */
  stats: null,
  /** @type {UsageRow[] | null} */
  usage: null,
  /** @type {KeyRecord[] | null} */
  keys: null,
  /** @type {Record<Source, number>} when each was last fetched successfully */
  fetchedAt: { nodes: 0, stats: 0, usage: 0, keys: 0 },
  /** @type {Partial<Record<Source, AdminApiError>>} the last failure of each */
  errors: {},
  lastSuccess: 0,
  /** @type {FleetCharts | null} */
  charts: null,
  /** @type {string | null} */
  chartsError: null,
};

// ---- sign-in / sign-out -------------------------------------------------------------------------

ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = ui.tokenInput.value.trim();
  if (token === "") return;
  ui.signinButton.disabled = true;
  ui.signinButton.textContent = "Checking…";
  showSigninError(null);
  try {
    const nodes = await fetchNodes(token);
    ui.tokenInput.value = "";
    sessionStorage.setItem(TOKEN_KEY, token);
    enter(token, nodes);
  } catch (error) {
    const apiError = error instanceof AdminApiError ? error : new AdminApiError(0, String(error));
    showSigninError(
      apiError.unauthorized ? `Wrong admin token. The gateway said: “${apiError.message}”`
      : apiError.status === 0 ? `${apiError.message} Check that it is running, then try again.`
      : `The gateway answered ${apiError.status}: ${apiError.message}`,
    );
    ui.tokenInput.select();
  } finally {
    ui.signinButton.disabled = false;
    ui.signinButton.textContent = "Sign in";
  }
});

ui.signOut.addEventListener("click", () => signOut(null));

/** @param {string | null} message */
function showSigninError(message) {
  ui.signinError.hidden = message === null;
  ui.signinError.textContent = message ?? "";
}

/**
 * @param {string} token
 * @param {NodeSummary[]} [nodes] already fetched by the sign-in check
 */
function enter(token, nodes) {
  state.token = token;
  state.session++;
  state.errors = {};
  state.fetchedAt = { nodes: 0, stats: 0, usage: 0, keys: 0 };
  if (nodes) {
    state.nodes = nodes;
    state.fetchedAt.nodes = Date.now();
    state.lastSuccess = Date.now();
  }
  ui.signinView.hidden = true;
  ui.dashboardView.hidden = false;
  ui.signOut.hidden = false;
  ui.status.hidden = false;
  render();
  void setUpCharts();
  schedule(0);
}

/** @param {string | null} message shown on the sign-in form */
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(state.timer);
  state.token = null;
  state.session++;
  state.nodes = state.stats = state.usage = state.keys = null;
  state.errors = {};
  state.lastSuccess = 0;
  for (const body of [ui.nodesBody, ui.modelsBody, ui.usageBody]) body.replaceChildren();
  ui.dashboardView.hidden = true;
  ui.signOut.hidden = true;
  ui.status.hidden = true;
  ui.signinView.hidden = false;
  ui.signinNote.hidden = message === null;
  ui.signinNote.textContent = message ?? "";
  showSigninError(null);
  ui.tokenInput.focus();
}

// ---- refresh ------------------------------------------------------------------------------------

/** @param {number} delay */
function schedule(delay) {
  clearTimeout(state.timer);
  if (state.token !== null && document.visibilityState === "visible") state.timer = setTimeout(refresh, delay);
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") schedule(0);
  else clearTimeout(state.timer);
});

async function refresh() {
  const token = state.token;
  if (token === null || state.inFlight) return;
  const session = state.session;
  const now = Date.now();
  /** @type {Source[]} */
  const due = /** @type {Source[]} */ (Object.keys(EVERY_MS)).filter(
    (source) => now - state.fetchedAt[source] >= EVERY_MS[source] || state.errors[source] !== undefined,
  );
  // A gateway without a route (404) is asked again only now and then.
  const wanted = due.filter((source) => !(state.errors[source]?.missing && now - state.fetchedAt[source] < 60_000));
  /** @type {Record<Source, (token: string) => Promise<unknown>>} */
  const fetchers = { nodes: fetchNodes, stats: fetchStats, usage: (t) => fetchUsage(t, utcDay()), keys: fetchKeys };
  state.inFlight = true;
  const results = await Promise.allSettled(wanted.map((source) => fetchers[source](token)));
  state.inFlight = false;
  if (session !== state.session) return;

  let anySuccess = false;
  for (const [index, result] of results.entries()) {
    const source = /** @type {Source} */ (wanted[index]);
    if (result.status === "fulfilled") {
      anySuccess = true;
      delete state.errors[source];
      state.fetchedAt[source] = now;
      /** @type {any} */ (state)[source] = result.value;
    } else {
      const error = result.reason instanceof AdminApiError ? result.reason : new AdminApiError(0, String(result.reason));
      if (error.unauthorized) {
        signOut(`The gateway no longer accepts this admin token (“${error.message}”). Sign in again.`);
        return;
      }
      state.errors[source] = error;
      if (error.missing) state.fetchedAt[source] = now;
    }
  }
  if (anySuccess) state.lastSuccess = now;
  render();
  schedule(REFRESH_MS);
}

/** @param {"throughput" | "ttft" | "requests"} kind */
function chartSpec(kind) {
  const container = $(`chart-${kind}`);
  const note = container.parentElement?.querySelector("[data-chart-note]");
  if (!(note instanceof HTMLElement)) throw new Error(`the ${kind} chart has no note element`);
  return { kind, container, readout: $(`readout-${kind}`), note };
}

async function setUpCharts() {
  if (state.charts) return;
  try {
    const uPlot = await loadUPlot();
    if (state.charts) return;
    state.charts = new FleetCharts(uPlot, [
      chartSpec("throughput"),
      chartSpec("ttft"),
      chartSpec("requests"),
    ]);
    state.chartsError = null;
  } catch (error) {
    state.chartsError = error instanceof Error ? error.message : String(error);
  }
  render();
}

// ---- render -------------------------------------------------------------------------------------

function render() {
  const now = Date.now();
  const nodes = state.nodes ?? [];
  const models = fleetModels(nodes);
  const stats = state.stats;
  const grid = stats ? seriesGrid(stats) : null;
  const last = grid ? recent(grid) : null;

  // Headline tiles.
  const online = nodes.filter((node) => node.online);
  const slots = online.map(nodeSlots).reduce((sum, s) => ({ busy: sum.busy + s.busy, total: sum.total + s.total }), { busy: 0, total: 0 });
  const loadedModels = models.filter((model) => model.loadedOn > 0).length;
  const inFlight = stats?.in_flight ?? online.reduce((sum, node) => sum + node.in_flight, 0);
  const nodesOnline = stats?.nodes_online ?? online.length;
  const nodesTotal = Math.max(stats?.nodes_total ?? 0, nodes.length);
  renderKpis(ui.kpis, {
    nodes: {
      value: state.nodes ? `${nodesOnline} / ${nodesTotal}` : "—",
      sub: `online · ${slots.busy}/${slots.total} slots busy`,
      tone: nodesTotal > 0 && nodesOnline === 0 ? "bad" : nodesOnline < nodesTotal ? "warn" : null,
    },
    models: { value: state.nodes ? fmtInt(models.length) : "—", sub: `${loadedModels} loaded` },
    inflight: { value: state.nodes ? fmtInt(inFlight) : "—", sub: "requests running" },
    queue: { value: stats ? fmtInt(stats.queue_depth) : "—", sub: "waiting for a slot", tone: stats && stats.queue_depth > 0 ? "warn" : null },
    tps: { value: last ? fmtRate(last.tokensPerSecond) : "—", sub: "tokens/s · last minute" },
    ttft: { value: last ? fmtMs(last.ttftMs) : "—", sub: "time to first token · p50" },
  });

  // Charts: the stats series, or an empty frame of the last 15 minutes with a note on it.
  if (state.charts) {
    const statsError = state.errors.stats;
    const frame = grid ?? seriesGrid({ at: new Date(now).toISOString(), bucket_seconds: 10, series: [], nodes_online: 0, nodes_total: 0, in_flight: 0, queue_depth: 0 });
    const unavailable =
      statsError?.missing ? "No history: this gateway has no /admin/stats yet."
      : statsError ? `Stats unavailable: ${statsError.message}`
      : grid === null ? "Loading…"
      : null;
    const quiet = last !== null && last.requests15m === 0 ? "No requests in the last 15 minutes" : null;
    state.charts.update(
      frame,
      {
        throughput: last ? `${fmtRate(last.tokensPerSecond)} tok/s · last min` : "",
        ttft: last ? `p50 ${fmtMs(last.ttftMs)} · last min` : "",
        requests: last ? `${fmtCount(last.requests15m)} requests · ${fmtCount(last.errors15m)} errors` : "",
      },
      unavailable ?? quiet,
      unavailable !== null,
    );
  }
  for (const note of ui.dashboardView.querySelectorAll("[data-chart-note]")) {
    if (state.chartsError) {
      note.textContent = state.chartsError;
      /** @type {HTMLElement} */ (note).hidden = false;
    }
  }

  // Tables.
  const staleNote = state.errors.nodes ? ` · ${state.errors.nodes.message}` : "";
  ui.nodesCount.textContent = `${online.length} online · ${nodes.length} total${staleNote}`;
  renderNodes(ui.nodesBody, nodes, { now, filter: ui.nodesFilter.value.trim().toLowerCase(), staleMs: LATE_HEARTBEAT_MS });
  ui.modelsCount.textContent = `${models.length} models · ${loadedModels} loaded`;
  renderModels(ui.modelsBody, models, { filter: ui.modelsFilter.value.trim().toLowerCase() });
  // Shown once any node has downloaded something since it started.
  ui.downloadsCard.hidden = !nodes.some((node) => (node.downloads ?? []).length > 0);
  ui.downloadsCount.textContent = `${renderDownloads(ui.downloadsBody, nodes, now)} running`;

  ui.usageDay.textContent = `${utcDay()} (UTC)`;
  const usageError = state.errors.usage;
  ui.usageNote.hidden = !usageError;
  ui.usageScroll.hidden = usageError?.missing === true;
  ui.usageNote.textContent = usageError?.missing ? "This gateway does not serve /admin/usage yet." : usageError ? `Usage unavailable: ${usageError.message}` : "";
  if (state.usage !== null || state.keys !== null) renderUsage(ui.usageBody, usageByKey(state.usage ?? [], state.keys));
  else if (usageError) ui.usageBody.replaceChildren();

  renderStatus(now);
}

/** @param {number} now */
function renderStatus(now) {
  if (state.token === null) return;
  const failing = Object.values(state.errors).some((error) => error && !error.missing);
  const reachable = !(state.errors.nodes?.status === 0);
  const age = state.lastSuccess ? fmtAgo(new Date(state.lastSuccess).toISOString(), now) : "never";
  ui.status.dataset.state = !reachable ? "down" : failing ? "warn" : "live";
  ui.statusText.textContent = !reachable ? `Gateway unreachable · last update ${age}` : `Live · updated ${age}`;
}

setInterval(() => renderStatus(Date.now()), 1_000);
for (const input of [ui.nodesFilter, ui.modelsFilter]) input.addEventListener("input", () => render());

// ---- start --------------------------------------------------------------------------------------

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) enter(saved);
else {
  ui.signinView.hidden = false;
  ui.tokenInput.focus();
}
