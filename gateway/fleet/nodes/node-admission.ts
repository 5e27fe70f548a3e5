import { ApiError } from "../../../shared/errors.ts";
import { ROOT_NODE_TOKEN } from "../access/caller.ts";

/**
 * What one node token may hold. A token made with `nodes tokens create --name X` serves node X
 * only; its sockets are that node's plus reconnects that overlap an old socket's last seconds.
 * The deployment's own LMGATE_NODE_TOKEN may serve any name, up to a fleet's worth of sockets.
 */
const SOCKETS_PER_NODE_TOKEN = 4;
const SOCKETS_PER_ROOT_TOKEN = 64;

/** The tag a node's socket is accepted under: the id of the token it connected with. */
export const tokenTag = (tokenId: string | undefined): string => tokenId ?? ROOT_NODE_TOKEN;

/** 429 when the token already holds all the sockets it may; null when another one is allowed. */
export function socketLimit(tokenId: string | undefined, openSockets: number): ApiError | null {
  const limit = tokenId === undefined ? SOCKETS_PER_ROOT_TOKEN : SOCKETS_PER_NODE_TOKEN;
  if (openSockets < limit) return null;
  return new ApiError(429, `This node token already has ${openSockets} connections open, the most it may hold.`, {
    code: "too_many_connections",
    retryAfter: 10,
  });
}

/**
 * Why a node may not say hello under `name` with this token (made for `tokenNode`; undefined for
 * LMGATE_NODE_TOKEN), or null if it may. A name with a token of its own (`nameOwned`) belongs to
 * that token: the shared token may not take it, so it cannot displace the named node.
 */
export function nameRefusal(tokenNode: string | undefined, name: string, nameOwned: boolean): string | null {
  if (tokenNode === undefined) return nameOwned ? `node "${name}" has a node token of its own; connect with that token` : null;
  if (tokenNode === name) return null;
  return `this node token was made for node "${tokenNode}", not "${name}"`;
}

/**
 * Sockets of one token that have not said hello yet. An agent says hello at once, so few are ever
 * pending at a time; the shared token's allow a fleet reconnecting at once after a restart. More
 * would be sockets held open for nothing until the hello sweep.
 */
const PENDING_SOCKETS_PER_NODE_TOKEN = 4;
const PENDING_SOCKETS_PER_ROOT_TOKEN = 16;

/** 429 when the token already has all the sockets without hello it may; null when another one is allowed. */
export function pendingLimit(tokenId: string | undefined, pendingSockets: number): ApiError | null {
  if (pendingSockets < (tokenId === undefined ? PENDING_SOCKETS_PER_ROOT_TOKEN : PENDING_SOCKETS_PER_NODE_TOKEN)) return null;
  return new ApiError(429, `This node token already has ${pendingSockets} connections that have not said hello.`, {
    code: "too_many_connections",
    retryAfter: 10,
  });
}
