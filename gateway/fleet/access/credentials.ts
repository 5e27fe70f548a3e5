/**
 * API keys and node tokens: 32 random bytes behind a recognisable prefix (`lmg_` for keys,
 * `lmgn_` for node tokens, so a leaked one is easy to spot and to tell apart). Only the SHA-256 of
 * a credential is stored: the secrets have 256 bits of entropy, so an unsalted hash is safe, and
 * looking a credential up by its hash never compares secrets character by character.
 */
export type CredentialKind = "key" | "node";

const PREFIXES: Record<CredentialKind, string> = { key: "lmg_", node: "lmgn_" };

/** How much of a secret is kept in the clear, to recognise it in a list. */
const VISIBLE_CHARS = 8;

export interface NewCredential {
  secret: string;
  prefix: string;
  hash: string;
}

export async function newCredential(kind: CredentialKind): Promise<NewCredential> {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const secret = PREFIXES[kind] + base64url(bytes);
  return { secret, prefix: secret.slice(0, PREFIXES[kind].length + VISIBLE_CHARS), hash: await sha256Hex(secret) };
}

export const credentialKind = (secret: string): CredentialKind | null =>
  secret.startsWith(PREFIXES.node) ? "node" : secret.startsWith(PREFIXES.key) ? "key" : null;

export async function sha256Hex(value: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value)));
  let hex = "";
  for (const byte of digest) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}
