import { execFile } from "node:child_process";
import { realpathSync } from "node:fs";
import { chmod, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { isDeepStrictEqual } from "node:util";
import { Command, CommanderError } from "commander";
import { commanderMessage, ConfigError, configFromCommand, parseAgentCommand, type AgentConfig } from "../configuration/config.ts";
import { addAgentOptions } from "../configuration/options.ts";
import { currentHost, pathsOf, type Host } from "../platform/host.ts";
import { userDirs } from "../platform/user-dirs.ts";
import { LAUNCHD_LABEL, SERVICE_NAME, launchdPlist, systemdUnit, taskXml, taskXmlFile, type ServiceCommand } from "./service-files.ts";

/** What `service --help` says after the commands: what install does with the options, on each OS. */
const SERVICE_NOTES = `
install takes the agent's options (lmgate-agent --help, or service install --help), e.g.
  lmgate-agent service install --gateway https://lmgate.example.workers.dev --models ~/models
asks for the node token (or takes LMGATE_TOKEN), and keeps them, the node token included, in a
settings file only you can read; the service runs lmgate-agent --config <that file>. Linux: a
systemd user unit; macOS: a launchd agent; Windows: a Task Scheduler task that starts at logon.
Run install again to change the options.`;

export interface ServiceEnvironment {
  host: Host;
  /** `<node> <lmgate-agent script>`: how this agent was started, so the service starts the same one. */
  agent: string[];
  uid: number | undefined;
  /** Runs a service manager's command (systemctl, launchctl, schtasks). */
  run: (command: string, args: string[]) => Promise<{ code: number; output: string }>;
  print: (line: string) => void;
  /** Asks for the node token without echoing it; undefined when there is no terminal to ask on. */
  askToken: (() => Promise<string>) | undefined;
}

export function currentServiceEnvironment(): ServiceEnvironment {
  return {
    host: currentHost(),
    agent: [process.execPath, realpathSync(process.argv[1] ?? "")],
    uid: process.getuid?.(),
    run: (command, args) =>
      new Promise((resolve) => {
        execFile(command, args, (error, stdout, stderr) => {
          const code = error === null ? 0 : typeof error.code === "number" ? error.code : 127;
          resolve({ code, output: `${stdout}${stderr}${error && typeof error.code !== "number" ? error.message : ""}`.trim() });
        });
      }),
    print: (line) => console.log(line),
    askToken: process.stdin.isTTY ? askHidden : undefined,
  };
}

/** Reads one line from the terminal with echo off, so the token lands in no scrollback or shell history. */
async function askHidden(): Promise<string> {
  process.stdout.write("Node token (lmgn_…, from lmgate nodes tokens create; not shown): ");
  process.stdin.setRawMode(true);
  process.stdin.resume();
  let text = "";
  try {
    for await (const chunk of process.stdin) {
      for (const char of String(chunk)) {
        if (char === "\u0003") throw new ConfigError("service install: cancelled");
        if (char === "\r" || char === "\n") return text.trim();
        text = char === "\u007f" || char === "\b" ? text.slice(0, -1) : text + char;
      }
    }
    return text.trim();
  } finally {
    process.stdin.setRawMode(false);
    process.stdin.pause();
    process.stdout.write("\n");
  }
}

/** Where the service's files go on this host. */
export function servicePaths(host: Host): { configFile: string; definition: string; log?: string } {
  const { join, dirname } = pathsOf(host);
  const config = userDirs(host).config;
  const configFile = join(config, "agent.json");
  switch (host.platform) {
    case "darwin":
      return { configFile, definition: join(host.home, "Library", "LaunchAgents", `${LAUNCHD_LABEL}.plist`), log: join(host.home, "Library", "Logs", `${SERVICE_NAME}.log`) };
    case "win32":
      return { configFile, definition: join(config, `${SERVICE_NAME}-task.xml`) };
    default:
      // Next to lmgate's config folder: $XDG_CONFIG_HOME/systemd/user, where systemd looks for user units.
      return { configFile, definition: join(dirname(config), "systemd", "user", `${SERVICE_NAME}.service`) };
  }
}

/** `lmgate-agent service …`; resolves to the exit code. */
export async function serviceCommand(argv: string[], env: ServiceEnvironment): Promise<number> {
  if (!["linux", "darwin", "win32"].includes(env.host.platform)) {
    throw new ConfigError(
      `service: on ${env.host.platform} there is no service manager lmgate knows (systemd, launchd, Task Scheduler); ` +
        "start lmgate-agent --config <file> from your init system instead",
    );
  }
  let code = 0;
  let printed = "";
  const service = new Command("lmgate-agent service")
    .description("lmgate-agent service — start the agent at login, as this OS starts programs")
    .configureHelp({ helpWidth: 100 })
    .helpOption("-h, --help", "show this help")
    .usage("install [options] | status | uninstall")
    .helpCommand("help [action]", "show the help of an action")
    .exitOverride()
    .configureOutput({ writeOut: (text) => (printed += text), writeErr: (text) => (printed += text) })
    .addHelpText("after", SERVICE_NOTES);
  addAgentOptions(
    service.command("install").description("write the settings, register the service, start it; takes the agent's options"),
    env.host,
  ).action(async (_options, command: Command) => {
    code = await install(command, env);
  });
  service
    .command("status")
    .description("where things are, and what the service manager says")
    .action(async () => {
      code = await status(env);
    });
  service
    .command("uninstall")
    .description("stop it, unregister it, delete its settings and token")
    .action(async () => {
      code = await uninstall(env);
    });
  try {
    await service.parseAsync(argv, { from: "user" });
    return code;
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    if (error.code === "commander.unknownCommand") throw new ConfigError(`service: unknown action "${argv[0]}"; use install, status or uninstall`);
    // `service` alone shows the help as an error would; `--help` and `help` as asked for.
    if (error.code === "commander.help" || error.code === "commander.helpDisplayed") {
      env.print(printed.trimEnd());
      return error.exitCode === 0 ? 0 : 2;
    }
    throw new ConfigError(`service: ${commanderMessage(error)}`);
  }
}

async function install(parsed: Command, env: ServiceEnvironment): Promise<number> {
  const { host } = env;
  // Joining a gateway needs the token: asked for on the terminal when neither --token nor LMGATE_TOKEN gives it.
  const given = (option: string) => parsed.getOptionValueSource(option) === "cli";
  const joining = given("gateway") || Boolean(host.env.LMGATE_GATEWAY);
  const tokenGiven = given("token") || Boolean(host.env.LMGATE_TOKEN);
  const environment = joining && !tokenGiven && env.askToken ? { ...host.env, LMGATE_TOKEN: await env.askToken() } : host.env;
  const config = configFromCommand(parsed, environment, host);
  const paths = servicePaths(host);
  const { dirname } = pathsOf(host);

  await mkdir(dirname(paths.configFile), { recursive: true, mode: 0o700 });
  await writeFile(paths.configFile, `${JSON.stringify(settingsFile(config, host), null, 2)}\n`, { mode: 0o600 });
  // writeFile keeps an existing file's mode: make sure an older, looser file is tightened too.
  await chmod(paths.configFile, 0o600);
  env.print(`lmgate-agent: settings${config.token ? " and node token" : ""} in ${paths.configFile} (readable only by you)`);

  const command: ServiceCommand = { argv: [...env.agent, "--config", paths.configFile], shutdownTimeoutSeconds: config.shutdownTimeout };
  await mkdir(dirname(paths.definition), { recursive: true });
  switch (host.platform) {
    case "darwin": {
      await writeFile(paths.definition, launchdPlist(command, paths.log ?? ""));
      env.print(`lmgate-agent: launchd agent ${paths.definition}`);
      const target = `gui/${env.uid}`;
      await env.run("launchctl", ["bootout", `${target}/${LAUNCHD_LABEL}`]); // an earlier install's, if loaded
      if (!(await ran(env, "launchctl", ["bootstrap", target, paths.definition]))) return 1;
      env.print(`lmgate-agent: installed and started; it starts at login. Log: ${paths.log}`);
      return 0;
    }
    case "win32": {
      const user = host.env.USERNAME ? (host.env.USERDOMAIN ? `${host.env.USERDOMAIN}\\${host.env.USERNAME}` : host.env.USERNAME) : undefined;
      await writeFile(paths.definition, taskXmlFile(taskXml(command, user)));
      env.print(`lmgate-agent: scheduled task definition ${paths.definition}`);
      if (!(await ran(env, "schtasks", ["/Create", "/TN", SERVICE_NAME, "/XML", paths.definition, "/F"]))) return 1;
      await env.run("schtasks", ["/End", "/TN", SERVICE_NAME]); // an earlier install's, if running
      if (!(await ran(env, "schtasks", ["/Run", "/TN", SERVICE_NAME]))) return 1;
      env.print(`lmgate-agent: installed and started; it starts when you log on (Task Scheduler, task "${SERVICE_NAME}")`);
      return 0;
    }
    default: {
      await writeFile(paths.definition, systemdUnit(command));
      env.print(`lmgate-agent: systemd user unit ${paths.definition}`);
      for (const args of [["daemon-reload"], ["enable", `${SERVICE_NAME}.service`], ["restart", `${SERVICE_NAME}.service`]]) {
        if (!(await ran(env, "systemctl", ["--user", ...args]))) return 1;
      }
      env.print(`lmgate-agent: installed and started; it starts at login. Logs: journalctl --user -u ${SERVICE_NAME} -f`);
      env.print(`  To start it at boot, before anyone logs in: loginctl enable-linger ${host.env.USER ?? "$USER"}`);
      return 0;
    }
  }
}

async function uninstall(env: ServiceEnvironment): Promise<number> {
  const paths = servicePaths(env.host);
  switch (env.host.platform) {
    case "darwin":
      await env.run("launchctl", ["bootout", `gui/${env.uid}/${LAUNCHD_LABEL}`]);
      break;
    case "win32":
      await env.run("schtasks", ["/End", "/TN", SERVICE_NAME]);
      await env.run("schtasks", ["/Delete", "/TN", SERVICE_NAME, "/F"]);
      break;
    default:
      await env.run("systemctl", ["--user", "disable", "--now", `${SERVICE_NAME}.service`]);
  }
  for (const file of [paths.definition, paths.configFile]) {
    await rm(file, { force: true });
    env.print(`lmgate-agent: removed ${file}`);
  }
  if (env.host.platform === "linux") await env.run("systemctl", ["--user", "daemon-reload"]);
  env.print("lmgate-agent: the service is uninstalled");
  return 0;
}

async function status(env: ServiceEnvironment): Promise<number> {
  const paths = servicePaths(env.host);
  const definition = await stat(paths.definition).catch(() => undefined);
  const settings = await stat(paths.configFile).catch(() => undefined);
  env.print(`service definition  ${paths.definition}${definition ? "" : " (not installed)"}`);
  env.print(`settings and token  ${paths.configFile}${settings ? ` (mode ${(settings.mode & 0o777).toString(8).padStart(4, "0")})` : " (missing)"}`);
  if (settings && env.host.platform !== "win32" && (settings.mode & 0o077) !== 0) {
    env.print(`  warning: others can read it; run chmod 600 ${paths.configFile}`);
  }
  if (paths.log) env.print(`log                 ${paths.log}`);
  const [command, args] =
    env.host.platform === "darwin"
      ? ["launchctl", ["print", `gui/${env.uid}/${LAUNCHD_LABEL}`]]
      : env.host.platform === "win32"
        ? ["schtasks", ["/Query", "/TN", SERVICE_NAME, "/V", "/FO", "LIST"]]
        : ["systemctl", ["--user", "status", "--no-pager", `${SERVICE_NAME}.service`]];
  const result = await env.run(command, args as string[]);
  env.print(result.output);
  return definition ? 0 : 1;
}

/** Runs a service manager command, printing what failed and how. */
async function ran(env: ServiceEnvironment, command: string, args: string[]): Promise<boolean> {
  const result = await env.run(command, args);
  if (result.code === 0) return true;
  env.print(`lmgate-agent: ${command} ${args.join(" ")} failed (exit ${result.code}): ${result.output}`);
  return false;
}

/**
 * The config file the service runs with: what differs from the defaults (so a later version's
 * defaults still apply), with keys named like the flags and model folders made absolute.
 */
function settingsFile(config: AgentConfig, host: Host): Record<string, unknown> {
  const defaults = parseAgentCommand(["--serve"], {}, host);
  if (defaults.kind !== "run") throw new Error("unreachable: defaults always parse");
  const values: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    const isDefault = key === "serve" ? value === false : isDeepStrictEqual(value, (defaults.config as Record<string, unknown>)[key]);
    if (value === undefined || isDefault) continue;
    values[key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)] = key === "models" ? (value as string[]).map((dir) => pathsOf(host).resolve(dir)) : value;
  }
  return values;
}
