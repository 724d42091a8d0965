/**
 * The KV cache seam: every backend's cache of one sequence holds `length` slots of keys and values per
 * layer; a forward appends its new tokens at [length, length + n); speculative decoding keeps the
 * accepted path with {@link KvCache.commit} and drops the rest. One implementation per backend
 * (cpu/kv_cache.ts, gpu/llama/kv_cache.ts) owns commit and truncate; callers never touch slots.
 *
 * @module
 */

/** Keys and values of one sequence. */
export interface KvCache {
  /** Slots in use: [0, length). */
  readonly length: number;
  /** Most slots the cache holds. */
  readonly capacity: number;
  /**
   * Keep slots [0, prefixLen) and then `accepted` (slot indices >= prefixLen, strictly increasing, in
   * path order), moved to contiguous slots prefixLen, prefixLen + 1, ...; drop everything else.
   */
  commit(prefixLen: number, accepted: ArrayLike<number>): void | Promise<void>;
  /** Drop slots from `length` on. */
  truncate(length: number): void;
}

/** Throw unless `commit(prefixLen, accepted)` is valid for a cache of `length` slots (shared by backends). */
export function checkCommit(prefixLen: number, accepted: ArrayLike<number>, length: number): void {
  if (prefixLen < 0 || prefixLen > length) {
    throw new RangeError(`commit: prefix ${prefixLen} outside [0, ${length}]`);
  }
  for (let i = 0; i < accepted.length; i++) {
    const s = accepted[i];
    if (!Number.isInteger(s) || s < prefixLen + i || s >= length || (i > 0 && s <= accepted[i - 1])) {
      throw new RangeError(`commit: slot ${s} is not an uncommitted slot in [${prefixLen + i}, ${length})`);
    }
  }
}

/** Throw unless `truncate(to)` is valid for a cache of `length` slots. */
export function checkTruncate(to: number, length: number): void {
  if (!Number.isInteger(to) || to < 0 || to > length) {
    throw new RangeError(`truncate: ${to} outside [0, ${length}]`);
  }
}
