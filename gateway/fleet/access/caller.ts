/**
 * Who is calling, as the Worker hands it to the Fleet: the deployment's own `LMGATE_API_KEY`
 * (checked in the Worker, in constant time), or a key to look up by its SHA-256, with the client's
 * address (a key nobody holds counts against it: the wrong-credential brake).
 */
export type Caller = ({ kind: "root" } | { kind: "key"; hash: string; address: string }) & { via?: RequestOrigin };

/** Through which route a request came, for the request log, and the trace it belongs to (set by the Worker). */
export interface RequestOrigin {
  /** The route's API family (its doc's tag): openai, anthropic, lmstudio. */
  family: string;
  /** Method and path pattern: `POST /v1/chat/completions`. */
  route: string;
  /** The W3C trace context the request runs in: the client's, or one the Worker started. */
  traceparent: string | null;
}

/** Usage of the deployment's own key is accounted under this id. */
export const ROOT_CALLER_ID = "root";
/** …and named so in usage and the request log. */
export const ROOT_CALLER_NAME = "LMGATE_API_KEY";

/** How the Worker tells the Fleet that an agent's upgrade carried the deployment's own LMGATE_NODE_TOKEN. */
export const ROOT_NODE_TOKEN = "root";
