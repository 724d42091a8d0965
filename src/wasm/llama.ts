/**
 * The wasm backend's Llama: the {@link CausalLM} whose forward runs kernels/llama.wasm (128-bit SIMD,
 * GGUF blocks read in place, `threads` threads over one shared memory). Same contract as the CPU
 * reference and the GPU engine: n new tokens at explicit positions, an explicit (tree) mask, logits for
 * the rows asked for; speculation's KV compaction is {@link WasmKvCache.commit}.
 *
 * A forward of more than `chunk` tokens runs in chunks of `chunk` (the scratch is sized for one): a
 * token's result does not depend on which tokens share its chunk (see the kernels' header), so
 * chunking changes nothing but memory. A mask row may attend to cached slots and to new tokens up to
 * itself (a tree in topological order), never to a later one.
 *
 * @module
 */

import type { CausalLM, ForwardInput } from "../model/causal_lm.ts";
import { type ModelConfig, ropeInvFreq } from "../model/config.ts";
import { WasmKvCache } from "./kv_cache.ts";
import { CTX_FIELDS, LAYER_FIELDS, StructView } from "./layout.ts";
import type { WasmRuntime } from "./runtime.ts";
import { embeddingRow, type WasmMatrix, type WasmWeights } from "./weights.ts";

/** Addresses of one chunk's inputs, outputs and scratch. */
interface Scratch {
  x: number;
  mask: number;
  cos: number;
  sin: number;
  logitRows: number;
  logits: number;
}

/** A Llama model in a wasm runtime, with its own KV cache. */
export class WasmLlama implements CausalLM {
  readonly kv: WasmKvCache;
  /** Undefined: a forward may take any number of tokens the KV cache has room for (chunked inside). */
  readonly maxBatch = undefined;
  private readonly ctx: StructView<typeof CTX_FIELDS>;
  private readonly s: Scratch;
  private readonly invFreq: Float64Array;
  private disposed = false;

  /**
   * @param rt the runtime holding `w` (one reference is this model's: dispose() releases it)
   * @param capacity KV slots
   * @param chunk most tokens per kernel call (scratch is sized for it)
   */
  constructor(
    readonly config: ModelConfig,
    private readonly rt: WasmRuntime,
    readonly w: WasmWeights,
    capacity: number,
    readonly chunk = 128,
  ) {
    const c = config, C = chunk;
    if (c.headDim % 2 !== 0) throw new RangeError(`wasm backend: head_dim ${c.headDim} must be even (RoPE)`);
    this.kv = new WasmKvCache(rt, c.nLayers, capacity, c.kvDim);
    this.invFreq = ropeInvFreq(c);
    const wide = Math.max(c.hiddenSize, c.intermediateSize, c.qDim), wideBlocks = Math.ceil(wide / 32);
    const f32 = (n: number) => rt.alloc(4 * n);
    this.s = {
      x: f32(C * c.hiddenSize),
      mask: rt.alloc(C * capacity),
      cos: f32(C * c.headDim / 2),
      sin: f32(C * c.headDim / 2),
      logitRows: f32(C),
      logits: f32(C * c.vocabSize),
    };
    // The layer table.
    const layers = rt.alloc(4 * LAYER_FIELDS.length * c.nLayers);
    w.layers.forEach((L, l) => {
      const v = new StructView(rt.memory, layers + 4 * LAYER_FIELDS.length * l, LAYER_FIELDS);
      const mat = (field: "wq" | "wk" | "wv" | "wo" | "gate" | "up" | "down", m: WasmMatrix) => {
        v.setInt(`${field}_type`, m.typeId);
        v.setInt(field, m.ptr);
      };
      mat("wq", L.matrices.wq);
      mat("wk", L.matrices.wk);
      mat("wv", L.matrices.wv);
      mat("wo", L.matrices.wo);
      mat("gate", L.matrices.wGate);
      mat("up", L.matrices.wUp);
      mat("down", L.matrices.wDown);
      v.setInt("attn_norm", L.attnNorm);
      v.setInt("mlp_norm", L.mlpNorm);
      v.setInt("k_cache", this.kv.k[l]);
      v.setInt("v_cache", this.kv.v[l]);
    });
    const ctx = new StructView(rt.memory, rt.alloc(4 * CTX_FIELDS.length), CTX_FIELDS);
    const ints: [typeof CTX_FIELDS[number], number][] = [
      ["d", c.hiddenSize],
      ["n_layers", c.nLayers],
      ["n_heads", c.nHeads],
      ["n_kv_heads", c.nKvHeads],
      ["head_dim", c.headDim],
      ["hidden", c.intermediateSize],
      ["vocab", c.vocabSize],
      ["capacity", capacity],
      ["quantized", w.quantized ? 1 : 0],
      ["lm_head_type", w.lmHead.typeId],
      ["lm_head_data", w.lmHead.ptr],
      ["final_norm", w.finalNorm],
      ["layers", layers],
      ["rope_cos", this.s.cos],
      ["rope_sin", this.s.sin],
      ["logit_rows", this.s.logitRows],
      ["logits", this.s.logits],
      ["x", this.s.x],
      ["xn", f32(C * wide)],
      ["q", f32(C * c.qDim)],
      ["att", f32(C * c.qDim)],
      ["gate", f32(C * c.intermediateSize)],
      ["up", f32(C * c.intermediateSize)],
      ["xq", rt.alloc(2 * C * wide)],
      ["xd", f32(C * wideBlocks)],
      ["xs", f32(C * wideBlocks)],
      ["scores", f32(rt.threads * capacity)],
      ["acc", f32(rt.threads * c.headDim)],
    ];
    for (const [k, val] of ints) ctx.setInt(k, val);
    ctx.setFloat("eps", c.rmsNormEps);
    this.ctx = ctx;
  }

