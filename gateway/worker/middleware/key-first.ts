import type { MiddlewareHandler } from "hono";
import { errorResponse } from "../../../shared/app/error-response.ts";
import { fromWire } from "../../../shared/protocol/frames.ts";
import { fleetOf, type GatewayEnv } from "../../env.ts";

/** Refusals the Worker gives before the Fleet has looked at the key: the request's own shape and size. */
const BEFORE_THE_FLEET = new Set([400, 413, 415]);

/**
 * The Fleet checks keys in the same hop as routing, so a body the Worker refuses (400, 413)
 * never reached it: a wrong key would hear about its body, and learn the route's schema, before
 * hearing that it is wrong. On those refusals alone (nothing is added to the way that succeeds)
 * the key is checked first, and a bad key gets its 401 instead.
 */
export function keyFirst(): MiddlewareHandler<GatewayEnv> {
  return async function keyFirst(c, next) {
    await next();
    const caller = c.get("caller");
    if (!BEFORE_THE_FLEET.has(c.res.status) || caller?.kind !== "key") return;
    const outcome = await fleetOf(c.env).authenticate(caller);
    if (!outcome.ok) c.res = errorResponse(c, fromWire(outcome.error));
  };
}
