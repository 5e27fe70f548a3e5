// @ts-check
/**
 * The dashboard's controller: sign-in (the admin token or an API key lives in sessionStorage only:
 * this tab, until it closes), then a refresh every few seconds while the tab is visible. The admin
 * token sees the fleet; an API key sees its own key alone (`GET /v1/key`).
 */
import { fetchKeys, fetchKeyView, fetchNodes, fetchRequests, fetchStats, fetchUsage, wakeNode, AdminApiError } from "./api.js";
import { FleetCharts, loadUPlot } from "./charts.js";
import { fleetModels, fmtAgo, fmtCount, fmtInt, fmtMs, fmtRate, nodeSlots, recent, seriesGrid, usageByKey, utcDay } from "./model.js";
import { renderDownloads, renderKeyModels, renderKeyUsage, renderKeyUsageChart, renderKpis, renderModels, renderNodes, renderRequests, renderUsage } from "./views.js";

/** @typedef {import("./api.js").NodeSummary} NodeSummary */
/** @typedef {import("./api.js").FleetStats} FleetStats */
/** @typedef {import("./api.js").UsageRow} UsageRow */
/** @typedef {import("./api.js").KeyRecord} KeyRecord */
/** @typedef {import("./api.js").RequestRow} RequestRow */
/** @typedef {import("./api.js").KeyView} KeyView */
/** @typedef {import("./views.js").WakeClick} WakeClick */
/** @typedef {"nodes" | "stats" | "usage" | "keys" | "requests"} Source */
/** @typedef {"admin" | "key"} Mode */

const TOKEN_KEY = "lmgate.dashboard.adminToken";
/** Whether the stored credential is the admin token or an API key. */
const MODE_KEY = "lmgate.dashboard.mode";
const REFRESH_MS = 3_000;
/** How often the slower-moving parts are fetched. */
const EVERY_MS = { nodes: 0, stats: 0, usage: 9_000, keys: 30_000, requests: 0 };
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
  requestsBody: tbody("requests-body"),
  requestsCount: $("requests-count"),
  requestsFilter: /** @type {HTMLInputElement} */ ($("requests-filter")),
  requestsNote: $("requests-note"),
  keyView: $("key-view"),
  keyName: $("key-name"),
  keyPrefix: $("key-prefix"),
  keyScopes: $("key-scopes"),
  keyKpis: $("key-kpis"),
  keyUsageBody: tbody("key-usage-body"),
  keyUsageChart: $("key-usage-chart"),
  keyRequestsBody: tbody("key-requests-body"),
  keyRequestsFilter: /** @type {HTMLInputElement} */ ($("key-requests-filter")),
  keyModelsBody: tbody("key-models-body"),
};

