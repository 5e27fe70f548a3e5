#!/usr/bin/env node
import { LMGATE_VERSION } from "../shared/host/version.ts";
import { ConfigError, parseAgentCommand } from "./configuration/config.ts";

const log = {
  info: (message: string) => console.log(`lmgate-agent: ${message}`),
  warn: (message: string) => console.warn(`lmgate-agent: warning: ${message}`),
};

async function main(): Promise<number> {
  let command;
  try {
    command = parseAgentCommand(process.argv.slice(2), process.env);
    if (command.kind === "service") {
      const { currentServiceEnvironment, serviceCommand } = await import("./service/service-command.ts");
      return await serviceCommand(command.argv, currentServiceEnvironment());
    }
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`lmgate-agent: ${error.message}\nRun lmgate-agent --help to see the options.`);
    return 2;
  }
  if (command.kind === "print") {
    process.stdout.write(command.text);
    return 0;
  }
  // Loaded only now: llama.cpp's bindings take a moment, which --help and a typo should not wait for.
  const { runAgent } = await import("./start-up/run-agent.ts");
  return runAgent(command.config, { version: LMGATE_VERSION, logger: log });
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`lmgate-agent: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
