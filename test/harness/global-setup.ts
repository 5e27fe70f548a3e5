import { testModelsDir } from "./test-models.ts";

/** Writes the tiny models once, before any test file needs them. */
export default async function setup() {
  await testModelsDir();
}
