/**
 * A key's model allowlist: globs where `*` matches any run of characters and `?` one character
 * (`tiny-*`, `lmgate/*`). `null` allows every model.
 */
export class ModelScope {
  readonly #patterns: RegExp[] | null;

  constructor(globs: string[] | null) {
    this.#patterns = globs === null ? null : globs.map(globToRegExp);
  }

  allows(model: string): boolean {
    return this.#patterns === null || this.#patterns.some((pattern) => pattern.test(model));
  }
}

function globToRegExp(glob: string): RegExp {
  const source = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".");
  return new RegExp(`^${source}$`);
}
