import { Command } from "commander";
import { LMGATE_VERSION } from "../../shared/host/version.ts";
import { addAgentOptions } from "./options.ts";
import type { Host } from "../platform/host.ts";

/**
 * `lmgate-agent` as commander sees it: the options from `OPTIONS`, `--help` and `--version`, and
 * the `service` command (its own parser, service-command.ts, takes what follows it). Nothing here
 * exits or prints: the caller sets `exitOverride` and the output, and reads what was parsed.
 */
export function agentProgram(host: Host): Command {
  const program = new Command("lmgate-agent")
    .description(
      [
        "lmgate-agent — serve GGUF models on this machine, alone or as a node of an lmgate gateway",
        "",
        "  lmgate-agent --serve [options]                          LM Studio-compatible server here",
        "  lmgate-agent --gateway <url> --token <token> [options]  join a gateway (dials out; no open port)",
        "  lmgate-agent --config agent.json                        everything from a config file",
        "  lmgate-agent service install|status|uninstall [options] start at login (service --help)",
      ].join("\n"),
    )
    .configureHelp({ helpWidth: 100 })
    // The agent's options before `service` only: what follows it is the service command's.
    .enablePositionalOptions();
  addAgentOptions(program, host);
  program
    .version(LMGATE_VERSION, "-v, --version", "show the version")
    .addHelpText(
      "after",
      [
        "",
        "Every option can also come from its environment variable or from the config file (same names",
        "as the flags, without the dashes in front). A flag wins over the environment, which wins over",
        "the config file. Boolean flags can be turned off with --no-<flag>, e.g. --no-cpu.",
        "Relative model folders in a config file are relative to the file.",
        "",
        "Examples:",
        "  lmgate-agent --serve --models ~/.lmstudio/models",
        "  lmgate-agent --gateway https://lmgate.example.workers.dev --token $NODE_TOKEN --metrics",
        "",
        "On SIGINT or SIGTERM the agent stops taking new requests (503 with Retry-After), lets running",
        "ones finish within --shutdown-timeout, leaves the gateway, and exits 0; a second signal exits",
        "at once.",
      ].join("\n"),
    );
  program
    .command("service")
    .description("start the agent at login: install <options>, status, uninstall (service --help)")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments();
  return program;
}
