import packageJson from "../../package.json" with { type: "json" };

/** lmgate's version: bundled into the Worker, read by Node as a JSON module. */
export const LMGATE_VERSION: string = packageJson.version;
