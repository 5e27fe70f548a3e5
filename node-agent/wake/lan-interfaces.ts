import { networkInterfaces, type NetworkInterfaceInfo } from "node:os";
import type { WakeInterface } from "../../shared/protocol/frames.ts";

/** The broadcast address of an IPv4 network: the address with every host bit set. */
export function broadcastAddress(address: string, netmask: string): string {
  const a = address.split(".").map(Number);
  const m = netmask.split(".").map(Number);
  return a.map((byte, i) => (byte | (~(m[i] ?? 0) & 0xff)) & 0xff).join(".");
}

/**
 * This machine's LAN interfaces that a magic packet can reach: IPv4, not loopback, with a real
 * MAC. `interfaces` is injectable so tests can describe any machine.
 */
export function lanInterfaces(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): WakeInterface[] {
  const found: WakeInterface[] = [];
  for (const entries of Object.values(interfaces)) {
    for (const entry of entries ?? []) {
      if (entry.family !== "IPv4" || entry.internal || /^(00:){5}00$/.test(entry.mac)) continue;
      const wake = { mac: entry.mac.toLowerCase(), broadcast: broadcastAddress(entry.address, entry.netmask) };
      if (!found.some((known) => known.mac === wake.mac && known.broadcast === wake.broadcast)) found.push(wake);
    }
  }
  return found;
}
