import { DOMParser } from "@xmldom/xmldom";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parsePlist } from "plist";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import type { Host } from "../platform/host.ts";
import { serviceCommand, servicePaths, type ServiceEnvironment } from "./service-command.ts";
import { taskXml, taskXmlFile } from "./service-files.ts";

const AGENT = [process.execPath, fileURLToPath(new URL("../cli.ts", import.meta.url))];
const TOKEN = "lmgn_0123456789abcdef-secret";

/** Debian's systemd-analyze, installed with apt-get when it is missing and we may. */
function systemdAnalyze(): string {
  const path = "/usr/bin/systemd-analyze";
  if (!existsSync(path) && process.platform === "linux" && process.getuid?.() === 0) {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    spawnSync("apt-get", ["update"], { env, timeout: 300_000 });
    spawnSync("apt-get", ["install", "-y", "--no-install-recommends", "systemd"], { env, timeout: 600_000 });
  }
  if (!existsSync(path)) throw new Error(`${path} is missing and could not be installed: install Debian's systemd package (apt-get install systemd)`);
  return path;
}

let home: string;
let calls: string[][];
let printed: string[];

function environment(platform: NodeJS.Platform, env: NodeJS.ProcessEnv = {}): ServiceEnvironment {
  const host: Host = { platform, home, env: { LMGATE_TOKEN: TOKEN, USER: "me", ...env } };
  return {
    host,
    agent: AGENT,
    uid: 501,
    run: async (command, args) => {
      calls.push([command, ...args]);
      return { code: 0, output: `${command} says fine` };
    },
    print: (line) => printed.push(line),
    askToken: undefined,
  };
}

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), "lmgate-service-"));
  calls = [];
  printed = [];
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

describe("service install keeps the settings and the token in a file only the user can read", () => {
  test("the file holds what was given (flags and LMGATE_*), absolute model folders, no defaults; mode 0600 in a 0700 folder", async () => {
    const env = environment("linux");
    expect(await serviceCommand(["install", "--gateway", "https://gw.example", "--models", "~/models", "--slots", "2", "--port", "1234"], env)).toBe(0);
    const { configFile } = servicePaths(env.host);
    expect(configFile).toBe(join(home, ".config", "lmgate", "agent.json"));
    expect(JSON.parse(await readFile(configFile, "utf8"))).toEqual({ gateway: "https://gw.example", token: TOKEN, models: [join(home, "models")], slots: 2 });
    expect(await mode(configFile)).toBe(0o600);
    expect(await mode(join(home, ".config", "lmgate"))).toBe(0o700);
    expect(printed.join("\n")).not.toContain(TOKEN);
  });

  test("without --token or LMGATE_TOKEN, the token is asked for on the terminal and lands in the file only", async () => {
    const env = environment("linux");
    delete env.host.env.LMGATE_TOKEN;
    let asked = 0;
    env.askToken = async () => {
      asked++;
      return "lmgn_typed-at-the-prompt";
    };
    expect(await serviceCommand(["install", "--gateway", "https://gw.example"], env)).toBe(0);
    expect(asked).toBe(1);
    expect(JSON.parse(await readFile(servicePaths(env.host).configFile, "utf8"))).toEqual({ gateway: "https://gw.example", token: "lmgn_typed-at-the-prompt" });
  });

  test("an invalid agent option is refused before anything is written", async () => {
    await expect(serviceCommand(["install", "--gateway", "https://gw.example", "--slots", "many"], environment("linux"))).rejects.toThrow("--slots must be a whole number");
    expect(existsSync(join(home, ".config"))).toBe(false);
    expect(calls).toEqual([]);
  });

  test("install takes exactly the agent's options: an unknown one is refused as the agent refuses it, before anything is written", async () => {
    await expect(serviceCommand(["install", "--gateway", "https://gw.example", "--bogus"], environment("linux"))).rejects.toThrow("Unknown option '--bogus'");
    await expect(serviceCommand(["install", "--gateway", "https://gw.example", "--no-cpu", "--max-models", "2"], environment("linux"))).resolves.toBe(0);
    expect(JSON.parse(await readFile(servicePaths(environment("linux").host).configFile, "utf8"))).toMatchObject({ "max-models": 2 });
  });

  test("service alone prints its actions and exits 2; service --help and service help install exit 0", async () => {
    const env = environment("linux");
    expect(await serviceCommand([], env)).toBe(2);
    expect(printed.join("\n")).toMatch(/install \[options\][\s\S]*status[\s\S]*uninstall/);
    printed = [];
    expect(await serviceCommand(["--help"], env)).toBe(0);
    expect(printed.join("\n")).toContain("Usage: lmgate-agent service");
    printed = [];
    expect(await serviceCommand(["help", "install"], env)).toBe(0);
    expect(printed.join("\n")).toContain("--max-models <n>");
    await expect(serviceCommand(["restart"], env)).rejects.toThrow('unknown action "restart"');
    expect(calls).toEqual([]);
  });
});

