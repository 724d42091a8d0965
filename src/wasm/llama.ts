/**
 * The wasm backend's Llama: the {@link CausalLM} whose forward runs kernels/llama.wasm (128-bit SIMD,
 * GGUF blocks read in place, `threads` threads over one shared memory). Same contract as the CPU
 * reference and the GPU engine: n new tokens at explicit positions, an explicit (tree) mask, logits for
 * the rows asked for; speculation's KV compaction is {@link WasmKvCache.commit}.
 *
 * A forward of more than `chunk` tokens runs in chunks of `chunk` (the scratch is sized for one): a
 * token's result does not depend on which tokens share its chunk (see the kernels' header), so
 * chunking changes nothing but memory. With `sequences` > 1 it holds that many caches
 * ({@link MultiSequence}): a batched forward runs several sequences' tokens as one, each attending to
 * its own cache region, and for the same reason each token's logits equal its solo forward's. A mask
 * row may attend to cached slots and to new tokens up to itself (a tree in topological order), never to
 * a later one.
 *
 * @module
 */

import type { CausalLM, ForwardInput } from "../model/causal_lm.ts";
import {
  checkSequenceParts,
  type MultiSequence,
  type SequenceInput,
  type WeightsLoaded,
} from "../model/capabilities.ts";
import { type ModelConfig, ropeInvFreq } from "../model/config.ts";
import { WasmKvCache } from "./kv_cache.ts";
import { forwardInChunks } from "../model/chunked_forward.ts";
import { CTX_FIELDS, LAYER_FIELDS, SEQ_FIELDS, StructView } from "./layout.ts";
import type { WasmRuntime } from "./runtime.ts";
import { embeddingRow, type WasmMatrix, type WasmWeights } from "./weights.ts";
import type { WeightsDtype } from "../model/weight_types.ts";

/** Addresses of one chunk's inputs, outputs and scratch. */
interface Scratch {
  x: number;
  mask: number;
  /** Seq[sequences]: the chunk's sequences. */
  seqs: number;
  cos: number;
  sin: number;
  logitRows: number;
  logits: number;
}

/** A part of a batched forward, checked: its cache and which of its rows need logits. */
interface Part {
  kv: WasmKvCache;
  /** First slot of its cache's region in the layer caches. */
  base: number;
  input: ForwardInput;
  /** Cached slots before the forward. */
  past: number;
  /** Row i -> its indices in `rows`. */
  wanted: number[][];
  out: Float32Array;
}

/** A Llama model in a wasm runtime, with its own KV cache (or `sequences` of them). */
export class WasmLlama implements CausalLM, MultiSequence, WeightsLoaded {
  /** What `--weights-dtype` the matrices were loaded with ("auto": as stored, or the config's load_as). */
  weightsDtype: WeightsDtype = "auto";
  /** Sequence 0's cache. */
  readonly kv: WasmKvCache;
  private readonly caches: WasmKvCache[];
  /** First slot of each sequence's region in the layer caches. */
  private readonly bases: number[];
  /** Undefined: a forward may take any number of tokens the KV cache has room for (chunked inside). */
  readonly maxBatch = undefined;
  private readonly ctx: StructView<typeof CTX_FIELDS>;
  private readonly s: Scratch;
  private readonly invFreq: Float64Array;
  private disposed = false;

