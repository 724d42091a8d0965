/**
 * CPU key/value cache: per layer, `capacity` slots of `kvDim` floats for keys and for values.
 * A forward pass appends its new tokens at slots [length, length + n); speculative decoding then keeps
 * only the accepted path with {@link CpuKvCache.commit}.
 *
 * @module
 */

import { checkCommit, checkTruncate, type KvCache } from "../model/kv_cache.ts";

/** Key/value storage for every layer of one sequence. */
export class CpuKvCache implements KvCache {
  /** Per layer: (capacity, kvDim) keys, RoPE applied. */
  readonly k: Float32Array[];
  /** Per layer: (capacity, kvDim) values. */
  readonly v: Float32Array[];
  /** Slots in use: [0, length). */
  length = 0;

  constructor(nLayers: number, readonly capacity: number, readonly kvDim: number) {
    this.k = Array.from({ length: nLayers }, () => new Float32Array(capacity * kvDim));
    this.v = Array.from({ length: nLayers }, () => new Float32Array(capacity * kvDim));
  }

  /**
   * Keep slots [0, prefixLen) and then `accepted` (slot indices >= prefixLen, in path order), moved to
   * contiguous slots prefixLen, prefixLen + 1, ...; drop everything else.
   */
  commit(prefixLen: number, accepted: ArrayLike<number>): void {
    checkCommit(prefixLen, accepted, this.length);
    for (let i = 0; i < accepted.length; i++) {
      const src = accepted[i];
      if (src === prefixLen + i) continue;
      const d = this.kvDim;
      for (let l = 0; l < this.k.length; l++) {
        this.k[l].copyWithin((prefixLen + i) * d, src * d, (src + 1) * d);
        this.v[l].copyWithin((prefixLen + i) * d, src * d, (src + 1) * d);
      }
    }
    this.length = prefixLen + accepted.length;
  }

  /** Drop slots from `length` on. */
  truncate(length: number): void {
    checkTruncate(length, this.length);
    this.length = length;
  }
}
