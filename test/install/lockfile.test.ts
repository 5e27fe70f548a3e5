import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";

// npm writes a package's optional dependencies for every platform into the lockfile, but drops the ones it
// cannot resolve (a version the registry lacks) and, regenerating against an existing node_modules, the
// ones this machine skipped. `npm install` on Linux then hands a Mac or a Windows PC no llama.cpp binary.
interface LockedPackage {
  version?: string;
  optionalDependencies?: Record<string, string>;
}
const root = new URL("../../", import.meta.url);
const lock = JSON.parse(readFileSync(new URL("package-lock.json", root), "utf8")) as { packages: Record<string, LockedPackage> };
const llamaManifest = JSON.parse(readFileSync(new URL("node_modules/node-llama-cpp/package.json", root), "utf8")) as {
  version: string;
  optionalDependencies: Record<string, string>;
};

/** The lockfile path `name` resolves to from the package at `from`, as Node walks up node_modules folders. */
function resolveLocked(from: string, name: string): string | undefined {
  for (let dir = from; ; ) {
    const path = `${dir ? `${dir}/` : ""}node_modules/${name}`;
    if (lock.packages[path]) return path;
    if (!dir) return undefined;
    const parent = dir.lastIndexOf("/node_modules/");
    dir = parent < 0 ? "" : dir.slice(0, parent);
  }
}

describe("package-lock.json holds every platform's packages", () => {
  test("every prebuilt llama.cpp binary package node-llama-cpp lists is locked at node-llama-cpp's version", () => {
    const platforms = Object.entries(llamaManifest.optionalDependencies).filter(([name]) => name.startsWith("@node-llama-cpp/"));
    expect(platforms.map(([name]) => name)).toEqual(expect.arrayContaining(["@node-llama-cpp/mac-arm64-metal", "@node-llama-cpp/win-x64-cuda"]));
    const locked = platforms.map(([name]) => [name, lock.packages[`node_modules/${name}`]?.version]);
    expect(locked).toEqual(platforms.map(([name]) => [name, llamaManifest.version]));
  });

  test("every optional dependency of every locked package (workerd, esbuild, …) has an entry it resolves to", () => {
    const missing = Object.entries(lock.packages).flatMap(([path, entry]) =>
      Object.keys(entry.optionalDependencies ?? {})
        .filter((name) => !resolveLocked(path, name))
        .map((name) => `${path || "(root)"} → ${name}`),
    );
    expect(missing).toEqual([]);
  });
});
