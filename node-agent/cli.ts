#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { ApiError } from "../shared/errors.ts";
import { ConfigError, HELP, parseAgentCommand, type AgentConfig } from "./config.ts";
import { DEFAULT_DEMO_MODELS_DIR, ensureDemoModels } from "./demo-models/demo-models.ts";
import { startDirectServer } from "./direct-server.ts";
import { startGatewayLink } from "./link/gateway-link.ts";
import { createLoadProgress } from "./load-progress.ts";
import { LocalBackend } from "./local-backend.ts";

const VERSION = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;

const log = {
  info: (message: string) => console.log(`lmgate-agent: ${message}`),
  warn: (message: string) => console.warn(`lmgate-agent: warning: ${message}`),
};

async function main(): Promise<number> {
  let command;
  try {
    command = parseAgentCommand(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`lmgate-agent: ${error.message}\nRun lmgate-agent --help to see the options.`);
    return 2;
  }
  if (command.kind === "help") {
    console.log(HELP);
    return 0;
  }
  if (command.kind === "version") {
    console.log(VERSION);
    return 0;
  }
  return run(command.config);
}

async function run(config: AgentConfig): Promise<number> {
  let modelDirs = config.models;
  if (modelDirs.length === 0) {
    log.info(`no --models given: serving the generated demo models in ${DEFAULT_DEMO_MODELS_DIR}`);
    await ensureDemoModels(DEFAULT_DEMO_MODELS_DIR, { onProgress: log.info });
    modelDirs = [DEFAULT_DEMO_MODELS_DIR];
  }

  const backend = await LocalBackend.create({
    modelDirs,
    threads: config.threads,
    gpu: config.cpu ? false : "auto",
    slots: config.slots,
    contextLength: config.contextLength,
    maxQueue: config.maxQueue,
    maxLoadedModels: config.maxModels,
    defaultTtlSeconds: config.ttl,
    onLoadProgress: createLoadProgress(),
    logger: log,
  });
  const models = backend.status().models;
  log.info(`runtime ${backend.runtime.name} ${backend.runtime.version}, ${backend.threads} thread(s), ${config.slots} slot(s) per model`);
  log.info(`${models.length} model(s): ${models.map((model) => `${model.id} (${model.quantization})`).join(", ") || "none"}`);

  const closers: Array<() => Promise<void>> = [];
  if (config.serve) {
    const server = await startDirectServer({
      backend,
      host: config.host,
      port: config.port,
      onUnexpectedError: (error) => log.warn(`unexpected error: ${error instanceof Error ? error.stack : String(error)}`),
    });
    closers.push(() => server.close());
    log.info(`serving on ${server.url}`);
  }
  if (config.gateway !== undefined && config.token !== undefined) {
    const link = startGatewayLink({
      url: config.gateway,
      token: config.token,
      nodeName: config.name,
      agentVersion: VERSION,
      source: backend,
      logger: log,
    });
    link.onStateChange((connected) => {
      if (connected) log.info(`connected to gateway ${config.gateway} as "${config.name}"`);
      else log.warn(`lost the gateway; reconnecting`);
    });
    closers.push(() => link.close());
  }

  await new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
  log.info("shutting down");
  for (const close of closers) await close();
  await backend.dispose();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    const message = error instanceof ApiError || error instanceof Error ? error.message : String(error);
    console.error(`lmgate-agent: ${message}`);
    process.exit(1);
  },
);
