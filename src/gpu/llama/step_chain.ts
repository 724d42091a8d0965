/**
 * The device-side state of a chain of fused verified steps (several speculative steps, one readback:
 * multi_step.ts): the buffers, and the CPU twins of the two kernels that carry one step's outcome into
 * the next (shaders/chain_inputs.wgsl, shaders/chain_state.wgsl). The twins are the kernels' oracle in
 * the parity tests, and the runner replays {@link chainStateCpu} on the results it reads back to learn
 * which cache slots stayed visible (what it then compacts), so host and device agree by construction.
 *
 * @module
 */

import type { Gpu } from "../device.ts";
import type { ChainInputsParams, ChainStateParams } from "../ops.ts";

/** "No slot" in tree words and x slots. */
export const NONE = 0xffffffff;

/** The chain's buffers: the root's position, both caches' visibility bitmaps, every step's result. */
export class ChainBuffers {
  /** (4) u32: [0] the next root's position. */
  readonly state: GPUBuffer;
  /** (ceil(capacity / 32)) u32 bitmaps of the target's and the draft's visible slots. */
  readonly visT: GPUBuffer;
  readonly visD: GPUBuffer;
  /** (resultWords) u32: each step's tree_verify words [count, bonus, path...]. */
  readonly results: GPUBuffer;

  constructor(
    gpu: Gpu,
    readonly targetWords: number,
    readonly draftWords: number,
    readonly resultWords: number,
  ) {
    this.state = gpu.createBuffer("chain state", 16);
    this.visT = gpu.createBuffer("chain target visible", targetWords * 4);
    this.visD = gpu.createBuffer("chain draft visible", draftWords * 4);
    this.results = gpu.createBuffer("chain results", resultWords * 4);
  }

  /** True when these buffers are at least as large as asked. */
  fits(targetWords: number, draftWords: number, resultWords: number): boolean {
    return this.targetWords >= targetWords && this.draftWords >= draftWords &&
      this.resultWords >= resultWords;
  }

  /** Free the buffers. */
  destroy(): void {
    for (const b of [this.state, this.visT, this.visD, this.results]) b.destroy();
  }
}

/** (ceil(slots / 32)) words with bits [0, visible) set: a cache whose first `visible` slots are visible. */
export function prefixBitmap(words: number, visible: number): Uint32Array<ArrayBuffer> {
  const v = new Uint32Array(words);
  for (let j = 0; j < visible; j++) v[j >>> 5] |= 1 << (j & 31);
  return v;
}

/** CPU twin of shaders/chain_inputs.wgsl (same arguments as ops.chainInputs, arrays in place of buffers). */
export function chainInputsCpu(
  a: ChainInputsParams & { state: Uint32Array; vis: Uint32Array; positions: Uint32Array; mask: Uint32Array },
): void {
  for (let i = 0; i < a.rows; i++) {
    const at = a.posOffset + i;
    a.positions[at] = (a.state[0] + a.positions[at] - a.shift) >>> 0;
  }
  for (let i = 0; i < a.rows * a.maskWords; i++) a.mask[a.maskOffset + i] |= a.vis[i % a.maskWords];
}

/** CPU twin of shaders/chain_state.wgsl (same arguments as ops.chainState, arrays in place of buffers). */
export function chainStateCpu(
  a: ChainStateParams & {
    out: Uint32Array;
    state: Uint32Array;
    visT: Uint32Array;
    visD: Uint32Array;
    tokens: Uint32Array;
    results: Uint32Array;
  },
): void {
  const show = (vis: Uint32Array, s: number) => vis[s >>> 5] |= 1 << (s & 31);
  const count = a.out[0], bonus = a.out[1];
  for (let i = 0; i <= count; i++) show(a.visT, a.targetBase + i);
  if (a.xSlot >>> 0 !== NONE) show(a.visD, a.xSlot);
  const kept = a.out[a.dOffset];
  const shown = kept === count ? kept : 1 + kept;
  for (let i = 0; i < shown; i++) show(a.visD, a.rootSlot + i);
  const x = count > 0 ? a.out[1 + count] & 0xffffff : a.tokens[0];
  a.tokens[0] = bonus;
  a.tokens[a.n] = x;
  a.tokens[a.n + 1] = bonus;
  a.state[0] = (a.state[0] + 1 + count) >>> 0;
  for (let i = 0; i < 2 + a.maxDepth; i++) a.results[a.rOffset + i] = a.out[i];
}

/** The slots set in `vis` from `from` on, ascending (the rows a compaction keeps after `from`). */
export function visibleSlots(vis: Uint32Array, from: number, to: number): number[] {
  const out: number[] = [];
  for (let s = from; s < to; s++) if (vis[s >>> 5] & (1 << (s & 31))) out.push(s);
  return out;
}
