import { constants } from "node:os";
import type { AgentConfig } from "../configuration/config.ts";
import { formatBanner } from "./banner.ts";
import { startDirectServer, type DirectServer } from "../serving/direct-server.ts";
import { Drain } from "../serving/drain.ts";
import { startGatewayLink, type GatewayLink } from "../link/gateway-link.ts";
import { otlpRequestTracer } from "../tracing/request-tracer.ts";
import { wakeOptions } from "../wake/wake-options.ts";
import { hubOptionsFromEnv } from "../downloads/hub-client.ts";
import { createLoadProgress } from "./load-progress.ts";
import { LocalBackend, type Logger } from "../serving/local-backend.ts";
import { chooseModelFolders } from "./model-folders.ts";
import { binaryPackages, missingBinaryAdvice } from "../platform/prebuilt-binaries.ts";
import { AgentMetrics } from "../metrics/agent-metrics.ts";
import { metricsHandler, startMetricsServer, type MetricsServer } from "../metrics/metrics-endpoint.ts";
import { LocalModelAdmin } from "../serving/model-admin.ts";
import { shutdownSignal } from "./shutdown.ts";
import { TrackedBackend } from "../serving/tracked-backend.ts";

export interface RunAgentOptions {
  version: string;
  logger: Logger;
}

/**
 * The agent's whole life: start the engine, say what it found, serve and/or join the gateway,
 * then on SIGINT/SIGTERM drain and stop. Resolves to the exit code.
 */
export async function runAgent(config: AgentConfig, { version, logger: log }: RunAgentOptions): Promise<number> {
  // Listening from the start: a signal during start-up shuts down as soon as start-up is done.
  const signal = shutdownSignal({
    onSecondSignal: (received) => {
      log.warn(`${received} again: exiting now, without waiting for running requests`);
      process.exit(128 + constants.signals[received]);
    },
  });

  const { dirs: modelDirs, reason } = await chooseModelFolders(config.models, { onProgress: log.info });
  if (reason) log.info(reason);

  const binaryAdvice = missingBinaryAdvice(binaryPackages(), process.platform, process.arch);
  if (binaryAdvice) log.warn(binaryAdvice);

  const backend = await LocalBackend.create({
    modelDirs,
    threads: config.threads,
    gpu: config.cpu ? false : "auto",
    slots: config.slots,
    contextLength: config.contextLength,
    maxQueue: config.maxQueue,
    maxLoadedModels: config.maxModels,
    ...(config.maxMemory === undefined ? {} : { memoryBytes: config.maxMemory * 2 ** 30 }),
    defaultTtlSeconds: config.ttl,
    speculative: {
      draftModels: Object.fromEntries(config.draftModel.map((pair) => pair.split("=", 2) as [string, string])),
      promptLookup: config.promptLookup,
    },
    onLoadProgress: createLoadProgress(),
    logger: log,
  });
  const modelAdmin = new LocalModelAdmin(backend, { modelDirs, hub: hubOptionsFromEnv(process.env) });
  const resumed = await modelAdmin.downloads.resumeInterrupted();
  if (resumed.length > 0) log.info(`resuming ${resumed.length} download(s) interrupted by the last stop: ${resumed.map((job) => job.job_id).join(", ")}`);
  console.log(
    formatBanner({
      version,
      runtime: backend.runtime,
      hardware: await backend.hardware(),
      cpuForced: config.cpu,
      threads: backend.threads,
      slots: config.slots,
      modelDirs,
      models: backend.status().models,
    }),
  );

  const metrics = config.metrics
    ? new AgentMetrics({ slotUsage: () => backend.slotUsage(), version, runtime: backend.runtime.name })
    : undefined;
  const handler = metrics && metricsHandler(metrics, config.metricsToken);
  const drains: Drain[] = [];
  let server: DirectServer | undefined;
  let metricsServer: MetricsServer | undefined;
  let link: GatewayLink | undefined;

  if (config.serve) {
    const drain = new Drain();
    drains.push(drain);
    server = await listening({ host: `--host ${config.host}`, port: `--port ${config.port}` }, () =>
      startDirectServer({
        backend: new TrackedBackend(backend, { observer: metrics }),
        modelAdmin,
        host: config.host,
        port: config.port,
        drain,
        ...(handler ? { metrics: { handler, guarded: config.metricsToken !== undefined } } : {}),
        onUnexpectedError: (error) => log.warn(`unexpected error: ${error instanceof Error ? error.stack : String(error)}`),
      }),
    );
    if (handler) log.info(`metrics on ${server.url}/metrics${config.metricsToken ? " (token required)" : ""}`);
    log.info(`serving on ${server.url}`);
  } else if (handler) {
    metricsServer = await listening({ host: `--metrics-host ${config.metricsHost}`, port: `--metrics-port ${config.metricsPort}` }, () =>
      startMetricsServer({ handler, host: config.metricsHost, port: config.metricsPort }),
    );
    log.info(`metrics on ${metricsServer.url}${config.metricsToken ? " (token required)" : ""}`);
  }
  // Spans only for requests from a gateway: it passes on the client's trace context.
  const tracer = config.gateway === undefined ? null : otlpRequestTracer(config.name, version);
  if (tracer) log.info("exporting request spans over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT)");
  if (config.gateway !== undefined && config.token !== undefined) {
    const drain = new Drain();
    drains.push(drain);
    link = startGatewayLink({
      url: config.gateway,
      token: config.token,
      nodeName: config.name,
      agentVersion: version,
      source: new TrackedBackend(backend, { drain, observer: metrics, modelAdmin }),
      logger: log,
      tracer,
      wake: wakeOptions(config),
    });
    link.onStateChange((connected) => {
      if (connected) log.info(`connected to gateway ${config.gateway} as "${config.name}"`);
      else log.warn(`lost the gateway; reconnecting`);
    });
  }

  const received = await signal;
  const running = drains.reduce((sum, drain) => sum + drain.active, 0);
  log.info(
    `${received}: shutting down; new requests get 503` +
      (running > 0 ? `, waiting up to ${config.shutdownTimeout} s for ${running} running request(s)` : ""),
  );
  const drained = await Promise.all(drains.map((drain) => drain.close(config.shutdownTimeout * 1000)));
  if (!drained.every(Boolean)) {
    const left = drains.reduce((sum, drain) => sum + drain.active, 0);
    log.warn(`${left} request(s) still running after ${config.shutdownTimeout} s (--shutdown-timeout): stopping them`);
  }
  if (link) {
    await link.close();
    log.info("left the gateway");
  }
  await tracer?.shutdown().catch((error: unknown) => log.warn(`could not send the last spans: ${error instanceof Error ? error.message : String(error)}`));
  await modelAdmin.dispose();
  // Stops whatever still runs: a stream cut here ends with a model_unloaded error event — never silently.
  await backend.dispose();
  await server?.close();
  await metricsServer?.close();
  log.info("stopped");
  return 0;
}

/** Starts a listener, turning "address in use" into advice. */
async function listening<T>(options: { host: string; port: string }, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") throw new Error(`${options.port}: that port is already in use (another lmgate-agent or LM Studio?); choose another port, or 0 for any free one`, { cause: error });
    if (code === "EADDRNOTAVAIL") throw new Error(`${options.host}: that address is not one of this machine's`, { cause: error });
    throw error;
  }
}
