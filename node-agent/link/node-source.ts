import type { InferenceBackend } from "../../shared/app/inference-backend.ts";
import type { ModelAdmin } from "../../shared/model-management/model-admin-backend.ts";
import type { Hardware, NodeStatus } from "../../shared/protocol/frames.ts";
import type { Runtime } from "../../shared/protocol/generation-events.ts";

/**
 * What the gateway link needs from this machine's engine: the API backend itself, plus what the
 * gateway routes by. `LocalBackend` (node-agent/serving/local-backend.ts) is the real one.
 */
export interface NodeSource extends InferenceBackend {
  /** The full current status: models with their state, busy slots, recent speed. */
  status(): NodeStatus;
  hardware(): Promise<Hardware>;
  readonly runtime: Runtime;
  readonly slotsPerModel: number;
  /** Downloads and deletes for the gateway; an agent without it does not send `v1_models`, so it is never asked. */
  readonly modelAdmin?: ModelAdmin;
  /** Called after anything in `status()` changed; returns the unsubscribe function. */
  onStatusChange(listener: () => void): () => void;
}
