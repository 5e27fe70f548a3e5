const encoder = new TextEncoder();

const digest = async (value: string) => crypto.subtle.digest("SHA-256", encoder.encode(value));

/**
 * Compares a presented secret with the expected one in constant time. Both are hashed first:
 * `timingSafeEqual` needs equal lengths, and comparing digests leaks nothing about the length.
 */
export async function secretMatches(presented: string, expected: string | undefined): Promise<boolean> {
  if (expected === undefined || expected === "") return false;
  const [a, b] = await Promise.all([digest(presented), digest(expected)]);
  return crypto.subtle.timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