  /** Threads each forward runs on. */
  get threads(): number {
    return this.rt.threads;
  }

  /** Bytes of wasm memory of the runtime this model is in (its weights, KV cache and scratch, and those of
   * the other models sharing the runtime). */
  get memoryBytes(): number {
    return this.rt.used;
  }

  forward(input: ForwardInput): Promise<Float32Array> {
    return Promise.resolve(this.forwardSync(input));
  }

  /** Synchronous forward; see {@link CausalLM.forward}. */
  forwardSync(input: ForwardInput): Float32Array {
    if (this.disposed) throw new Error("wasm backend: forward on a disposed model");
    const c = this.config;
    const { tokens, positions, mask } = input;
    const n = tokens.length, past = this.kv.length, w = past + n;
    if (n === 0) throw new RangeError("forward: no tokens");
    if (positions.length !== n) {
      throw new RangeError(`forward: ${n} tokens but ${positions.length} positions`);
    }
    if (w > this.kv.capacity) {
      throw new RangeError(
        `forward: ${past} cached + ${n} new tokens exceed the KV capacity ${this.kv.capacity}`,
      );
    }
    if (mask && mask.length !== n * w) {
      throw new RangeError(`forward: mask has ${mask.length} entries, expected ${n} x ${w}`);
    }
    for (let i = 0; i < n; i++) {
      if (!(tokens[i] >= 0 && tokens[i] < c.vocabSize)) {
        throw new RangeError(
          `forward: token ${tokens[i]} at row ${i} outside vocabulary [0, ${c.vocabSize})`,
        );
      }
    }
    const rows = input.logitRows ?? Array.from({ length: n }, (_, i) => i);
    // Which chunk-local rows need logits, and where each goes in the output.
    const wanted: number[][] = [];
    for (let r = 0; r < rows.length; r++) {
      const i = rows[r];
      if (!Number.isInteger(i) || i < 0 || i >= n) {
        throw new RangeError(`forward: logit row ${i} outside [0, ${n})`);
      }
      (wanted[i] ??= []).push(r);
    }
    // Every mask row, before any chunk runs (a refused forward leaves the cache as it was). A row sees
    // cached slots and new tokens up to itself: the chunks run in order, so a later token's keys do not
    // exist yet when an earlier row's chunk runs.
    if (mask) {
      for (let i = 0; i < n; i++) {
        const row = mask.subarray(i * w, (i + 1) * w);
        let any = false;
        for (let j = 0; j < w; j++) {
          if (!row[j]) continue;
          if (j > past + i) {
            throw new RangeError(`forward: mask row ${i} attends to column ${j}, a token after it`);
          }
          any = true;
        }
        if (!any) throw new RangeError(`forward: mask row ${i} attends to nothing`);
      }
    }
    const V = c.vocabSize, d = c.hiddenSize, half = c.headDim / 2;
    const out = new Float32Array(rows.length * V);
    for (let o = 0; o < n; o += this.chunk) {
      const m = Math.min(this.chunk, n - o), p = past + o, wc = p + m;
      if (mask) {
        const dst = this.rt.u8(this.s.mask, m * wc);
        for (let i = 0; i < m; i++) dst.set(mask.subarray((o + i) * w, (o + i) * w + wc), i * wc);
      }
      const x = this.rt.f32(this.s.x, m * d);
      const cos = this.rt.f32(this.s.cos, m * half), sin = this.rt.f32(this.s.sin, m * half);
      for (let i = 0; i < m; i++) {
        embeddingRow(this.w.embed, tokens[o + i], d, x.subarray(i * d, (i + 1) * d));
        const pos = positions[o + i];
        for (let j = 0; j < half; j++) {
          const a = pos * this.invFreq[j];
          cos[i * half + j] = Math.cos(a);
          sin[i * half + j] = Math.sin(a);
        }
      }
      const local: number[] = [];
      for (let i = 0; i < m; i++) if (wanted[o + i]) local.push(i);
      this.rt.i32(this.s.logitRows, local.length).set(local);
      this.ctx.setInt("n", m);
      this.ctx.setInt("past", p);
      this.ctx.setInt("n_logits", local.length);
      this.ctx.setInt("mask", mask ? this.s.mask : 0);
      this.rt.ensureThreads();
      this.rt.exports.forward(this.rt.pool, this.ctx.base);
      this.kv.length = wc;
      if (local.length) {
        const lg = this.rt.f32(this.s.logits, local.length * V);
        local.forEach((i, k) => {
          for (const r of wanted[o + i]) out.set(lg.subarray(k * V, (k + 1) * V), r * V);
        });
      }
    }
    return out;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.rt.release();
  }
}
