import type { AgentConfig } from "../configuration/config.ts";
import type { LinkWakeOptions } from "../link/gateway-link.ts";
import { lanInterfaces } from "./lan-interfaces.ts";
import { sendMagicPacket, WAKE_PORTS } from "./magic-packet.ts";

/**
 * The gateway link's Wake-on-LAN part, as the owner configured it: nothing unless `--wake-on-lan`
 * or `--wake-peers` is set. `interfaces` is injectable for tests.
 */
export function wakeOptions(config: AgentConfig, interfaces = lanInterfaces()): LinkWakeOptions | undefined {
  if (!config.wakeOnLan && !config.wakePeers) return undefined;
  const ports = config.wakePort === undefined ? WAKE_PORTS : [config.wakePort];
  return {
    interfaces: interfaces.map((wake) => ({ mac: wake.mac, broadcast: config.wakeBroadcast ?? wake.broadcast })),
    wakeable: config.wakeOnLan,
    ...(config.wakePeers
      ? {
          wakePeer: async (target) => {
            await sendMagicPacket(target.mac, target.broadcast, ports);
            return { mac: target.mac, broadcast: target.broadcast, ports: [...ports], sent_at: Date.now() };
          },
        }
      : {}),
  };
}
