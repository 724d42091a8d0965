/**
 * The wasm backend's KV cache: per layer, (capacity, kvDim) f32 keys and values in the runtime's
 * memory, where the kernels write a forward's new slots; commit moves the accepted path down.
 *
 * @module
 */

import { checkCommit, checkTruncate, type KvCache } from "../model/kv_cache.ts";
import type { WasmRuntime } from "./runtime.ts";

/** Keys and values of one sequence in a wasm memory. */
export class WasmKvCache implements KvCache {
  /** Per layer: address of the (capacity, kvDim) keys. */
  readonly k: number[] = [];
  /** Per layer: address of the values. */
  readonly v: number[] = [];
  /** Slots in use: [0, length). */
  length = 0;

  constructor(
    private readonly rt: WasmRuntime,
    nLayers: number,
    readonly capacity: number,
    readonly kvDim: number,
  ) {
    for (let l = 0; l < nLayers; l++) {
      this.k.push(rt.alloc(4 * capacity * kvDim));
      this.v.push(rt.alloc(4 * capacity * kvDim));
    }
  }

  /** Keep [0, prefixLen) and `accepted` (moved to prefixLen, prefixLen + 1, ...); drop the rest. */
  commit(prefixLen: number, accepted: ArrayLike<number>): void {
    checkCommit(prefixLen, accepted, this.length);
    const d = this.kvDim;
    for (let l = 0; l < this.k.length; l++) {
      for (const base of [this.k[l], this.v[l]]) {
        const a = this.rt.f32(base, this.capacity * d);
        for (let i = 0; i < accepted.length; i++) {
          const src = accepted[i];
          if (src !== prefixLen + i) a.copyWithin((prefixLen + i) * d, src * d, (src + 1) * d);
        }
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
