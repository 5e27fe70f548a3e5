/**
 * Which node runs a request: a pure function over a snapshot of the fleet, so every rule can be
 * tested on its own. The order of preference (docs/architecture.md, "Routing"):
 *  1. nodes where the model is loaded and a slot is free: the one that caches the prompt's
 *     leading messages (a conversation's earlier turns) unless it is busier than the least busy
 *     by more than CACHE_LOAD_MARGIN; otherwise the least busy (in-flight / slots), then the
 *     fastest measured tokens/s, then the one that got a request longest ago;
 *  2. when no node has the model loaded: JIT placement on the least busy node that holds it and
 *     has room for it;
 *  3. loaded somewhere, every slot busy: scale out — another copy on the least busy node that
 *     holds it and has room (it then takes requests by rule 1; idle copies unload by their TTL);
 *  4. otherwise: nothing; the request waits for a slot.
 */

export interface Candidate {
  /** The node's connection id. */
  id: string;
  /** The model is loaded there, or is being loaded by a request the gateway already sent. */
  loaded: boolean;
  /** Slots for this model on this node (parallel sequences), as far as the node has earned belief (node-claims.ts). */
  slots: number;
  /** Slots of this model in use. */
  busy: number;
  /** Requests in flight on the node, all models. */
  nodeBusy: number;
  /** Slots of every model loaded on the node (at least one model's worth). */
  nodeSlots: number;
  /** Recent measured speed of this model there, if any. */
  tokensPerSecond: number | null;
  /** When the gateway last sent this node a request (ms); spreads ties round-robin. */
  lastDispatchAt: number;
  /** The model fits in the node's free memory (counting idle models it would unload); true when the node does not say. */
  fits: boolean;
  /** The node got this prompt's leading messages last (so its engine likely caches them). */
  cachesPrompt?: boolean;
}

/**
 * How much busier (in-flight / slots) than the least busy node a node that caches the prompt may
 * be and still get it: half its slots. A cache hit saves the prompt's evaluation, but a node
 * buried under its own conversations' turns while another idles serves them all slower.
 */
const CACHE_LOAD_MARGIN = 0.5;

/** Speeds within this fraction of each other count as equal: measurements are noisy. */
const SPEED_TOLERANCE = 0.1;

/**
 * Speeds are the gateway's own measures (never a node's claim, routing/node-claims.ts), so a node
 * is measured only by being tried: an unmeasured one ties with any, and round-robin tries it.
 */
function compareSpeed(a: number | null, b: number | null): number {
  if (a === null || b === null) return 0;
  if (Math.abs(a - b) <= SPEED_TOLERANCE * Math.max(a, b)) return 0;
  return b - a;
}

function compareBy(load: (candidate: Candidate) => number) {
  return (a: Candidate, b: Candidate): number => {
    const byLoad = load(a) - load(b);
    if (Math.abs(byLoad) > 1e-9) return byLoad;
    const bySpeed = compareSpeed(a.tokensPerSecond, b.tokensPerSecond);
    if (bySpeed !== 0) return bySpeed;
    return a.lastDispatchAt - b.lastDispatchAt;
  };
}

const slotLoad = (candidate: Candidate) => candidate.busy / candidate.slots;
const modelLoad = compareBy(slotLoad);
const nodeLoad = compareBy((candidate) => candidate.nodeBusy / Math.max(1, candidate.nodeSlots));

function best(candidates: Candidate[], compare: (a: Candidate, b: Candidate) => number): Candidate | null {
  let chosen: Candidate | null = null;
  for (const candidate of candidates) if (chosen === null || compare(candidate, chosen) < 0) chosen = candidate;
  return chosen;
}

/** The node to run on now, or null when the request has to wait for a slot. */
export function chooseNode(candidates: Candidate[]): Candidate | null {
  const free = candidates.filter((candidate) => candidate.loaded && candidate.busy < candidate.slots);
  if (free.length > 0) {
    const least = best(free, modelLoad) as Candidate;
    const cached = free.find((candidate) => candidate.cachesPrompt === true);
    return cached !== undefined && slotLoad(cached) - slotLoad(least) <= CACHE_LOAD_MARGIN ? cached : least;
  }
  return best(
    candidates.filter((candidate) => !candidate.loaded && candidate.fits),
    nodeLoad,
  );
}

/**
 * Where an explicit load goes: a node that holds the model but has not loaded it (the same
 * rule as JIT placement), else one that already has it loaded (the load is then a no-op there).
 */
export function chooseLoadTarget(candidates: Candidate[]): Candidate | null {
  const notLoaded = candidates.filter((candidate) => !candidate.loaded && candidate.fits);
  return best(notLoaded.length > 0 ? notLoaded : candidates.filter((candidate) => candidate.loaded), nodeLoad);
}
