import { InvalidArgumentError, type Command } from "commander";
import pc from "picocolors";
import type { RequestQuery, RequestRow } from "../shared/gateway-admin/request-log-schemas.ts";
import type { AdminClient } from "./admin-client.ts";
import { plain, printRows, type Column } from "./output.ts";

/** How often `--follow` asks for new rows. */
const FOLLOW_POLL_MS = 1_000;

/** `15m`, `2h`, `1d` ago, or an ISO date/time. */
const since = (value: string) => {
  const relative = /^(\d+)([dhm])$/.exec(value);
  if (relative) {
    const unit = { d: 86_400_000, h: 3_600_000, m: 60_000 }[relative[2] as "d" | "h" | "m"];
    return new Date(Date.now() - Number(relative[1]) * unit).toISOString();
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new InvalidArgumentError("expected e.g. 15m, 2h, 1d, or an ISO date such as 2027-01-31T10:00:00Z");
  return date.toISOString();
};
const limit = (value: string) => {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 500) throw new InvalidArgumentError("expected a whole number from 1 to 500");
  return Number(value);
};
const ms = (value: number | null) => (value === null ? null : Math.round(value));

export const requestColumns: Column<RequestRow>[] = [
  { header: "time", value: (row) => row.at.slice(0, 19).replace("T", " ") },
  { header: "key", value: (row) => row.key_name },
  { header: "route", value: (row) => row.route ?? row.op },
  { header: "model", value: (row) => row.model || null },
  { header: "node", value: (row) => row.node },
  {
    header: "status",
    value: (row) => (row.error_code === null ? row.status : `${row.status} ${row.error_code}`),
    style: (text) => (text.startsWith("2") ? pc.green(text) : pc.red(text)),
  },
  { header: "tokens in/out (cached)", value: (row) => `${row.prompt_tokens}/${row.completion_tokens} (${row.cached_tokens})` },
  { header: "queue ms", value: (row) => row.queue_ms },
  { header: "ttft ms", value: (row) => ms(row.ttft_ms) },
  { header: "total ms", value: (row) => row.duration_ms },
  { header: "tok/s", value: (row) => (row.tokens_per_second === null ? null : row.tokens_per_second.toFixed(1)) },
  { header: "retries", value: (row) => row.retries },
];

type Filters = Pick<RequestQuery, "key" | "model" | "node" | "status" | "since">;

/** `lmgate requests`: the gateway's request log, newest last; `--follow` keeps printing new requests as they finish. */
export function addRequestsCommand(program: Command, client: () => AdminClient, keyId: (reference: string) => Promise<string>, json: () => boolean): void {
  program
    .command("requests")
    .description("the request log: one row per finished request (refused and failed ones too)")
    .option("--key <key>", "only this key (id or name)")
    .option("--model <model>", "only this model")
    .option("--node <node>", "only this node")
    .option("--status <status>", "only this status (429) or class (4xx, 5xx)")
    .option("--since <when>", "only since then: 15m, 2h, 1d, or an ISO date", since)
    .option("--limit <n>", "the most recent n rows (1 to 500)", limit, 50)
    .option("-f, --follow", "keep printing requests as they finish (Ctrl-C stops)", false)
    .action(async (options: Omit<Filters, "key"> & { key?: string; limit: number; follow: boolean }) => {
      const filters: Filters = {
        key: options.key === undefined ? undefined : await keyId(options.key),
        model: options.model,
        node: options.node,
        status: options.status,
        since: options.since,
      };
      const page = await client().requests({ ...filters, limit: options.limit });
      const rows = page.data.toReversed();
      if (!options.follow) {
        printRows(rows, requestColumns, json(), "no requests recorded for that selection");
        return;
      }
      const print = (row: RequestRow) =>
        console.log(json() ? JSON.stringify(row) : requestColumns.map((column) => (column.style ?? String)(plain(String(column.value(row) ?? "—")))).join("  "));
      if (!json()) console.log(pc.bold(requestColumns.map((column) => column.header).join("  ")));
      rows.forEach(print);
      let after = page.data[0]?.seq ?? 0;
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, FOLLOW_POLL_MS));
        const newer = await client().requests({ ...filters, after, limit: 500 });
        newer.data.forEach(print);
        after = newer.data.at(-1)?.seq ?? after;
      }
    });
}
