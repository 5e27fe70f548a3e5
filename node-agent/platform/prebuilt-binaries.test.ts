import { expect, test } from "vitest";
import { binaryPackages, missingBinaryAdvice, type BinaryPackages } from "./prebuilt-binaries.ts";

const published = ["@node-llama-cpp/linux-x64", "@node-llama-cpp/linux-x64-cuda", "@node-llama-cpp/mac-arm64-metal", "@node-llama-cpp/win-x64-vulkan", "@node-llama-cpp/linux-armv7l"];
const packages = (installed: string[], builtHere = false): BinaryPackages => ({ root: "/opt/lib/node_modules/node-llama-cpp", published, installed, builtHere });

test("a machine with its binary package installed needs no advice", () => {
  expect(missingBinaryAdvice(packages(["@node-llama-cpp/mac-arm64-metal"]), "darwin", "arm64")).toBeUndefined();
  expect(missingBinaryAdvice(packages(["@node-llama-cpp/win-x64-vulkan"]), "win32", "x64")).toBeUndefined();
  expect(missingBinaryAdvice(packages(["@node-llama-cpp/linux-armv7l"]), "linux", "arm")).toBeUndefined();
});

test("a published binary npm left out: reinstall with optional dependencies, or build", () => {
  const advice = missingBinaryAdvice(packages(["@node-llama-cpp/linux-x64"]), "win32", "x64");
  expect(advice).toContain("(@node-llama-cpp/win-x64-vulkan) is not installed");
  expect(advice).toContain("reinstall lmgate-agent with its optional dependencies");
  expect(advice).toContain('node "/opt/lib/node_modules/node-llama-cpp/dist/cli/cli.js" source build');
  expect(advice).toContain("Desktop development with C++");
});

test("a platform with no prebuilt binary: how to build one, with the platform's compiler; nothing once it is built", () => {
  const advice = missingBinaryAdvice(packages([]), "freebsd", "x64");
  expect(advice).toMatch(/^node-llama-cpp publishes no prebuilt llama.cpp for freebsd x64/);
  expect(advice).toContain("source build");
  expect(missingBinaryAdvice(packages([], true), "freebsd", "x64")).toBeUndefined();
});

test("on this machine, node-llama-cpp's binary packages are found, and one of them fits", () => {
  const found = binaryPackages();
  expect(found.published).toContain("@node-llama-cpp/mac-arm64-metal");
  expect(found.installed.length).toBeGreaterThan(0);
  expect(missingBinaryAdvice(found, process.platform, process.arch)).toBeUndefined();
});
