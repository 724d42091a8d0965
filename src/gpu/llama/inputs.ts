/**
 * A forward's host-side inputs — tokens, RoPE positions, the attention mask, which rows want logits —
 * checked against the model's limits in ONE place and staged into the GPU input buffers. Every forward
 * (plain, chunked prefill, decode steps, the draft and target forwards of a fused tree step) goes
 * through {@link InputBuffers.stage}, so a bad input is refused with the same message wherever it came in.
 *
 * @module
 */

import type { Gpu } from "../device.ts";

/** The limits a forward is checked against. */
export interface InputLimits {
  vocabSize: number;
  /** KV slots: positions and cached + new rows stay below it. */
  capacity: number;
  /** Rows the input buffers hold. */
  maxBatch: number;
}

/** One forward's host inputs; `tokens` omitted when they are already on the GPU (decode steps, tree steps). */
export interface HostInput {
  /** (n) token ids. */
  tokens?: ArrayLike<number>;
  /** (n) RoPE positions. */
  positions: ArrayLike<number>;
  /** (n, past + n) 0/1 visibility, row-major; omitted: causal. */
  mask?: Uint8Array;
  /** New-token rows that want logits; omitted: all. */
  logitRows?: ArrayLike<number>;
}

/** A checked forward: its shape and, when masked, the mask packed as bits. */
export interface CheckedInput {
  /** New rows. */
  n: number;
  /** Cached slots before them. */
  past: number;
  causal: boolean;
  /** u32 words per mask row: ceil((past + n) / 32). */
  maskWords: number;
  /** (n, maskWords) u32: bit j of row i set = column j visible; undefined when causal. */
  maskBits?: Uint32Array<ArrayBuffer>;
  /** Rows whose logits the forward leaves in the logits buffer, in that order. */
  rows: number[];
}

/** Where in the input buffers a staged forward's positions and mask go (several forwards, one submission). */
export interface StageOffsets {
  /** First entry of the positions buffer. */
  posOffset: number;
  /** First u32 word of the mask buffer. */
  maskOffset: number;
}

/** A staged forward: its checked shape and where its inputs sit. */
export type StagedInput = CheckedInput & StageOffsets;

/** Throw unless every id of `tokens` is in [0, vocabSize) (`what` names the caller, `first` the first row). */
export function checkTokens(what: string, tokens: ArrayLike<number>, vocabSize: number, first = 0): void {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!(t >= 0 && t < vocabSize)) {
      throw new RangeError(`${what}: token ${t} at row ${first + i} outside vocabulary [0, ${vocabSize})`);
    }
  }
}

/**
 * Check one forward of `input` after `past` cached slots against `lim` (at most `maxRows` rows: the
 * whole of a chunked prefill may exceed maxBatch) and pack its mask; `what` starts every message.
 */
export function checkInput(
  what: string,
  input: HostInput,
  past: number,
  lim: InputLimits,
  maxRows: number = lim.maxBatch,
): CheckedInput {
  const n = input.tokens?.length ?? input.positions.length;
  if (n === 0) throw new RangeError(`${what}: no tokens`);
  if (n > maxRows) throw new RangeError(`${what}: ${n} tokens exceed maxBatch ${maxRows}`);
  if (input.positions.length !== n) {
    throw new RangeError(`${what}: ${n} tokens but ${input.positions.length} positions`);
  }
  if (past + n > lim.capacity) {
    throw new RangeError(`${what}: ${past} cached + ${n} new tokens exceed the KV capacity ${lim.capacity}`);
  }
  if (input.tokens) checkTokens(what, input.tokens, lim.vocabSize);
  for (let i = 0; i < n; i++) {
    const p = input.positions[i];
    if (!(p >= 0 && p < lim.capacity)) {
      throw new RangeError(`${what}: position ${p} outside [0, ${lim.capacity})`);
    }
  }
  const w = past + n;
  const maskWords = Math.ceil(w / 32);
  let maskBits: Uint32Array<ArrayBuffer> | undefined;
  if (input.mask) {
    if (input.mask.length !== n * w) {
      throw new RangeError(`${what}: mask has ${input.mask.length} entries, expected ${n} x ${w}`);
    }
    maskBits = new Uint32Array(n * maskWords);
    for (let i = 0; i < n; i++) {
      let any = false;
      for (let j = 0; j < w; j++) {
        if (input.mask[i * w + j]) {
          maskBits[i * maskWords + (j >>> 5)] |= 1 << (j & 31);
          any = true;
        }
      }
      // A row that sees nothing would softmax over an empty set (NaN logits).
      if (!any) throw new RangeError(`${what}: mask row ${i} attends to nothing`);
    }
  }
  const rows = input.logitRows ? Array.from(input.logitRows) : Array.from({ length: n }, (_, i) => i);
  for (const r of rows) {
    if (!(r >= 0 && r < n)) throw new RangeError(`${what}: logit row ${r} outside [0, ${n})`);
  }
  return { n, past, causal: !input.mask, maskWords, maskBits, rows };
}