  /**
   * @param rt the runtime holding `w` (one reference is this model's: dispose() releases it)
   * @param capacity KV slots of sequence 0 (the model's own `kv`)
   * @param chunk most tokens per kernel call (scratch is sized for it)
   * @param sequences KV caches held (batched streams); one by default
   * @param streamCapacity KV slots of each sequence after the first (default `capacity`)
   */
  constructor(
    readonly config: ModelConfig,
    private readonly rt: WasmRuntime,
    readonly w: WasmWeights,
    capacity: number,
    readonly chunk = 128,
    readonly sequences = 1,
    streamCapacity = capacity,
  ) {
    const c = config, C = chunk;
    if (c.headDim % 2 !== 0) throw new RangeError(`wasm backend: head_dim ${c.headDim} must be even (RoPE)`);
    if (!Number.isInteger(sequences) || sequences < 1) {
      throw new RangeError(`wasm backend: sequences must be a positive integer, got ${sequences}`);
    }
    const capacities = Array.from({ length: sequences }, (_, s) => s === 0 ? capacity : streamCapacity);
    const kv = WasmKvCache.allocate(rt, c.nLayers, capacities, c.kvDim);
    this.caches = kv.caches;
    this.bases = kv.bases;
    const widest = Math.max(...capacities);
    this.kv = kv.caches[0];
    this.invFreq = ropeInvFreq(c);
    const wide = Math.max(c.hiddenSize, c.intermediateSize, c.qDim), wideBlocks = Math.ceil(wide / 32);
    const f32 = (n: number) => rt.alloc(4 * n);
    this.s = {
      x: f32(C * c.hiddenSize),
      mask: rt.alloc(C * widest),
      seqs: rt.alloc(4 * SEQ_FIELDS.length * sequences),
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
      v.setInt("k_cache", kv.base.k[l]);
      v.setInt("v_cache", kv.base.v[l]);
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
      ["capacity", widest],
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
      ["scores", f32(rt.threads * widest)],
      ["acc", f32(rt.threads * c.headDim)],
      ["seqs", this.s.seqs],
      ["kv_new", f32(2 * C * c.kvDim)],
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

  /** Kernel calls (chunks of at most `chunk` rows) run since load. */
  readonly counters = { chunks: 0 };

  /** See {@link CausalLM.forward}; with a signal, a long causal input yields and may stop between chunks. */
  forward(input: ForwardInput): Promise<Float32Array> {
    try {
      if (input.signal) {
        return forwardInChunks(
          (part) => this.forwardSync(part),
          this.kv,
          input,
          this.chunk,
          this.config.vocabSize,
        );
      }
      return Promise.resolve(this.forwardSync(input));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Synchronous forward; see {@link CausalLM.forward}. */
  forwardSync(input: ForwardInput): Float32Array {
    return this.forwardBatchSync([{ seq: 0, input }])[0];
  }

  /** Sequence `seq`'s cache (sequence 0's is `kv`). */
  cacheOf(seq: number): WasmKvCache {
    const kv = this.caches[seq];
    if (!kv) throw new RangeError(`wasm backend: no sequence ${seq} (the model holds ${this.sequences})`);
    return kv;
  }

  forwardBatch(parts: SequenceInput[]): Promise<Float32Array[]> {
    try {
      return Promise.resolve(this.forwardBatchSync(parts));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Synchronous {@link MultiSequence.forwardBatch}. */
  forwardBatchSync(parts: SequenceInput[]): Float32Array[] {
    if (this.disposed) throw new Error("wasm backend: forward on a disposed model");
    checkSequenceParts(parts);
    const checked = parts.map(({ seq, input }) => this.check(this.cacheOf(seq), this.bases[seq], input));
    // The batch's rows: every part's tokens in order, run in chunks of `chunk` rows.
    const firstRow: number[] = [];
    let total = 0;
    for (const p of checked) {
      firstRow.push(total);
      total += p.input.tokens.length;
    }
    for (let o = 0; o < total; o += this.chunk) {
      this.runChunk(checked, firstRow, o, Math.min(this.chunk, total - o));
      this.counters.chunks++;
    }
    return checked.map((p) => p.out);
  }

  /** Check one part against its cache (nothing runs until every part passed). */
  private check(kv: WasmKvCache, base: number, input: ForwardInput): Part {
    const c = this.config;
    const { tokens, positions, mask } = input;
    const n = tokens.length, past = kv.length, w = past + n;
    if (n === 0) throw new RangeError("forward: no tokens");
    if (positions.length !== n) {
      throw new RangeError(`forward: ${n} tokens but ${positions.length} positions`);
    }
    if (w > kv.capacity) {
      throw new RangeError(`forward: ${past} cached + ${n} new tokens exceed the KV capacity ${kv.capacity}`);
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
    // Which rows need logits, and where each goes in the output.
    const wanted: number[][] = [];
    for (let r = 0; r < rows.length; r++) {
      const i = rows[r];
      if (!Number.isInteger(i) || i < 0 || i >= n) {
        throw new RangeError(`forward: logit row ${i} outside [0, ${n})`);
      }
      (wanted[i] ??= []).push(r);
    }
    // A row sees cached slots and new tokens up to itself: the chunks run in order, so a later token's
    // keys do not exist yet when an earlier row's chunk runs.
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
    return { kv, base, input, past, wanted, out: new Float32Array(rows.length * c.vocabSize) };
  }

  /** Batch rows [o, o + m): the parts' rows in it, each part's cache advanced past them. */
  private runChunk(parts: Part[], firstRow: number[], o: number, m: number): void {
    const c = this.config, V = c.vocabSize, d = c.hiddenSize, half = c.headDim / 2;
    const x = this.rt.f32(this.s.x, m * d);
    const cos = this.rt.f32(this.s.cos, m * half), sin = this.rt.f32(this.s.sin, m * half);
    const local: number[] = [];
    /** Per logit row of the chunk: its part and the part's row. */
    const owners: [Part, number][] = [];
    let seqs = 0, maskAt = this.s.mask;
    for (const [pi, part] of parts.entries()) {
      // This part's rows [a, b) fall in the chunk.
      const a = Math.max(0, o - firstRow[pi]), b = Math.min(part.input.tokens.length, o + m - firstRow[pi]);
      if (a >= b) continue;
      const { tokens, positions, mask } = part.input;
      const n = tokens.length, w = part.past + n, p = part.past + a, wc = p + (b - a);
      const seq = new StructView(this.rt.memory, this.s.seqs + 4 * SEQ_FIELDS.length * seqs++, SEQ_FIELDS);
      seq.setInt("t0", firstRow[pi] + a - o);
      seq.setInt("n", b - a);
      seq.setInt("base", part.base);
      seq.setInt("past", p);
      if (mask) {
        const dst = this.rt.u8(maskAt, (b - a) * wc);
        for (let i = a; i < b; i++) dst.set(mask.subarray(i * w, i * w + wc), (i - a) * wc);
        seq.setInt("mask", maskAt);
        maskAt += (b - a) * wc;
      } else seq.setInt("mask", 0);
      for (let i = a; i < b; i++) {
        const r = firstRow[pi] + i - o;
        embeddingRow(this.w.embed, tokens[i], d, x.subarray(r * d, (r + 1) * d));
        const pos = positions[i];
        for (let j = 0; j < half; j++) {
          const ang = pos * this.invFreq[j];
          cos[r * half + j] = Math.cos(ang);
          sin[r * half + j] = Math.sin(ang);
        }
        if (part.wanted[i]) {
          local.push(r);
          owners.push([part, i]);
        }
      }
    }
    this.rt.i32(this.s.logitRows, local.length).set(local);
    this.ctx.setInt("n", m);
    this.ctx.setInt("n_seqs", seqs);
    this.ctx.setInt("n_logits", local.length);
    this.rt.ensureThreads();
    this.rt.exports.forward(this.rt.pool, this.ctx.base);
    for (const [pi, part] of parts.entries()) {
      const b = Math.min(part.input.tokens.length, o + m - firstRow[pi]);
      if (b > 0) part.kv.length = Math.max(part.kv.length, part.past + b);
    }
    if (local.length) {
      const lg = this.rt.f32(this.s.logits, local.length * V);
      owners.forEach(([part, i], k) => {
        for (const r of part.wanted[i]) part.out.set(lg.subarray(k * V, (k + 1) * V), r * V);
      });
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.rt.release();
  }
}
