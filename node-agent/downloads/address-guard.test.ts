import { expect, test } from "vitest";
import { AddressGuard, isPrivateAddress } from "./address-guard.ts";

test("loopback, private, link-local, CGNAT, unique-local and IPv4-mapped private addresses are private; public ones are not", () => {
  for (const address of ["127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "::", "fd00::1", "fe80::1", "::ffff:192.168.1.1", "::FFFF:127.0.0.1"]) {
    expect(isPrivateAddress(address), address).toBe(true);
  }
  for (const address of ["8.8.8.8", "172.32.0.1", "192.169.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:1.1.1.1"]) {
    expect(isPrivateAddress(address), address).toBe(false);
  }
});

const resolveTo =
  (table: Record<string, string[]>) =>
  async (host: string): Promise<string[]> =>
    table[host] ?? [];

test("a URL is refused with 403 download_source_not_allowed when its host is, or resolves to, a private address", async () => {
  const guard = new AddressGuard({ trustedHost: "huggingface.co", resolve: resolveTo({ "nas.home": ["192.168.1.20"], "cdn.example": ["93.184.216.34"], "split.example": ["93.184.216.34", "10.0.0.5"] }) });
  for (const url of ["http://192.168.1.1/x.gguf", "http://[::1]:8080/x.gguf", "http://nas.home/x.gguf", "http://split.example/x.gguf"]) {
    await expect(guard.check(new URL(url)), url).rejects.toMatchObject({ status: 403, code: "download_source_not_allowed", param: "model" });
  }
  await expect(guard.check(new URL("http://nowhere.example/x.gguf"))).rejects.toMatchObject({ status: 502, code: "download_failed" });
  await expect(guard.check(new URL("https://cdn.example/model.gguf"))).resolves.toBeUndefined();
  await expect(guard.check(new URL("https://8.8.8.8/model.gguf"))).resolves.toBeUndefined();
});

test("the configured hub's host is trusted wherever it points, and the owner can allow private addresses", async () => {
  const mirror = new AddressGuard({ trustedHost: "192.168.1.5:8080", resolve: resolveTo({}) });
  await expect(mirror.check(new URL("http://192.168.1.5:8080/org/repo/resolve/main/x.gguf"))).resolves.toBeUndefined();
  // Same address, another port: not the hub.
  await expect(mirror.check(new URL("http://192.168.1.5:22/x.gguf"))).rejects.toMatchObject({ status: 403 });
  const allowed = new AddressGuard({ trustedHost: "huggingface.co", allowPrivate: true, resolve: resolveTo({}) });
  await expect(allowed.check(new URL("http://10.0.0.9/x.gguf"))).resolves.toBeUndefined();
});