/** The input buffers of one model, sized for maxBatch rows. */
export class InputBuffers {
  /** (maxBatch + 1) u32 token ids of a host-fed forward. */
  readonly tokens: GPUBuffer;
  /** (maxBatch) u32 RoPE positions; several forwards of one submission use disjoint ranges. */
  readonly positions: GPUBuffer;
  /** (maxBatch, ceil(capacity / 32)) u32 words of packed mask rows. */
  readonly mask: GPUBuffer;
  /** (maxBatch + 1) u32 ids written by the heads (decode steps feed ids[s] to step s). */
  readonly ids: GPUBuffer;
  /** (maxBatch) f32 uniforms of the sampling head. */
  readonly uniforms: GPUBuffer;
  private readonly maskCapacity: number;

  constructor(private readonly gpu: Gpu, readonly lim: InputLimits) {
    const B = lim.maxBatch;
    this.maskCapacity = B * Math.ceil(lim.capacity / 32);
    this.tokens = gpu.createBuffer("tokens", (B + 1) * 4);
    this.positions = gpu.createBuffer("positions", B * 4);
    this.mask = gpu.createBuffer("mask", this.maskCapacity * 4);
    this.ids = gpu.createBuffer("ids", (B + 1) * 4);
    this.uniforms = gpu.createBuffer("uniforms", B * 4);
  }

  /**
   * Check `input` (see {@link checkInput}) and write it: tokens (when given) at row 0 of the tokens
   * buffer, positions at `at.posOffset`, the packed mask at word `at.maskOffset`. Nothing is written
   * unless the whole input is valid.
   */
  stage(
    what: string,
    input: HostInput,
    past: number,
    at: StageOffsets = { posOffset: 0, maskOffset: 0 },
  ): StagedInput {
    const c = checkInput(what, input, past, this.lim);
    if (at.posOffset + c.n > this.lim.maxBatch) {
      throw new RangeError(
        `${what}: positions [${at.posOffset}, ${at.posOffset + c.n}) past maxBatch ${this.lim.maxBatch}`,
      );
    }
    if (c.maskBits && at.maskOffset + c.maskBits.length > this.maskCapacity) {
      throw new RangeError(
        `${what}: mask words [${at.maskOffset}, ${
          at.maskOffset + c.maskBits.length
        }) exceed the mask buffer's ${this.maskCapacity}`,
      );
    }
    const q = this.gpu.device.queue;
    if (input.tokens) q.writeBuffer(this.tokens, 0, Uint32Array.from(input.tokens));
    q.writeBuffer(this.positions, at.posOffset * 4, Uint32Array.from(input.positions));
    if (c.maskBits) q.writeBuffer(this.mask, at.maskOffset * 4, c.maskBits);
    return { ...c, ...at };
  }

  /** Write `m` sampling uniforms (one per head row) from row 0. */
  stageUniforms(what: string, uniforms: ArrayLike<number>, m: number): void {
    if (uniforms.length < m) throw new RangeError(`${what}: ${m} rows need ${m} uniforms`);
    this.gpu.device.queue.writeBuffer(this.uniforms, 0, Float32Array.from(uniforms).subarray(0, m));
  }

  /** Free the buffers. */
  destroy(): void {
    for (const b of [this.tokens, this.positions, this.mask, this.ids, this.uniforms]) b.destroy();
  }
}
