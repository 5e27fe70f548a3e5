import { describe, expect, test } from "vitest";
import { parseAgentCommand } from "../configuration/config.ts";
import { expandHome, splitPathList, type Host } from "./host.ts";
import { userDirs } from "./user-dirs.ts";

const windows: Host = { platform: "win32", home: "C:\\Users\\me", env: {} };
const mac: Host = { platform: "darwin", home: "/Users/me", env: {} };
const linux: Host = { platform: "linux", home: "/home/me", env: {} };

describe("folder lists and ~", () => {
  test("Windows splits on ';', so a drive letter's ':' survives", () => {
    expect(splitPathList("C:\\Users\\me\\.lmstudio\\models;D:\\models;", windows)).toEqual(["C:\\Users\\me\\.lmstudio\\models", "D:\\models"]);
  });

  test("macOS and Linux split on ':'", () => {
    expect(splitPathList("/Users/me/models:/Volumes/ssd/gguf", mac)).toEqual(["/Users/me/models", "/Volumes/ssd/gguf"]);
  });

  test("~ is the home folder, with either slash on Windows; ~user and a ~ inside a name stay", () => {
    expect(expandHome("~\\.lmstudio\\models", windows)).toBe("C:\\Users\\me\\.lmstudio\\models");
    expect(expandHome("~/models", windows)).toBe("C:\\Users\\me\\models");
    expect(expandHome("~", linux)).toBe("/home/me");
    expect(expandHome("~/models", linux)).toBe("/home/me/models");
    expect(expandHome("~\\models", linux)).toBe("~\\models");
    expect(expandHome("~other/models", linux)).toBe("~other/models");
    expect(expandHome("/srv/a~b", linux)).toBe("/srv/a~b");
  });

  test("LMGATE_MODELS and --models on Windows: Windows paths intact, ~ expanded", () => {
    const parse = (argv: string[], env: NodeJS.ProcessEnv) => {
      const command = parseAgentCommand(["--serve", ...argv], env, windows);
      if (command.kind !== "run") throw new Error(command.kind);
      return command.config.models;
    };
    expect(parse([], { LMGATE_MODELS: "C:\\Users\\me\\.lmstudio\\models;~\\more" })).toEqual(["C:\\Users\\me\\.lmstudio\\models", "C:\\Users\\me\\more"]);
    expect(parse(["--models", "~\\models", "--models", "E:\\gguf"], {})).toEqual(["C:\\Users\\me\\models", "E:\\gguf"]);
  });
});

describe("lmgate's folders follow each OS's conventions", () => {
  test("Windows: %APPDATA% for settings, %LOCALAPPDATA% for data, the profile's defaults without them", () => {
    expect(userDirs({ ...windows, env: { APPDATA: "C:\\Users\\me\\AppData\\Roaming", LOCALAPPDATA: "D:\\Local" } })).toEqual({
      config: "C:\\Users\\me\\AppData\\Roaming\\lmgate",
      data: "D:\\Local\\lmgate",
    });
    expect(userDirs(windows)).toEqual({ config: "C:\\Users\\me\\AppData\\Roaming\\lmgate", data: "C:\\Users\\me\\AppData\\Local\\lmgate" });
  });

  test("macOS: Application Support", () => {
    expect(userDirs(mac)).toEqual({ config: "/Users/me/Library/Application Support/lmgate", data: "/Users/me/Library/Application Support/lmgate" });
  });

  test("Linux: XDG, with its defaults when unset or empty", () => {
    expect(userDirs(linux)).toEqual({ config: "/home/me/.config/lmgate", data: "/home/me/.local/share/lmgate" });
    expect(userDirs({ ...linux, env: { XDG_CONFIG_HOME: "/cfg", XDG_DATA_HOME: "" } })).toEqual({ config: "/cfg/lmgate", data: "/home/me/.local/share/lmgate" });
  });
});
