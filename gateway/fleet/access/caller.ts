/**
 * Who is calling, as the Worker hands it to the Fleet: the deployment's own `LMGATE_API_KEY`
 * (checked in the Worker, in constant time), or a key to look up by its SHA-256.
 */
export type Caller = { kind: "root" } | { kind: "key"; hash: string };

/** Usage of the deployment's own key is accounted under this id. */
export const ROOT_CALLER_ID = "root";

/** How the Worker tells the Fleet that an agent's upgrade carried the deployment's own LMGATE_NODE_TOKEN. */
export const ROOT_NODE_TOKEN = "root";
