import type { UsageRow } from "../shared/gateway-admin/admin-schemas.ts";
import type { Column } from "./output.ts";

/** The columns of usage rows: the owner's `lmgate usage` names each row's key; a key holder's `whoami` has only its own. */
export const usageColumns = (withKey: boolean): Column<UsageRow>[] => [
  { header: "day", value: (row) => row.day },
  ...(withKey ? [{ header: "key", value: (row: UsageRow) => row.key_name }] : []),
  { header: "model", value: (row) => row.model },
  { header: "requests", value: (row) => row.requests },
  { header: "prompt tokens", value: (row) => row.prompt_tokens },
  { header: "completion tokens", value: (row) => row.completion_tokens },
  { header: "errors", value: (row) => row.errors },
];
