import type { Context } from "hono";
import { matchedDoc } from "../../../shared/app/documented-routes.ts";
import { TRACEPARENT } from "../../../shared/protocol/trace-context.ts";
import type { RequestOrigin } from "../../fleet/access/caller.ts";

const hex = (bytes: number) => [...crypto.getRandomValues(new Uint8Array(bytes))].map((byte) => byte.toString(16).padStart(2, "0")).join("");

/**
 * The client's W3C `traceparent`, or a new sampled trace when it sent none (or a malformed one,
 * which the spec says to ignore): every request runs in a trace its node can continue.
 */
export function traceparentOf(header: string | undefined): string {
  const value = header?.trim().toLowerCase();
  if (value !== undefined && TRACEPARENT.test(value) && !value.startsWith("ff") && !/^..-0{32}-|-0{16}-..$/.test(value)) return value;
  return `00-${hex(16)}-${hex(8)}-01`;
}

/** Which documented route the request reached, and its trace; undefined for a path no route serves. */
export function requestOrigin(c: Context): RequestOrigin | undefined {
  const doc = matchedDoc(c.req.matchedRoutes);
  if (doc === undefined) return undefined;
  return { family: doc.tag, route: `${doc.method.toUpperCase()} ${doc.path}`, traceparent: traceparentOf(c.req.header("traceparent")) };
}
