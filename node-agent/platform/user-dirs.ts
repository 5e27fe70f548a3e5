import { pathsOf, type Host } from "./host.ts";

export interface UserDirs {
  /** Settings the user writes: the service's config file and its token. */
  config: string;
  /** Files the agent makes for itself: the generated demo models. */
  data: string;
}

/**
 * lmgate's folders in the user's profile, where each OS keeps them: XDG on Linux
 * (`~/.config/lmgate`, `~/.local/share/lmgate`), `~/Library/Application Support/lmgate` on macOS,
 * `%APPDATA%\lmgate` and `%LOCALAPPDATA%\lmgate` on Windows.
 */
export function userDirs(host: Host): UserDirs {
  const { join } = pathsOf(host);
  const env = (name: string) => (host.env[name] ? host.env[name] : undefined);
  switch (host.platform) {
    case "win32":
      return {
        config: join(env("APPDATA") ?? join(host.home, "AppData", "Roaming"), "lmgate"),
        data: join(env("LOCALAPPDATA") ?? join(host.home, "AppData", "Local"), "lmgate"),
      };
    case "darwin": {
      const support = join(host.home, "Library", "Application Support", "lmgate");
      return { config: support, data: support };
    }
    default:
      return {
        config: join(env("XDG_CONFIG_HOME") ?? join(host.home, ".config"), "lmgate"),
        data: join(env("XDG_DATA_HOME") ?? join(host.home, ".local", "share"), "lmgate"),
      };
  }
}
