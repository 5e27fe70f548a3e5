import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { ApiError } from "../../shared/protocol/api-error.ts";

/**
 * Where a download may come from. A key with the `download` right names the URL, and the agent
 * fetches it from inside its owner's network: without this, that key could make the agent request
 * the home router, a NAS, or anything listening on the machine itself. So a download, and every
 * redirect it follows, must go to a public address, unless it goes to the hub the owner configured
 * (`HF_ENDPOINT`, which may be a mirror on the LAN) or the owner allows private addresses.
 */

const PRIVATE = new BlockList();
for (const [network, prefix] of [
  ["0.0.0.0", 8], // "this network"
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, and cloud metadata services
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15], // benchmarking
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, and broadcast
] as const) {
  PRIVATE.addSubnet(network, prefix, "ipv4");
}
for (const [network, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["ff00::", 8], // multicast
] as const) {
  PRIVATE.addSubnet(network, prefix, "ipv6");
}

/** Whether an address is loopback, private, link-local or otherwise not on the public internet. */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return PRIVATE.check(mapped[1] as string, "ipv4");
  const family = isIP(address);
  if (family === 0) return true;
  return PRIVATE.check(address, family === 4 ? "ipv4" : "ipv6");
}

export type Resolve = (host: string) => Promise<string[]>;

const resolveAll: Resolve = async (host) => (await lookup(host, { all: true, verbatim: true })).map((entry) => entry.address);

export interface AddressGuardOptions {
  /** The configured hub's host (`host:port`): trusted wherever it points. */
  trustedHost: string;
  /** `LMGATE_ALLOW_PRIVATE_DOWNLOADS=1`: the owner lets downloads come from private addresses too. */
  allowPrivate?: boolean;
  /** Name resolution; the system's by default. */
  resolve?: Resolve;
}

export class AddressGuard {
  readonly #options: AddressGuardOptions;

  constructor(options: AddressGuardOptions) {
    this.#options = options;
  }

  /** Refuses (403 `download_source_not_allowed`) a URL whose host is, or resolves to, a private address. */
  async check(url: URL): Promise<void> {
    if (this.#options.allowPrivate || url.host === this.#options.trustedHost) return;
    // URL keeps IPv6 literals in brackets.
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    let addresses: string[];
    try {
      addresses = isIP(host) === 0 ? await (this.#options.resolve ?? resolveAll)(host) : [host];
    } catch {
      throw new ApiError(502, `Could not resolve ${url.hostname}.`, { code: "download_failed" });
    }
    if (addresses.length === 0) throw new ApiError(502, `Could not resolve ${url.hostname}.`, { code: "download_failed" });
    const blocked = addresses.find(isPrivateAddress);
    if (blocked !== undefined) {
      throw new ApiError(
        403,
        `Downloads from private or local addresses are refused (${url.hostname}${blocked !== host ? ` is ${blocked}` : ""}). ` +
          "The node's owner can allow them with LMGATE_ALLOW_PRIVATE_DOWNLOADS=1.",
        { param: "model", code: "download_source_not_allowed" },
      );
    }
  }
}
