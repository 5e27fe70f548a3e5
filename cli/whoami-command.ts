import type { Command } from "commander";
import pc from "picocolors";
import { KeyView } from "../shared/gateway-admin/key-view-schemas.ts";
import { AdminApiError, jsonRequest } from "./json-request.ts";
import { day, plain, printRows } from "./output.ts";
import { requestColumns } from "./requests-command.ts";
import { usageColumns } from "./usage-columns.ts";

const limitLine = (limit: KeyView["limits"]["tokens_per_day"]) =>
  limit === null ? "unlimited" : `${limit.remaining} of ${limit.limit} left (resets ${day(limit.resets_at)} UTC)`;

/**
 * `lmgate whoami`: a key holder's own key, with LMGATE_API_KEY (never a flag: a secret on the
 * command line is visible to ps). Reads `GET /v1/key`, so it shows only what that key may see.
 */
export function addWhoamiCommand(program: Command, baseUrl: () => string, json: () => boolean): void {
  program
    .command("whoami")
    .description("your API key (LMGATE_API_KEY): its limits and what is left, usage, recent requests, models")
    .action(async () => {
      const key = process.env.LMGATE_API_KEY;
      if (!key) throw new AdminApiError(0, "no API key: set LMGATE_API_KEY to the key you were given");
      const view = await jsonRequest(baseUrl().replace(/\/+$/, ""), key, KeyView, "GET", "/v1/key");
      if (json()) return console.log(JSON.stringify(view, null, 2));
      console.log(`${pc.bold(plain(view.name))} (${view.id}${view.prefix ? `, ${view.prefix}…` : ""})`);
      console.log(`  models:            ${plain(view.models?.join(", ") ?? "all")}`);
      console.log(`  can:               ${view.can.join(", ") || "use models only"}`);
      console.log(`  expires:           ${day(view.expires_at) ?? "never"}`);
      console.log(`  requests/minute:   ${limitLine(view.limits.requests_per_minute)}`);
      console.log(`  tokens/day:        ${limitLine(view.limits.tokens_per_day)}`);
      console.log(`  available models:  ${plain(view.available_models.map((model) => `${model.id} (${(model.nodes ?? []).map((where) => where.node).join(", ")})`).join(", ") || "none online")}`);
      console.log(pc.bold("\nUsage"));
      printRows(view.usage, usageColumns(false), false, "none yet");
      console.log(pc.bold("\nRecent requests"));
      printRows(view.requests.toReversed(), requestColumns, false, "none yet");
    });
}
