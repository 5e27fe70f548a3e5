import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { ensureDemoModels } from "../../node-agent/demo-models/demo-models.ts";
import { generatedModels } from "./test-models.ts";

/** Writes the tiny models once per run, in a temporary folder of the run's own, before any test file needs them. */
export default async function setup(project: TestProject) {
  const root = await mkdtemp(join(tmpdir(), "lmgate-test-run-models-"));
  await ensureDemoModels(generatedModels(root));
  project.provide("testModelsRoot", root);
  return () => rm(root, { recursive: true, force: true });
}
