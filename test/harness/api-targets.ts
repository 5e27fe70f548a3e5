import { startAgent, type AgentProcess } from "./agent-process.ts";
import { startGateway, type GatewayProcess } from "./gateway-process.ts";
import { testModelsDir } from "./test-models.ts";

/** The two ways to serve the API: an agent in direct mode, and the real gateway with real agents behind it. */
export const TARGETS = ["direct", "gateway"] as const;
export type TargetName = (typeof TARGETS)[number];

export interface ApiTargets {
  gateway: GatewayProcess;
  direct: AgentProcess;
  /** The gateway's agents by name; a test may stop one (and should then remove it). */
  nodes: Map<string, AgentProcess>;
  /** Base URL (no `/v1`) and the key it wants. */
  target(name: TargetName): { url: string; key: string };
  stop(): Promise<void>;
}

/** Starts the gateway, an agent in direct mode and the named agents behind the gateway, all with the test models. */
export async function startApiTargets(nodeNames: string[]): Promise<ApiTargets> {
  const models = await testModelsDir();
  const gateway = await startGateway();
  const nodes = new Map<string, AgentProcess>();
  const started = await Promise.allSettled([
    startAgent({ models: [models] }),
    // Each with its own metrics port, so a test can compare what was billed with what the node counted.
    ...nodeNames.map((name) =>
      startAgent({ models: [models], gateway: { url: gateway.url, token: gateway.nodeToken }, name, extraArgs: ["--metrics", "--metrics-port", "0"] }),
    ),
  ]);
  const agents = started.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : []));
  const failed = started.find((outcome) => outcome.status === "rejected");
  if (failed) {
    // Nobody else knows about the agents that did start: stop them here, or they outlive the run.
    await Promise.all(agents.map((agent) => agent.stop()));
    await gateway.stop();
    throw failed.reason;
  }
  const [direct, ...gatewayNodes] = agents as [AgentProcess, ...AgentProcess[]];
  nodeNames.forEach((name, index) => nodes.set(name, gatewayNodes[index] as AgentProcess));
  return {
    gateway,
    direct,
    nodes,
    target: (name) => (name === "direct" ? { url: direct.url as string, key: "unused" } : { url: gateway.url, key: gateway.apiKey }),
    async stop() {
      await Promise.all([direct, ...nodes.values()].map((agent) => agent.stop()));
      await gateway.stop();
    },
  };
}
