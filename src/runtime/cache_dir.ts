/**
 * Where the measured caches (`profile.json`, `acceptance.json`) live. By default beside the draft model,
 * where the bundled pair ships them; with `SPECDEC_CACHE_DIR` (or an explicit directory) in a directory
 * outside the source tree instead, so tests, read-only installs and parallel runs never rewrite the
 * committed files. The draft folder's files are still read as a fallback (the bundled pair then starts
 * without measuring), but never written while a cache directory is in force.
 *
 * @module
 */

/** The environment variable naming the cache directory. */
export const CACHE_DIR_ENV = "SPECDEC_CACHE_DIR";

/** `$SPECDEC_CACHE_DIR`, or undefined when unset, empty, or the environment may not be read. */
export function cacheDirFromEnv(): string | undefined {
  try {
    return Deno.env.get(CACHE_DIR_ENV) || undefined;
  } catch {
    return undefined; // no --allow-env: the caches stay beside the draft
  }
}

/**
 * The cache directory in force: `cacheDir` when given (a non-empty string), else the environment's.
 * `null` forces "beside the draft" whatever the environment says.
 */
export function resolveCacheDir(cacheDir: string | null | undefined): string | undefined {
  if (cacheDir === null) return undefined;
  return cacheDir || cacheDirFromEnv();
}

/** The files one cache is read from (in order: first match wins) and the one it is written to. */
export interface CacheFiles {
  read: string[];
  write: string;
}

/**
 * The paths of cache `name` (e.g. "profile.json") for a draft folder: `<cacheDir>/<name>` first, then the
 * draft's own `<draftDir>/<name>` (read only); without a cache directory, the draft's file for both.
 */
export function cacheFiles(draftDir: string, name: string, cacheDir?: string | null): CacheFiles {
  const dir = resolveCacheDir(cacheDir);
  const beside = `${draftDir}/${name}`;
  if (!dir) return { read: [beside], write: beside };
  const own = `${dir}/${name}`;
  return { read: own === beside ? [own] : [own, beside], write: own };
}

/**
 * Write `text` to `path` atomically (a crash never leaves half a file), creating its directory (a cache
 * directory need not exist yet).
 */
export async function writeAtomic(path: string, text: string): Promise<void> {
  const slash = path.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}

/** Why a cache file cannot be used. */
export class InvalidCacheFile extends SyntaxError {
  constructor(readonly path: string, readonly reason: string) {
    super(`${path}: ${reason}`);
    this.name = "InvalidCacheFile";
  }
}

/**
 * Read and parse one cache file: undefined when it does not exist; throws {@link InvalidCacheFile}
 * naming the file when it cannot be read or is not JSON (e.g. truncated by a crash or a full disk).
 */
export async function readCacheJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new InvalidCacheFile(path, `cannot be read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InvalidCacheFile(path, `not valid JSON (${(e as Error).message})`);
  }
}
