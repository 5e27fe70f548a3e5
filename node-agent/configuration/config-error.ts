/** A command line, environment variable or config file the agent cannot run with; the message says what to fix. */
export class ConfigError extends Error {
  override name = "ConfigError";
}
