import { fileURLToPath } from "node:url";
import { ensureDemoModels } from "../../node-agent/demo-models/demo-models.ts";

/** One folder of generated tiny models shared by every test run (written once, then reused). */
export const TEST_MODELS_DIR = fileURLToPath(new URL("../../.lmgate/test-models", import.meta.url));

export async function testModelsDir(): Promise<string> {
  await ensureDemoModels(TEST_MODELS_DIR);
  return TEST_MODELS_DIR;
}
