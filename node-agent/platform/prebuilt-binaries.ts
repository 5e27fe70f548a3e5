import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** node-llama-cpp's binary packages by name: `@node-llama-cpp/win-x64-cuda` is for win32 x64. */
const PACKAGE_NAME = /^@node-llama-cpp\/(mac|win|linux)-(x64|arm64|armv7l|riscv64)(-|$)/;
const OS_NAMES: Record<string, NodeJS.Platform> = { mac: "darwin", win: "win32", linux: "linux" };
const ARCH_NAMES: Record<string, string> = { armv7l: "arm" };

const COMPILERS: Partial<Record<NodeJS.Platform, string>> = {
  darwin: "Xcode's command line tools: xcode-select --install",
  win32: 'Visual Studio Build Tools with "Desktop development with C++"',
  linux: "on Debian and Ubuntu: apt install build-essential cmake",
};

export interface BinaryPackages {
  /** node-llama-cpp's folder, whose CLI builds llama.cpp from the sources it ships. */
  root: string;
  /** Every binary package node-llama-cpp lists (its optional dependencies). */
  published: string[];
  /** The ones npm installed here. */
  installed: string[];
  /** Whether llama.cpp was built here from source (`node-llama-cpp source build`), which the engine uses too. */
  builtHere: boolean;
}

/** The installed node-llama-cpp's folder. The package does not export its package.json; its entry point sits in `dist/`. */
export const NODE_LLAMA_CPP_ROOT = join(dirname(createRequire(import.meta.url).resolve("node-llama-cpp")), "..");

/** node-llama-cpp's prebuilt llama.cpp packages: which exist, and which npm installed on this machine. */
export function binaryPackages(): BinaryPackages {
  const root = NODE_LLAMA_CPP_ROOT;
  const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { optionalDependencies?: Record<string, string> };
  const published = Object.keys(manifest.optionalDependencies ?? {}).filter((name) => PACKAGE_NAME.test(name));
  const resolveFromLlama = createRequire(join(root, "package.json"));
  const installed = published.filter((name) => {
    try {
      resolveFromLlama.resolve(name);
      return true;
    } catch {
      return false;
    }
  });
  let builtHere = false;
  try {
    builtHere = readdirSync(join(root, "llama", "localBuilds")).length > 0;
  } catch {
    // No builds folder: nothing was built here.
  }
  return { root, published, installed, builtHere };
}

/**
 * What to do when no prebuilt llama.cpp binary fits this machine; undefined when one does. The
 * engine never compiles llama.cpp by itself (a server should not start a build), so without one it
 * cannot start until the user builds it once with node-llama-cpp's CLI.
 */
export function missingBinaryAdvice(packages: BinaryPackages, platform: NodeJS.Platform, arch: string): string | undefined {
  const forThisMachine = (names: string[]) => names.filter((name) => binaryTarget(name) === `${platform}-${arch}`);
  if (packages.builtHere || forThisMachine(packages.installed).length > 0) return undefined;
  const build =
    `build llama.cpp once with: node "${join(packages.root, "dist", "cli", "cli.js")}" source build ` +
    `(takes minutes; needs CMake and a C++ compiler: ${COMPILERS[platform] ?? "your system's compiler and CMake"})`;
  const missing = forThisMachine(packages.published);
  if (missing.length > 0) {
    return `node-llama-cpp's prebuilt llama.cpp for this machine (${missing.join(", ")}) is not installed, ` +
      `as after npm install --omit=optional: reinstall lmgate-agent with its optional dependencies, or ${build}`;
  }
  return `node-llama-cpp publishes no prebuilt llama.cpp for ${platform} ${arch} (only for macOS, Windows and Linux on x64 and arm64): ${build}`;
}

function binaryTarget(name: string): string | undefined {
  const match = PACKAGE_NAME.exec(name);
  if (!match) return undefined;
  const [, os = "", arch = ""] = match;
  return `${OS_NAMES[os]}-${ARCH_NAMES[arch] ?? arch}`;
}
