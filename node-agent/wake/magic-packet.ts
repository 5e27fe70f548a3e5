import { createSocket } from "node:dgram";

/** Wake-on-LAN listens on the discard and echo ports; senders use both, since NICs differ. */
export const WAKE_PORTS = [9, 7] as const;

const MAC = /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i;

/** `aa:bb:cc:dd:ee:ff` (or with dashes) as its 6 bytes; throws on anything else. */
export function macBytes(mac: string): Buffer {
  const match = MAC.exec(mac.trim());
  if (match === null) throw new Error(`not a MAC address: ${JSON.stringify(mac)}`);
  return Buffer.from(match.slice(1).map((byte) => Number.parseInt(byte, 16)));
}

/** The magic packet: 6 × 0xFF, then the MAC 16 times (102 bytes). */
export function magicPacket(mac: string): Buffer {
  const address = macBytes(mac);
  return Buffer.concat([Buffer.alloc(6, 0xff), ...Array.from({ length: 16 }, () => address)]);
}

/** Sends the magic packet for `mac` to `broadcast` on each port, as a UDP broadcast. */
export async function sendMagicPacket(mac: string, broadcast: string, ports: readonly number[] = WAKE_PORTS): Promise<void> {
  const packet = magicPacket(mac);
  const socket = createSocket("udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    socket.setBroadcast(true);
    for (const port of ports) {
      await new Promise<void>((resolve, reject) => socket.send(packet, port, broadcast, (error) => (error ? reject(error) : resolve())));
    }
  } finally {
    socket.close();
  }
}
