import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Tracer } from "@opentelemetry/api";
import { getNumberFromEnv, parseTraceParent } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import type { GenerationResult } from "../../shared/protocol/generation-events.ts";

/** A request the agent ran, as its spans need it: told once, when it ended. */
export interface TracedRequest {
  /** The W3C trace context the gateway sent with the request; without it the request starts a trace of its own. */
  traceparent: string | undefined;
  id: string;
  op: string;
  model: string;
  /** When the request frame arrived, and when the answer (or the error) left (`Date.now()`). */
  receivedAt: number;
  endedAt: number;
  /** 200, the error's status, or 499 when cancelled. */
  status: number;
  errorCode?: string | null;
  /** A generation's `done`: its engine timings split the request into its spans. */
  result?: GenerationResult;
}

/** Where the agent's spans go. */
export interface RequestTracer {
  finished(request: TracedRequest): void;
  /** Sends what is still batched; the agent calls it on its way out. */
  shutdown(): Promise<void>;
}

/**
 * Spans over OTLP/HTTP with the official OpenTelemetry SDK, when the standard variables configure
 * an endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; the exporter
 * reads them, and their headers, itself). Null when none is set, or `OTEL_SDK_DISABLED=true`.
 */
export function otlpRequestTracer(node: string, version: string): RequestTracer | null {
  const env = process.env;
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint || env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return null;
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME || "lmgate-agent", "service.version": version, "lmgate.node": node }),
    // The standard batch delay variable too; the processor's default (5 s) otherwise.
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter(), scheduledDelayMillis: getNumberFromEnv("OTEL_BSP_SCHEDULE_DELAY") })],
  });
  const tracer = provider.getTracer("lmgate-agent", version);
  return { finished: (request) => recordSpans(tracer, request), shutdown: () => provider.shutdown() };
}

/**
 * One span for the request on this node, child of the gateway's trace, and for a generation three
 * children from its engine's own timings: `queue` (waiting for a slot, a JIT load included),
 * `prompt processing` (to the first token) and `generation` (to the last).
 */
function recordSpans(tracer: Tracer, request: TracedRequest): void {
  const parent = parentContext(request.traceparent);
  const span = tracer.startSpan(
    `lmgate.agent ${request.op}`,
    {
      kind: SpanKind.SERVER,
      startTime: request.receivedAt,
      attributes: { "lmgate.request.id": request.id, "lmgate.operation": request.op, "gen_ai.request.model": request.model, "http.response.status_code": request.status },
    },
    parent,
  );
  if (request.status >= 400 && request.status !== 499) span.setStatus({ code: SpanStatusCode.ERROR, ...(request.errorCode ? { message: request.errorCode } : {}) });
  const result = request.result;
  if (result !== undefined) {
    const { usage, stats } = result;
    span.setAttributes({ "gen_ai.usage.input_tokens": usage.prompt_tokens, "gen_ai.usage.output_tokens": usage.completion_tokens });
    // The engine measured from when it started the request (slot held, model loaded) to its last token.
    const engineStart = Math.max(request.receivedAt, request.endedAt - stats.generation_time * 1000);
    const firstToken = Math.min(request.endedAt, engineStart + stats.time_to_first_token * 1000);
    const inside = trace.setSpan(parent, span);
    const child = (name: string, start: number, end: number, attributes: Record<string, number> = {}) =>
      tracer.startSpan(name, { startTime: start, attributes }, inside).end(end);
    child("queue", request.receivedAt, engineStart);
    child("prompt processing", engineStart, firstToken, { "gen_ai.usage.input_tokens": usage.prompt_tokens, "lmgate.cached_tokens": stats.cached_prompt_tokens ?? 0 });
    child("generation", firstToken, request.endedAt, { "gen_ai.usage.output_tokens": usage.completion_tokens, "lmgate.tokens_per_second": stats.tokens_per_second });
  }
  span.end(request.endedAt);
}

function parentContext(traceparent: string | undefined): Context {
  const spanContext = traceparent === undefined ? null : parseTraceParent(traceparent);
  return spanContext === null ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, { ...spanContext, isRemote: true });
}