const state = {
  /** @type {string | null} */
  token: null,
  /** @type {Mode} */
  mode: "admin",
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
  /** @type {RequestRow[] | null} */
  requests: null,
  /** @type {KeyView | null} what an API key sees of itself */
  keyView: null,
  /** @type {AdminApiError | null} the last failure to read it */
  keyError: null,
  /** @type {Record<Source, number>} when each was last fetched successfully */
  fetchedAt: { nodes: 0, stats: 0, usage: 0, keys: 0, requests: 0 },
  /** @type {Partial<Record<Source, AdminApiError>>} the last failure of each */
  errors: {},
  lastSuccess: 0,
  /** @type {FleetCharts | null} */
  charts: null,
  /** @type {string | null} */
  chartsError: null,
  /** @type {Map<string, WakeClick>} the Wake buttons clicked this session, by node */
  wakes: new Map(),
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
    const signedIn = await identify(token);
    ui.tokenInput.value = "";
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(MODE_KEY, signedIn.mode);
    enter(token, signedIn);
  } catch (error) {
    const apiError = error instanceof AdminApiError ? error : new AdminApiError(0, String(error));
    showSigninError(
      apiError.unauthorized ? `Wrong admin token or API key. The gateway said: “${apiError.message}”`
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

/**
 * Which credential this is. `/v1/key` answers any valid API key with its own view, and the admin
 * token and LMGATE_API_KEY both as `root`: only those two are tried on the admin API, so a key
 * holder's sign-in never counts as a wrong admin token there.
 * @param {string} token
 * @returns {Promise<{mode: "admin", nodes: NodeSummary[]} | {mode: "key", view: KeyView}>}
 */
async function identify(token) {
  /** @type {KeyView | null} */
  let view = null;
  try {
    view = await fetchKeyView(token);
  } catch (error) {
    // A gateway without /v1/key knows only the admin token here.
    if (!(error instanceof AdminApiError && error.missing)) throw error;
  }
  if (view !== null && view.id !== "root") return { mode: "key", view };
  try {
    return { mode: "admin", nodes: await fetchNodes(token) };
  } catch (error) {
    if (view !== null && error instanceof AdminApiError && error.unauthorized) return { mode: "key", view };
    throw error;
  }
}

/** @param {string | null} message */
function showSigninError(message) {
  ui.signinError.hidden = message === null;
  ui.signinError.textContent = message ?? "";
}

/**
 * @param {string} token
 * @param {{mode: "admin", nodes?: NodeSummary[]} | {mode: "key", view?: KeyView}} signedIn what the sign-in check already fetched
 */
function enter(token, signedIn) {
  state.token = token;
  state.mode = signedIn.mode;
  state.session++;
  state.errors = {};
  state.keyError = null;
  state.fetchedAt = { nodes: 0, stats: 0, usage: 0, keys: 0, requests: 0 };
  if (signedIn.mode === "admin" && signedIn.nodes) {
    state.nodes = signedIn.nodes;
    state.fetchedAt.nodes = Date.now();
    state.lastSuccess = Date.now();
  }
  if (signedIn.mode === "key" && signedIn.view) {
    state.keyView = signedIn.view;
    state.lastSuccess = Date.now();
  }
  ui.signinView.hidden = true;
  ui.dashboardView.hidden = signedIn.mode !== "admin";
  ui.keyView.hidden = signedIn.mode !== "key";
  ui.signOut.hidden = false;
  ui.status.hidden = false;
  render();
  if (signedIn.mode === "admin") void setUpCharts();
  schedule(0);
}

/** @param {string | null} message shown on the sign-in form */
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(MODE_KEY);
  clearTimeout(state.timer);
  state.token = null;
  state.session++;
  state.nodes = state.stats = state.usage = state.keys = state.requests = state.keyView = null;
  state.wakes.clear();
  state.errors = {};
  state.keyError = null;
  state.lastSuccess = 0;
  for (const body of [ui.nodesBody, ui.modelsBody, ui.usageBody, ui.requestsBody, ui.keyUsageBody, ui.keyRequestsBody, ui.keyModelsBody]) body.replaceChildren();
  ui.keyName.textContent = ui.keyPrefix.textContent = ui.keyScopes.textContent = "";
  ui.keyUsageChart.replaceChildren();
  ui.dashboardView.hidden = true;
  ui.keyView.hidden = true;
  ui.signOut.hidden = true;
  ui.status.hidden = true;
  ui.signinView.hidden = false;
  ui.signinNote.hidden = message === null;
  ui.signinNote.textContent = message ?? "";
  showSigninError(null);
  ui.tokenInput.focus();
}

// ---- waking a node ----------------------------------------------------------------------------

ui.nodesBody.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("button[data-wake]") : null;
  if (button instanceof HTMLButtonElement && button.dataset.wake) void wake(button.dataset.wake);
});

/**
 * The Wake button: a peer on the node's network sends the magic packet. Its answer says which
 * peer; the node listing, refreshed at once and then as usual, says when the node came back.
 * @param {string} name
 */
