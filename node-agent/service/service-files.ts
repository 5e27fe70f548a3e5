/**
 * What each OS's service manager is given to start the agent at login: a systemd user unit
 * (Linux), a launchd agent (macOS), a Task Scheduler task (Windows). Each runs one command,
 * `<node> <lmgate-agent> --config <file>`: the settings and the node token stay in that file,
 * which only the user can read, and never appear in the service definition or on a command line.
 */

export const SERVICE_NAME = "lmgate-agent";
export const LAUNCHD_LABEL = "lmgate.agent";
const DESCRIPTION = "lmgate agent: serves this machine's models to an lmgate gateway";

export interface ServiceCommand {
  /** The program and its arguments, absolute paths. */
  argv: string[];
  /** How long the agent may drain running requests when stopped (its --shutdown-timeout). */
  shutdownTimeoutSeconds: number;
}

/** A systemd user unit: `systemctl --user enable --now lmgate-agent`, logs in `journalctl --user -u lmgate-agent`. */
export function systemdUnit(command: ServiceCommand): string {
  return `[Unit]
Description=${DESCRIPTION}

[Service]
ExecStart=${command.argv.map(systemdQuote).join(" ")}
Restart=on-failure
RestartSec=5
# SIGTERM makes the agent finish running requests first, for up to its --shutdown-timeout.
TimeoutStopSec=${command.shutdownTimeoutSeconds + 15}

[Install]
WantedBy=default.target
`;
}

/** systemd's quoting: double quotes with C escapes, and `%` and `$` doubled so they are not specifiers or variables. */
function systemdQuote(arg: string): string {
  return `"${arg.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("%", "%%").replaceAll("$", "$$$$")}"`;
}

/** A launchd agent for `launchctl bootstrap gui/<uid>`: started at login, restarted if it crashes. */
export function launchdPlist(command: ServiceCommand, logFile: string): string {
  const strings = (values: string[]) => values.map((value) => `    <string>${escapeXml(value)}</string>`).join("\n");
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>${LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
${strings(command.argv)}
  </array>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ExitTimeOut</key>
  <integer>${command.shutdownTimeoutSeconds + 15}</integer>
  <key>StandardOutPath</key>
  <string>${escapeXml(logFile)}</string>
  <key>StandardErrorPath</key>
  <string>${escapeXml(logFile)}</string>
</dict>
</plist>
`;
}

/**
 * A Task Scheduler task (`schtasks /Create /XML`) that starts the agent when the user logs on, in
 * their session (where the GPU drivers are), restarting it if it fails. schtasks wants the file in
 * UTF-16 with a byte order mark; this is the text, `taskXmlFile` the bytes.
 */
export function taskXml(command: ServiceCommand, user: string | undefined): string {
  const [program = "", ...args] = command.argv;
  const userId = (indent: string) => (user === undefined ? "" : `\n${indent}<UserId>${escapeXml(user)}</UserId>`);
  return `<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>${DESCRIPTION}</Description>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>${userId("      ")}
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">${userId("      ")}
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <StartWhenAvailable>true</StartWhenAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <Enabled>true</Enabled>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>999</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>${escapeXml(program)}</Command>
      <Arguments>${escapeXml(args.map((arg) => `"${arg}"`).join(" "))}</Arguments>
    </Exec>
  </Actions>
</Task>
`;
}

export function taskXmlFile(xml: string): Buffer {
  return Buffer.from(`\ufeff${xml}`, "utf16le");
}

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}
