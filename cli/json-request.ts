import type { z } from "zod";
import { ErrorBody } from "../shared/protocol/api-error.ts";

/** A failed call to the gateway; status 0 when it could not be reached at all. */
export class AdminApiError extends Error {
  override name = "AdminApiError";
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** One JSON call to the gateway with a bearer token, its answer validated by `schema`; errors become `AdminApiError` with the API's message. */
export async function jsonRequest<T extends z.ZodType>(base: string, token: string, schema: T, method: string, path: string, body?: unknown): Promise<z.infer<T>> {
  let response: Response;
  try {
    response = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new AdminApiError(0, `cannot reach the gateway at ${base}: ${(error as Error).cause ?? (error as Error).message}`);
  }
  const payload: unknown = await response.json().catch(() => null);
  if (!response.ok) {
    const parsed = ErrorBody.safeParse(payload);
    throw new AdminApiError(response.status, parsed.success ? parsed.data.error.message : `HTTP ${response.status}`);
  }
  return schema.parse(payload);
}
