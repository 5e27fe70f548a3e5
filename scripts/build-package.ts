/**
 * `node ../scripts/build-package.ts <entry.ts>`, run by `npm pack` (prepack) in node-agent/ or cli/:
 * builds that folder's package as JavaScript in dist/, because Node does not strip types under
 * node_modules. esbuild bundles the entry with its share of shared/; npm packages stay imports,
 * resolved from the package's own dependencies. The bin is a launcher that checks the Node version
 * before anything loads, so an old Node gets a sentence instead of a syntax error.
 *
 * The build fails when the package's manifest and its code disagree: a package the code imports
 * that the manifest does not depend on (it would fail at run time, on a user's machine), a
 * dependency nothing imports, or a version range other than the repository's.
 */
import { build, type Metafile } from "esbuild";
import { readFileSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, resolve } from "node:path";

interface Manifest {
  name: string;
  version: string;
  bin: Record<string, string>;
  engines: { node: string };
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

const [entry] = process.argv.slice(2);
if (entry === undefined) throw new Error("usage: node ../scripts/build-package.ts <entry.ts> (in the package's folder)");
const packageDir = process.cwd();
const manifest = readManifest(join(packageDir, "package.json"));
const repository = readManifest(resolve(import.meta.dirname, "../package.json"));

const bins = Object.entries(manifest.bin);
const [bin] = bins;
if (bins.length !== 1 || bin === undefined || bin[1] !== `dist/${bin[0]}.js`) throw new Error(`${manifest.name}: expected one bin, "<name>": "dist/<name>.js"`);
const minimumNode = /^>=\s*(\d+)$/.exec(manifest.engines.node)?.[1];
if (minimumNode === undefined) throw new Error(`${manifest.name}: engines.node must read ">=<major>", got "${manifest.engines.node}"`);
// The code reports the repository's version (shared/host/version.ts), so the package must carry the same one.
if (manifest.version !== repository.version) throw new Error(`${manifest.name}: version ${manifest.version} is not the repository's ${repository.version}`);

const outdir = join(packageDir, "dist");
rmSync(outdir, { recursive: true, force: true });
const result = await build({
  entryPoints: { main: join(packageDir, entry) },
  outdir,
  bundle: true,
  // Chunks keep the entry's dynamic imports lazy: `--help` must not wait for llama.cpp's bindings.
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  format: "esm",
  platform: "node",
  target: `node${minimumNode}`,
  packages: "external",
  metafile: true,
  logLevel: "warning",
  plugins: [
    {
      // shared/host/version.ts reads the repository's package.json: ship its version, not its scripts and dev dependencies.
      name: "version-only",
      setup(build) {
        build.onLoad({ filter: /[\\/]package\.json$/ }, ({ path }) => ({ contents: JSON.stringify({ version: readManifest(path).version }), loader: "json" }));
      },
    },
  ],
});

const problems = dependencyProblems(importedPackages(result.metafile), manifest, repository);
if (problems.length > 0) throw new Error(`${manifest.name}: package.json does not match the code:\n  ${problems.join("\n  ")}`);

const [binName] = bin;
const launcher = join(outdir, `${binName}.js`);
writeFileSync(
  launcher,
  `#!/usr/bin/env node
// Checked before the program loads: on an older Node it would stop at a syntax error or a missing API.
if (Number(process.versions.node.split(".")[0]) < ${minimumNode}) {
  console.error(
    "${binName} needs Node.js ${minimumNode} or newer; this is Node.js " + process.versions.node + " (" + process.execPath + ").\\n" +
      "Install the current LTS from https://nodejs.org (or with winget, Homebrew, nvm or fnm), then run ${binName} again.",
  );
  process.exit(1);
}
await import("./main.js");
`,
);
chmodSync(launcher, 0o755);
console.log(`${manifest.name}: built ${bin[1]} for Node ${minimumNode}+`);

function readManifest(path: string): Manifest {
  return JSON.parse(readFileSync(path, "utf8")) as Manifest;
}

/** The npm packages the bundle imports (`hono/body-limit` → `hono`), without Node's own modules. */
function importedPackages(metafile: Metafile): Set<string> {
  const builtins = new Set(builtinModules);
  const names = new Set<string>();
  for (const output of Object.values(metafile.outputs)) {
    for (const { path, external } of output.imports) {
      if (!external || path.startsWith("node:") || builtins.has(path)) continue;
      const parts = path.split("/");
      names.add(path.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] as string));
    }
  }
  return names;
}

function dependencyProblems(imported: Set<string>, manifest: Manifest, repository: Manifest): string[] {
  const declared = manifest.dependencies ?? {};
  const repositoryRanges = { ...repository.devDependencies, ...repository.dependencies };
  return [
    ...[...imported].filter((name) => !(name in declared)).map((name) => `the code imports ${name}, which is not in its dependencies`),
    ...Object.keys(declared).filter((name) => !imported.has(name)).map((name) => `${name} is a dependency, but the code does not import it`),
    ...Object.entries(declared)
      .filter(([name, range]) => repositoryRanges[name] !== range)
      .map(([name, range]) => `${name} is "${range}" here but "${repositoryRanges[name] ?? "absent"}" in the repository's package.json`),
  ];
}
