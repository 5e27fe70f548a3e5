/** A `.gguf` file found under one of the model folders. */
export interface FoundFile {
  /** Absolute path, used to open the file and never shown. */
  path: string;
  /** Folders and file name below the model folder. */
  segments: string[];
}

export interface ModelIdentity {
  id: string;
  publisher: string;
}

/**
 * LM Studio's layout is `<dir>/<publisher>/<repo>/<file>.gguf`; a file placed anywhere shallower
 * has no publisher to speak of.
 */
export function publisherOf(segments: readonly string[]): string {
  return segments.length >= 3 ? (segments[segments.length - 3] ?? "local") : "local";
}

/**
 * Gives each file a short, stable id: its name without `.gguf`, lower-cased. When two files would
 * share an id, both get their publisher as a prefix, then their whole relative path; files that
 * still collide (the same relative path under two model folders) lose to the first one found.
 * Returns the identities by path and the paths that lost.
 */
export function assignModelIds(files: readonly FoundFile[]): { ids: Map<string, ModelIdentity>; shadowed: string[] } {
  const candidates = files.map((file) => {
    const publisher = publisherOf(file.segments);
    // A split model is named for its first part, without the part number.
    const stem = (file.segments.at(-1) ?? "").replace(/\.gguf$/i, "").replace(/-00001-of-\d{5}$/i, "").toLowerCase();
    return {
      file,
      publisher,
      forms: [stem, `${publisher.toLowerCase()}/${stem}`, file.segments.join("/").replace(/\.gguf$/i, "").toLowerCase()],
    };
  });
  const ids = new Map<string, ModelIdentity>();
  const shadowed: string[] = [];
  const taken = new Set<string>();
  for (const candidate of candidates) {
    const id = candidate.forms.find((form, level) => {
      // A form is usable when no other file shares it at this level of disambiguation.
      const sharing = candidates.filter((other) => other.forms[level] === form);
      return sharing.length === 1 || (level === candidate.forms.length - 1 && !taken.has(form));
    });
    if (id === undefined || taken.has(id)) {
      shadowed.push(candidate.file.path);
      continue;
    }
    taken.add(id);
    ids.set(candidate.file.path, { id, publisher: candidate.publisher });
  }
  return { ids, shadowed };
}
