// @ts-check
/** The admin API as the dashboard uses it (reads, and waking a node; the admin token as a bearer token), and a key's own `GET /v1/key`. */

/** @typedef {import("../../../../shared/gateway-admin/admin-schemas.ts").NodeSummary} NodeSummary */
/** @typedef {import("../../../../shared/gateway-admin/admin-schemas.ts").FleetStats} FleetStats */
/** @typedef {import("../../../../shared/gateway-admin/admin-schemas.ts").UsageRow} UsageRow */
/** @typedef {import("../../../../shared/gateway-admin/admin-schemas.ts").WakeAttempt} WakeAttempt */
/** @typedef {import("../../../../shared/gateway-admin/admin-schemas.ts").KeyRecord} KeyRecord */
/** @typedef {import("../../../../shared/gateway-admin/request-log-schemas.ts").RequestRow} RequestRow */
/** @typedef {import("../../../../shared/gateway-admin/key-view-schemas.ts").KeyView} KeyView */

export class AdminApiError extends Error {
  /**
   * @param {number} status HTTP status; 0 when the gateway could not be reached.
   * @param {string} message
   */
  constructor(status, message) {
    super(message);
    this.name = "AdminApiError";
    this.status = status;
  }
  /** The token was refused: sign out. */
  get unauthorized() {
    return this.status === 401 || this.status === 403;
  }
  /** The gateway does not serve this route (an older gateway): the panel says so and the rest works. */
  get missing() {
    return this.status === 404;
  }
}

const TIMEOUT_MS = 8_000;

/**
 * Calls an admin route (GET unless told). Throws AdminApiError with the gateway's own message on a non-2xx answer.
 * @param {string} path e.g. "/admin/nodes"
 * @param {string} token the admin token
 * @param {"GET" | "POST"} [method]
 * @returns {Promise<unknown>}
 */
export async function adminCall(path, token, method = "GET") {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${token}`, accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (error) {
    const timedOut = error instanceof DOMException && error.name === "TimeoutError";
    throw new AdminApiError(0, timedOut ? "The gateway did not answer in time." : "Could not reach the gateway.");
  }
  if (!response.ok) throw new AdminApiError(response.status, await errorMessage(response));
  try {
    return await response.json();
  } catch {
    throw new AdminApiError(response.status, `The gateway sent something other than JSON for ${path}.`);
  }
}

/** @param {Response} response */
async function errorMessage(response) {
  try {
    const body = await response.json();
    const message = body?.error?.message;
    if (typeof message === "string" && message) return message;
  } catch {
    // not JSON
  }
  return `HTTP ${response.status} ${response.statusText}`.trim();
}

/**
 * `{data: [...]}` per the contract; a bare array is accepted too.
 * @template T
 * @param {unknown} body
 * @returns {T[]}
 */
export function listOf(body) {
  if (Array.isArray(body)) return body;
  const data = /** @type {{data?: unknown}} */ (body)?.data;
  return Array.isArray(data) ? data : [];
}

/** @param {string} token */
export const fetchNodes = async (token) => /** @type {NodeSummary[]} */ (listOf(await adminCall("/admin/nodes", token)));

/**
 * Asks a peer on the node's network to send it the magic packet: answers once it is sent (the node
 * listing then says when the node came back).
 * @param {string} token
 * @param {string} name
 */
export const wakeNode = async (token, name) => /** @type {WakeAttempt} */ (await adminCall(`/admin/nodes/${encodeURIComponent(name)}/wake`, token, "POST"));

/** @param {string} token */
export const fetchStats = async (token) => /** @type {FleetStats} */ (await adminCall("/admin/stats", token));

/**
 * Usage rows of one UTC day.
 * @param {string} token
 * @param {string} day YYYY-MM-DD
 */
export const fetchUsage = async (token, day) =>
  /** @type {UsageRow[]} */ (listOf(await adminCall(`/admin/usage?from=${day}&to=${day}`, token)));

/** @param {string} token */
export const fetchKeys = async (token) => /** @type {KeyRecord[]} */ (listOf(await adminCall("/admin/keys", token)));

/** The request log's latest rows, newest first. @param {string} token */
export const fetchRequests = async (token) => /** @type {RequestRow[]} */ (listOf(await adminCall("/admin/requests?limit=100", token)));

/** What an API key sees of itself; also what tells an API key from the admin token at sign-in. @param {string} token */
export const fetchKeyView = async (token) => /** @type {KeyView} */ (await adminCall("/v1/key", token));
