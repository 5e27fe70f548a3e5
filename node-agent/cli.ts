#!/usr/bin/env node
import { LMGATE_VERSION } from "../shared/version.ts";
import { ConfigError, HELP, parseAgentCommand } from "./config.ts";

const log = {
  info: (message: string) => console.log(`lmgate-agent: ${message}`),
  warn: (message: string) => console.warn(`lmgate-agent: warning: ${message}`),
};

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let command;
  try {
    if (argv[0] === "service") {
      const { currentServiceEnvironment, serviceCommand } = await import("./service/service-command.ts");
      return await serviceCommand(argv.slice(1), currentServiceEnvironment());
    }
    command = parseAgentCommand(argv, process.env);
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
    console.log(LMGATE_VERSION);
    return 0;
  }
  // Loaded only now: llama.cpp's bindings take a moment, which --help and a typo should not wait for.
  const { runAgent } = await import("./run-agent.ts");
  return runAgent(command.config, { version: LMGATE_VERSION, logger: log });
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`lmgate-agent: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
