import { ApiError } from "../../shared/protocol/api-error.ts";
import { CLOSE_CODES, PROTOCOL_VERSION, type ToGatewayFrame } from "../../shared/protocol/frames.ts";
import { ROOT_NODE_TOKEN } from "../fleet/access/caller.ts";

/** How the Worker tells a node object which node token an upgrade carried, and the name it was made for (set by the Worker only). */
export const NODE_TOKEN_ID_HEADER = "x-lmgate-node-token-id";
export const NODE_TOKEN_NODE_HEADER = "x-lmgate-node-token-node";
/** Set when the shared token dials as a name that has a node token of its own. */
export const NODE_NAME_OWNED_HEADER = "x-lmgate-node-name-owned";
/** The socket's dial among its token's pending ones, which the Fleet counted (fleet/nodes/pending-dials.ts). */
export const NODE_DIAL_HEADER = "x-lmgate-node-dial";

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
 * Sockets of one token that have not said hello yet: at one node's object, and from one address
 * across every name (the Fleet's `PendingDials`). An agent says hello at once, so few are ever
 * pending; the shared token's allow a fleet reconnecting at once after a restart. More would be
 * sockets held open for nothing until the hello sweep.
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

/** The upgrade message an agent older than protocol 2 gets: it cannot name itself before its hello. */
export const upgradeAgentReason = (protocol: number | string) =>
  `protocol ${protocol} is not supported; this gateway speaks protocol ${PROTOCOL_VERSION}: upgrade lmgate-agent`;

/**
 * Why a socket's first frame does not open a node's session, as the close code and reason; null
 * for a hello that may join. The one place a hello is judged: its protocol, that it is a hello,
 * that it names the node the agent dialled as, and that its token may serve that name. Checked
 * before anything else, so an impostor never displaces the node it names.
 */
export function helloRefusal(
  message: string | ArrayBuffer,
  frame: ToGatewayFrame | null,
  dialled: { name: string; tokenNode?: string; nameOwned?: boolean },
): { code: number; reason: string } | null {
  const version = helloVersion(message);
  if (version !== null && version !== PROTOCOL_VERSION) return { code: CLOSE_CODES.unsupportedProtocol, reason: upgradeAgentReason(version) };
  if (frame === null) return { code: CLOSE_CODES.badFrame, reason: "invalid frame" };
  if (frame.type !== "hello") return { code: CLOSE_CODES.badFrame, reason: "the first frame must be hello" };
  const name = frame.node.name;
  if (dialled.tokenNode !== undefined && dialled.tokenNode !== name) {
    return { code: CLOSE_CODES.nameNotAllowed, reason: `this node token was made for node "${dialled.tokenNode}", not "${name}"` };
  }
  if (dialled.tokenNode === undefined && dialled.nameOwned === true) {
    return { code: CLOSE_CODES.nameNotAllowed, reason: `node "${name}" has a node token of its own; connect with that token` };
  }
  if (name !== dialled.name) return { code: CLOSE_CODES.badFrame, reason: `hello names "${name}", but the agent connected as "${dialled.name}"` };
  return null;
}

/** The protocol version of something that looks like a hello, even one of another version's shape. */
function helloVersion(message: string | ArrayBuffer): number | null {
  try {
    const value: unknown = JSON.parse(typeof message === "string" ? message : new TextDecoder().decode(message));
    if (typeof value === "object" && value !== null && "type" in value && value.type === "hello" && "protocol" in value) {
      return typeof value.protocol === "number" ? value.protocol : null;
    }
  } catch {
    // not JSON at all
  }
  return null;
}