describe("Linux: a systemd user unit", () => {
  test("passes systemd-analyze verify, runs the agent with --config, holds no token; systemctl --user enables and starts it", async () => {
    const env = environment("linux", { XDG_CONFIG_HOME: join(home, "cfg 100%") });
    expect(await serviceCommand(["install", "--gateway", "https://gw.example", "--shutdown-timeout", "20"], env)).toBe(0);
    const { definition, configFile } = servicePaths(env.host);
    expect(definition).toBe(join(home, "cfg 100%", "systemd", "user", "lmgate-agent.service"));
    const unit = await readFile(definition, "utf8");
    expect(unit).not.toContain(TOKEN);
    expect(unit).toContain(`ExecStart="${AGENT[0]}" "${AGENT[1]}" "--config" "${configFile.replace("%", "%%")}"`);
    expect(unit).toContain("TimeoutStopSec=35");
    const verified = spawnSync(systemdAnalyze(), ["verify", definition], { encoding: "utf8" });
    expect(`${verified.stdout}${verified.stderr}`).toBe("");
    expect(verified.status).toBe(0);
    expect(calls).toEqual([
      ["systemctl", "--user", "daemon-reload"],
      ["systemctl", "--user", "enable", "lmgate-agent.service"],
      ["systemctl", "--user", "restart", "lmgate-agent.service"],
    ]);
  });

  test("status shows the files and the file's mode; uninstall stops it and deletes the unit and the token", async () => {
    const env = environment("linux");
    await serviceCommand(["install", "--gateway", "https://gw.example"], env);
    const { definition, configFile } = servicePaths(env.host);
    printed = [];
    expect(await serviceCommand(["status"], env)).toBe(0);
    expect(printed.join("\n")).toContain(`${configFile} (mode 0600)`);
    expect(printed.join("\n")).toContain("systemctl says fine");
    calls = [];
    expect(await serviceCommand(["uninstall"], env)).toBe(0);
    expect(existsSync(definition)).toBe(false);
    expect(existsSync(configFile)).toBe(false);
    expect(calls).toEqual([
      ["systemctl", "--user", "disable", "--now", "lmgate-agent.service"],
      ["systemctl", "--user", "daemon-reload"],
    ]);
    expect(await serviceCommand(["status"], env)).toBe(1);
  });

  test("a failing systemctl (no user session, no systemd) is reported with its own words", async () => {
    const env = { ...environment("linux"), run: async () => ({ code: 1, output: "Failed to connect to bus: No medium found" }) };
    expect(await serviceCommand(["install", "--gateway", "https://gw.example"], env)).toBe(1);
    expect(printed.at(-1)).toBe("lmgate-agent: systemctl --user daemon-reload failed (exit 1): Failed to connect to bus: No medium found");
  });
});

describe("macOS: a launchd agent", () => {
  test("the plist parses and runs the agent with --config at load, restarting on failure; launchctl bootstraps it in the user's GUI domain", async () => {
    const env = environment("darwin");
    expect(await serviceCommand(["install", "--gateway", "https://gw.example"], env)).toBe(0);
    const { definition, configFile, log } = servicePaths(env.host);
    expect(definition).toBe(join(home, "Library", "LaunchAgents", "lmgate.agent.plist"));
    expect(configFile).toBe(join(home, "Library", "Application Support", "lmgate", "agent.json"));
    const text = await readFile(definition, "utf8");
    expect(text).not.toContain(TOKEN);
    expect(parsePlist(text)).toEqual({
      Label: "lmgate.agent",
      ProgramArguments: [...AGENT, "--config", configFile],
      RunAtLoad: true,
      KeepAlive: { SuccessfulExit: false },
      ExitTimeOut: 45,
      StandardOutPath: log,
      StandardErrorPath: log,
    });
    expect(await mode(configFile)).toBe(0o600);
    expect(calls).toEqual([
      ["launchctl", "bootout", "gui/501/lmgate.agent"],
      ["launchctl", "bootstrap", "gui/501", definition],
    ]);
  });
});

describe("Windows: a Task Scheduler task", () => {
  const command = { argv: ["C:\\Program Files\\nodejs\\node.exe", "C:\\Users\\me\\AppData\\Roaming\\npm\\node_modules\\lmgate-agent\\dist\\lmgate-agent.js", "--config", "C:\\Users\\me\\AppData\\Roaming\\lmgate\\agent.json"], shutdownTimeoutSeconds: 30 };

  test("the task XML, as schtasks reads it (UTF-16 with a BOM), parses and starts node with the agent and --config at the user's logon", () => {
    const bytes = taskXmlFile(taskXml(command, "GAMING-PC\\me"));
    expect([...bytes.subarray(0, 2)]).toEqual([0xff, 0xfe]);
    const document = new DOMParser().parseFromString(bytes.toString("utf16le").slice(1), "text/xml");
    const text = (tag: string) => document.getElementsByTagName(tag)[0]?.textContent;
    expect(document.documentElement?.namespaceURI).toBe("http://schemas.microsoft.com/windows/2004/02/mit/task");
    expect(text("Command")).toBe("C:\\Program Files\\nodejs\\node.exe");
    expect(text("Arguments")).toBe(`"${command.argv[1]}" "--config" "${command.argv[3]}"`);
    expect(document.getElementsByTagName("LogonTrigger")[0]?.getElementsByTagName("UserId")[0]?.textContent).toBe("GAMING-PC\\me");
    expect(text("LogonType")).toBe("InteractiveToken");
    expect(text("ExecutionTimeLimit")).toBe("PT0S");
  });

  test("its files go in %APPDATA%\\lmgate", () => {
    const host: Host = { platform: "win32", home: "C:\\Users\\me", env: { APPDATA: "C:\\Users\\me\\AppData\\Roaming" } };
    expect(servicePaths(host)).toEqual({
      configFile: "C:\\Users\\me\\AppData\\Roaming\\lmgate\\agent.json",
      definition: "C:\\Users\\me\\AppData\\Roaming\\lmgate\\lmgate-agent-task.xml",
    });
  });
});

test("an OS without a known service manager gets told what to do instead", async () => {
  await expect(serviceCommand(["install"], environment("freebsd"))).rejects.toThrow("start lmgate-agent --config <file> from your init system");
});