async function wake(name) {
  const token = state.token;
  const click = state.wakes.get(name);
  if (token === null || (click !== undefined && "pending" in click)) return;
  const session = state.session;
  state.wakes.set(name, { pending: true });
  render();
  /** @type {WakeClick} */
  let answer;
  try {
    answer = { attempt: await wakeNode(token, name) };
  } catch (error) {
    const apiError = error instanceof AdminApiError ? error : new AdminApiError(0, String(error));
    if (session === state.session && apiError.unauthorized) {
      signOut(`The gateway no longer accepts this admin token (“${apiError.message}”). Sign in again.`);
      return;
    }
    answer = { error: apiError.message };
  }
  if (session !== state.session) return;
  state.wakes.set(name, answer);
  render();
  schedule(0);
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
  if (state.mode === "key") return refreshKey(token);
  const session = state.session;
  const now = Date.now();
  /** @type {Source[]} */
  const due = /** @type {Source[]} */ (Object.keys(EVERY_MS)).filter(
    (source) => now - state.fetchedAt[source] >= EVERY_MS[source] || state.errors[source] !== undefined,
  );
  // A gateway without a route (404) is asked again only now and then.
  const wanted = due.filter((source) => !(state.errors[source]?.missing && now - state.fetchedAt[source] < 60_000));
  /** @type {Record<Source, (token: string) => Promise<unknown>>} */
  const fetchers = { nodes: fetchNodes, stats: fetchStats, usage: (t) => fetchUsage(t, utcDay()), keys: fetchKeys, requests: fetchRequests };
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

/** An API key's view: one call, `/v1/key`. @param {string} token */
async function refreshKey(token) {
  const session = state.session;
  state.inFlight = true;
  try {
    state.keyView = await fetchKeyView(token);
    state.keyError = null;
    state.lastSuccess = Date.now();
  } catch (error) {
    const apiError = error instanceof AdminApiError ? error : new AdminApiError(0, String(error));
    if (session === state.session && apiError.unauthorized) {
      state.inFlight = false;
      signOut(`The gateway no longer accepts this API key (“${apiError.message}”). Sign in again.`);
      return;
    }
    state.keyError = apiError;
  }
  state.inFlight = false;
  if (session !== state.session) return;
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
  if (state.mode === "key") {
    renderKey(Date.now());
    return;
  }
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
  renderNodes(ui.nodesBody, nodes, { now, filter: ui.nodesFilter.value.trim().toLowerCase(), staleMs: LATE_HEARTBEAT_MS, wakes: state.wakes });
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

  const requestsError = state.errors.requests;
  ui.requestsNote.hidden = !requestsError;
  ui.requestsNote.textContent = requestsError?.missing ? "This gateway does not keep a request log yet." : requestsError ? `Requests unavailable: ${requestsError.message}` : "";
  ui.requestsCount.textContent = state.requests ? `latest ${state.requests.length}` : "";
  if (state.requests !== null) renderRequests(ui.requestsBody, state.requests, { filter: ui.requestsFilter.value.trim().toLowerCase() });

  renderStatus(now);
}

/** What an API key sees: its scopes, what is left of its limits, its usage, requests and models. @param {number} now */
function renderKey(now) {
  const view = state.keyView;
  if (view === null) return;
  ui.keyName.textContent = view.name;
  ui.keyPrefix.textContent = view.prefix ? `${view.prefix}…` : "";
  ui.keyScopes.textContent = `Models: ${view.models?.join(", ") ?? "all"} · may ${view.can.length > 0 ? `also ${view.can.join(", ")} models` : "use models only"}`;
  const { requests_per_minute: rpm, tokens_per_day: tokens } = view.limits;
  const online = view.available_models.filter((model) => (model.nodes ?? []).length > 0);
  renderKpis(ui.keyKpis, {
    rpm: rpm === null ? { value: "no limit" } : { value: `${fmtInt(rpm.remaining)} left`, sub: `of ${fmtInt(rpm.limit)} per minute`, tone: rpm.remaining === 0 ? "bad" : null },
    tokens: tokens === null ? { value: "no limit" } : {
      value: `${fmtCount(tokens.remaining)} left`,
      sub: `${fmtCount(tokens.used)} of ${fmtCount(tokens.limit)} used · resets ${tokens.resets_at.slice(11, 16)} UTC`,
      tone: tokens.remaining === 0 ? "bad" : tokens.remaining < tokens.limit / 10 ? "warn" : null,
    },
    expires: view.expires_at === null ? { value: "never" } : { value: view.expires_at.slice(0, 10), sub: view.expires_at.slice(11, 16) + " UTC" },
    models: { value: fmtInt(online.length), sub: `${fmtInt(view.available_models.length)} you may use` },
  });
  renderKeyUsageChart(ui.keyUsageChart, view.usage, new Date(now));
  renderKeyUsage(ui.keyUsageBody, view.usage);
  renderRequests(ui.keyRequestsBody, view.requests, { filter: ui.keyRequestsFilter.value.trim().toLowerCase() });
  renderKeyModels(ui.keyModelsBody, view.available_models);
  renderStatus(now);
}

/** @param {number} now */
function renderStatus(now) {
  if (state.token === null) return;
  const failing = Object.values(state.errors).some((error) => error && !error.missing) || state.keyError !== null;
  const reachable = !(state.errors.nodes?.status === 0 || state.keyError?.status === 0);
  const age = state.lastSuccess ? fmtAgo(new Date(state.lastSuccess).toISOString(), now) : "never";
  ui.status.dataset.state = !reachable ? "down" : failing ? "warn" : "live";
  ui.statusText.textContent = !reachable ? `Gateway unreachable · last update ${age}` : `Live · updated ${age}`;
}

setInterval(() => renderStatus(Date.now()), 1_000);
for (const input of [ui.nodesFilter, ui.modelsFilter, ui.requestsFilter, ui.keyRequestsFilter]) input.addEventListener("input", () => render());

// ---- start --------------------------------------------------------------------------------------

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) enter(saved, { mode: sessionStorage.getItem(MODE_KEY) === "key" ? "key" : "admin" });
else {
  ui.signinView.hidden = false;
  ui.tokenInput.focus();
}
