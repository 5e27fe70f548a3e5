import { createSocket } from "node:dgram";
import { describe, expect, test } from "vitest";
import { broadcastAddress, lanInterfaces } from "./lan-interfaces.ts";
import { magicPacket, sendMagicPacket } from "./magic-packet.ts";

describe("the magic packet", () => {
  test("is 6 × 0xFF and then the MAC 16 times, received as one UDP datagram on 127.0.0.1", async () => {
    const listener = createSocket("udp4");
    await new Promise<void>((resolve) => listener.bind(0, "127.0.0.1", resolve));
    const received = new Promise<Buffer>((resolve) => listener.once("message", (message) => resolve(message)));
    try {
      await sendMagicPacket("0A:1b:2C:3d:4E:5f", "127.0.0.1", [listener.address().port]);
      const packet = await received;
      expect(packet).toHaveLength(102);
      expect([...packet.subarray(0, 6)]).toEqual([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
      for (let i = 0; i < 16; i++) expect([...packet.subarray(6 + i * 6, 12 + i * 6)]).toEqual([0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f]);
    } finally {
      listener.close();
    }
  });

  test("takes dashes as well as colons, and refuses anything that is not a MAC", () => {
    expect(magicPacket("0a-1b-2c-3d-4e-5f")).toEqual(magicPacket("0a:1b:2c:3d:4e:5f"));
    expect(() => magicPacket("0a:1b:2c:3d:4e")).toThrow(/not a MAC address/);
    expect(() => magicPacket("zz:1b:2c:3d:4e:5f")).toThrow(/not a MAC address/);
  });
});

describe("the LAN interfaces a node reports", () => {
  test("each network's broadcast address is the address with every host bit set", () => {
    expect(broadcastAddress("192.168.1.23", "255.255.255.0")).toBe("192.168.1.255");
    expect(broadcastAddress("10.1.2.3", "255.255.240.0")).toBe("10.1.15.255");
    expect(broadcastAddress("172.16.5.4", "255.255.255.255")).toBe("172.16.5.4");
  });

  test("IPv4 interfaces with a real MAC only: no loopback, no IPv6, no all-zero MAC, no repeats", () => {
    const found = lanInterfaces({
      lo: [{ address: "127.0.0.1", netmask: "255.0.0.0", family: "IPv4", mac: "00:00:00:00:00:00", internal: true, cidr: "127.0.0.1/8" }],
      eth0: [
        { address: "192.168.1.23", netmask: "255.255.255.0", family: "IPv4", mac: "AA:BB:CC:00:11:22", internal: false, cidr: "192.168.1.23/24" },
        { address: "fd00::2", netmask: "ffff:ffff:ffff:ffff::", family: "IPv6", mac: "aa:bb:cc:00:11:22", internal: false, cidr: "fd00::2/64", scopeid: 0 },
      ],
      tun0: [{ address: "10.8.0.2", netmask: "255.255.255.0", family: "IPv4", mac: "00:00:00:00:00:00", internal: false, cidr: "10.8.0.2/24" }],
      "eth0:1": [{ address: "192.168.1.24", netmask: "255.255.255.0", family: "IPv4", mac: "aa:bb:cc:00:11:22", internal: false, cidr: "192.168.1.24/24" }],
    });
    expect(found).toEqual([{ mac: "aa:bb:cc:00:11:22", broadcast: "192.168.1.255" }]);
  });
});
