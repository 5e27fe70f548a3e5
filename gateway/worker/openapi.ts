import type { OpenApiOptions } from "../../shared/app/openapi-document.ts";

/** The gateway's `/openapi.json`: every API route needs a key; its own routes say what they need where they are registered. */
export const GATEWAY_OPENAPI: OpenApiOptions = { title: "lmgate gateway", apiKeys: true };
