/**
 * The GPU KV cache of one sequence: per layer, (capacity, kvDim) keys (RoPE applied) and values in
 * storage buffers, written in place by the forward's K/V projections at slots [length, length + n).
 * Elements are f32, or f16 (half the bytes: element e of a layer in u32 word e / 2, even element in the
 * low half, as WGSL's pack2x16float writes it; rounded once when written, read back as f32).
 * Commit compacts on the GPU (a kv_copy gather/scatter per layer, one submission, no readback).
 *
 * @module
 */

import type { ModelConfig } from "../../model/config.ts";
import { checkCommit, checkTruncate, type KvCache } from "../../model/kv_cache.ts";
import type { Gpu } from "../device.ts";
import * as ops from "../ops.ts";
import type { Binding } from "../recorder.ts";

/** Bytes per KV element of each cache dtype. */
export const KV_BYTES: Readonly<Record<ops.KvDtype, number>> = { f32: 4, f16: 2 };

/** Keys and values of every layer on the GPU. */
export class GpuKvCache implements KvCache {
  /** Per layer: (capacity, kvDim) keys in {@link dtype}. */
  readonly k: GPUBuffer[];
  /** Per layer: (capacity, kvDim) values in {@link dtype}. */
  readonly v: GPUBuffer[];
  /** (maxMoves) u32 source slots of a commit. */
  private readonly slots: GPUBuffer;
  /** (2, maxMoves, kvDim) staging of moved rows in {@link dtype} (a gather then a scatter: sources may overlap targets). */
  private readonly tmp: GPUBuffer;
  private used = 0;

  /**
   * @param maxMoves most slots one commit may move (the model's maxBatch: an accepted path never exceeds
   *   one forward's tokens)
   * @param run records into the model's op context and submits (so counters stay the model's)
   * @param dtype element type ("f16" needs an even kvDim)
   */
  constructor(
    private readonly gpu: Gpu,
    private readonly config: ModelConfig,
    readonly capacity: number,
    private readonly maxMoves: number,
    private readonly run: (label: string, record: (ctx: ops.OpContext) => Promise<void>) => Promise<void>,
    readonly dtype: ops.KvDtype = "f32",
  ) {
    if (dtype === "f16" && config.kvDim % 2 !== 0) {
      throw new RangeError(`kv cache: f16 needs an even kvDim, got ${config.kvDim}`);
    }
    const bytes = capacity * config.kvDim * KV_BYTES[dtype];
    this.k = Array.from({ length: config.nLayers }, (_, l) => gpu.createBuffer(`k cache ${l}`, bytes));
    this.v = Array.from({ length: config.nLayers }, (_, l) => gpu.createBuffer(`v cache ${l}`, bytes));
    this.slots = gpu.createBuffer("kv commit slots", maxMoves * 4);
    this.tmp = gpu.createBuffer("kv tmp", 2 * maxMoves * config.kvDim * KV_BYTES[dtype]);
  }

  /** Bytes of keys and values of all layers at full capacity. */
  get bytes(): number {
    return 2 * this.config.nLayers * this.capacity * this.config.kvDim * KV_BYTES[this.dtype];
  }

  get length(): number {
    return this.used;
  }

  /** Account for `n` slots a recorded forward appends (the backend's forward only). */
  append(n: number): void {
    if (this.used + n > this.capacity) {
      throw new RangeError(`kv cache: ${this.used} + ${n} slots exceed the capacity ${this.capacity}`);
    }
    this.used += n;
  }

  /** Set the length back after a failed forward (the backend's forward only). */
  restore(length: number): void {
    this.used = length;
  }

  /** See {@link KvCache.commit}: moves on the GPU, one submission, no readback. */
  async commit(prefixLen: number, accepted: ArrayLike<number>): Promise<void> {
    checkCommit(prefixLen, accepted, this.used);
    const list = Array.from(accepted);
    const from = list.findIndex((s, i) => s !== prefixLen + i);
    if (from >= 0) {
      // Move the whole tail from the first displaced entry on (keeps the kernel a plain gather/scatter).
      const src = Uint32Array.from(list.slice(from));
      if (src.length > this.maxMoves) {
        throw new RangeError(`commit: ${src.length} slots exceed maxBatch ${this.maxMoves}`);
      }
      this.gpu.device.queue.writeBuffer(this.slots, 0, src);
      await this.run("kv commit", async (ctx) => {
        for (let l = 0; l < this.config.nLayers; l++) {
          await ops.kvCopy(ctx, {
            slots: this.slots,
            k: this.k[l],
            v: this.v[l],
            tmp: this.tmp,
            count: src.length,
            kvDim: this.config.kvDim,
            dstBase: prefixLen + from,
            kvDtype: this.dtype,
          });
        }
      });
    }
    this.used = prefixLen + list.length;
  }

  /**
   * Record (into `ctx`, nothing submitted) a commit whose accepted list was written on the GPU: `slots`
   * holds the count then the source slots (at most `maxCount`), moved to rows dstBase, dstBase + 1, ...
   * The host learns the count with the step's readback and then calls {@link settle}. Only rows at or
   * after dstBase change, so a failure before settle leaves the cache valid at its earlier length.
   */
  async recordCommit(ctx: ops.OpContext, slots: Binding, maxCount: number, dstBase: number): Promise<void> {
    if (maxCount > this.maxMoves) {
      throw new RangeError(`commit: ${maxCount} slots exceed maxBatch ${this.maxMoves}`);
    }
    if (dstBase + maxCount > this.capacity) {
      throw new RangeError(`commit: rows up to ${dstBase + maxCount} exceed the capacity ${this.capacity}`);
    }
    for (let l = 0; l < this.config.nLayers; l++) {
      await ops.kvCopy(ctx, {
        slots,
        k: this.k[l],
        v: this.v[l],
        tmp: this.tmp,
        count: maxCount,
        kvDim: this.config.kvDim,
        dstBase,
        kvDtype: this.dtype,
        indirect: true,
      });
    }
  }

  /** Set the length after a {@link recordCommit} ran: `length` slots are valid (at most the current). */
  settle(length: number): void {
    checkTruncate(length, this.used);
    this.used = length;
  }

  truncate(length: number): void {
    checkTruncate(length, this.used);
    this.used = length;
  }

  /** Free the buffers. */
  destroy(): void {
    for (const b of [...this.k, ...this.v, this.slots, this.tmp]) b.destroy();
  }
}
