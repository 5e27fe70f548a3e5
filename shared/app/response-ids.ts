/** An id as the APIs write theirs: a prefix (`msg`, `resp`, `fc`), an underscore, then random hex. */
export function randomId(prefix: string, bytes = 24): string {
  const random = crypto.getRandomValues(new Uint8Array(bytes));
  return `${prefix}_${Array.from(random, (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

/** A response's creation time as the APIs write it: whole seconds since the epoch. */
export const unixSeconds = () => Math.floor(Date.now() / 1000);
