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
  /** Slots in use: [0, length). */
  length = 0;

  /**
   * @param k per layer: address of this sequence's (capacity, kvDim) keys
   * @param v per layer: address of its values
   */
  constructor(
    private readonly rt: WasmRuntime,
    readonly k: number[],
    readonly v: number[],
    readonly capacity: number,
    readonly kvDim: number,
  ) {}

  /**
   * One cache per entry of `capacities` (slots), allocated as one region per layer (keys, then values):
   * sequence s holds the slots from `bases[s]` (the sum of the capacities before it) on, so a batched
   * forward addresses every sequence from the layer's one base address (see Seq in kernels/llama.c).
   */
  static allocate(
    rt: WasmRuntime,
    nLayers: number,
    capacities: number[],
    kvDim: number,
  ): { base: { k: number[]; v: number[] }; caches: WasmKvCache[]; bases: number[] } {
    const bases: number[] = [];
    const total = capacities.reduce((a, c) => (bases.push(a), a + c), 0);
    const k: number[] = [], v: number[] = [];
    for (let l = 0; l < nLayers; l++) {
      k.push(rt.alloc(4 * total * kvDim));
      v.push(rt.alloc(4 * total * kvDim));
    }
    const at = (a: number, s: number) => a + 4 * bases[s] * kvDim;
    const caches = capacities.map((cap, s) =>
      new WasmKvCache(rt, k.map((a) => at(a, s)), v.map((a) => at(a, s)), cap, kvDim)
    );
    return { base: { k, v }, caches, bases };
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
