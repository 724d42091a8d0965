/**
 * The CPU reference Llama forward pass: n new tokens at explicit positions with an explicit attention
 * mask over [cached slots + new tokens]. Slow and plain; it is the oracle for the GPU engine and for
 * tree verification.
 *
 * @module
 */

import { type ModelConfig, ropeInvFreq } from "../model/config.ts";
import type { CausalLM, ForwardInput } from "../model/causal_lm.ts";
import { checkSequenceParts, type MultiSequence, type SequenceInput } from "../model/capabilities.ts";
import type { LlamaWeightsF32 } from "../model/weights.ts";
import { CpuKvCache } from "./kv_cache.ts";
import { forwardInChunks } from "../model/chunked_forward.ts";
import { attention, matVec, rmsNorm, rope, swiGlu } from "./ops.ts";

/**
 * Tokens per forward of a cancellable long prefill on the CPU (the reference computes every token alone,
 * so chunks change no result; 64 keeps a cancel within one chunk of ~64 tokens' work).
 */
export const CPU_CHUNK = 64;

/**
 * A Llama model running on the CPU in f32, with its own KV cache (or `sequences` of them: a batched
 * forward runs each part on its own cache; every token is computed alone anyway, so batching changes
 * no result here and saves nothing: this backend is the oracle).
 */
export class CpuLlama implements CausalLM, MultiSequence {
  /** Sequence 0's cache. */
  readonly kv: CpuKvCache;
  private readonly caches: CpuKvCache[];
  private readonly invFreq: Float64Array;

  /**
   * @param config model hyper-parameters
   * @param w f32 weights
   * @param capacity KV slots of sequence 0 (defaults to the model's context length)
   * @param sequences KV caches held (batched streams); one by default
   * @param streamCapacity KV slots of each further sequence (default `capacity`)
   */
  constructor(
    readonly config: ModelConfig,
    readonly w: LlamaWeightsF32,
    capacity = config.maxPositions,
    readonly sequences = 1,
    streamCapacity = capacity,
  ) {
    if (!Number.isInteger(sequences) || sequences < 1) {
      throw new RangeError(`cpu backend: sequences must be a positive integer, got ${sequences}`);
    }
    this.caches = Array.from(
      { length: sequences },
      (_, s) => new CpuKvCache(config.nLayers, s === 0 ? capacity : streamCapacity, config.kvDim),
    );
    this.kv = this.caches[0];
    this.invFreq = ropeInvFreq(config);
  }

  /** Forward passes run since load (a cancellable long prefill runs as several, see {@link CPU_CHUNK}). */
  readonly counters = { forwards: 0 };

  /** See {@link CausalLM.forward}; with a signal, a long causal input yields and may stop between chunks. */
  forward(input: ForwardInput): Promise<Float32Array> {
    try {
      if (input.signal) {
        return forwardInChunks(
          (part) => this.forwardSync(part),
          this.kv,
          input,
          CPU_CHUNK,
          this.config.vocabSize,
        );
      }
      return Promise.resolve(this.forwardSync(input));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Sequence `seq`'s cache (sequence 0's is `kv`). */
  cacheOf(seq: number): CpuKvCache {
    const kv = this.caches[seq];
    if (!kv) throw new RangeError(`cpu backend: no sequence ${seq} (the model holds ${this.sequences})`);
    return kv;
  }

  forwardBatch(parts: SequenceInput[]): Promise<Float32Array[]> {
    try {
      checkSequenceParts(parts);
      const runs = parts.map(({ seq, input }) => this.prepare(input, this.cacheOf(seq)));
      return Promise.resolve(runs.map((run) => run()));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Synchronous forward; see {@link CausalLM.forward}. */
  forwardSync(input: ForwardInput): Float32Array {
    return this.prepare(input, this.kv)();
  }

  /** Check `input` against `kv` (throws before anything changes), then return the forward itself. */
  private prepare(input: ForwardInput, kv: CpuKvCache): () => Float32Array {
    const c = this.config;
    const { tokens, positions } = input;
    const n = tokens.length;
    const past = kv.length;
    if (positions.length !== n) {
      throw new RangeError(`forward: ${n} tokens but ${positions.length} positions`);
    }
    if (past + n > kv.capacity) {
      throw new RangeError(
        `forward: ${past} cached + ${n} new tokens exceed the KV capacity ${kv.capacity}`,
      );
    }
    const w = past + n;
    if (input.mask && input.mask.length !== n * w) {
      throw new RangeError(`forward: mask has ${input.mask.length} entries, expected ${n} x ${w}`);
    }
    // Visible slots of each new row: from the mask, or causal.
    const visible: Int32Array[] = [];
    for (let i = 0; i < n; i++) {
      const idx: number[] = [];
      const limit = input.mask ? w : past + i + 1;
      for (let j = 0; j < limit; j++) if (!input.mask || input.mask[i * w + j]) idx.push(j);
      if (idx.length === 0) throw new RangeError(`forward: mask row ${i} attends to nothing`);
      visible.push(Int32Array.from(idx));
    }
    for (let i = 0; i < n; i++) {
      if (tokens[i] < 0 || tokens[i] >= c.vocabSize) {
        throw new RangeError(
          `forward: token ${tokens[i]} at row ${i} outside vocabulary [0, ${c.vocabSize})`,
        );
      }
    }
    const rows = input.logitRows ?? Array.from({ length: n }, (_, i) => i);
    for (let r = 0; r < rows.length; r++) {
      if (!(rows[r] >= 0 && rows[r] < n)) {
        throw new RangeError(`forward: logit row ${rows[r]} outside [0, ${n})`);
      }
    }
    return () => this.run(input, kv, visible, rows);
  }

  /** The forward of checked `input` on `kv`. */
  private run(
    input: ForwardInput,
    kv: CpuKvCache,
    visible: Int32Array[],
    rows: ArrayLike<number>,
  ): Float32Array {
    const c = this.config;
    const { tokens, positions } = input;
    const n = tokens.length, past = kv.length, d = c.hiddenSize;

    // x: (n, d) residual stream
    const x = new Float32Array(n * d);
    for (let i = 0; i < n; i++) x.set(this.w.embed.subarray(tokens[i] * d, (tokens[i] + 1) * d), i * d);
    const xn = new Float32Array(d);
    const att = new Float32Array(c.qDim);
    const o = new Float32Array(d);
    const gate = new Float32Array(c.intermediateSize);
    const up = new Float32Array(c.intermediateSize);
    const qs = new Float32Array(n * c.qDim); // (n, qDim) queries of this layer

    for (let l = 0; l < c.nLayers; l++) {
      const L = this.w.layers[l];
      const kc = kv.k[l], vc = kv.v[l];
      for (let i = 0; i < n; i++) {
        const xi = x.subarray(i * d, (i + 1) * d);
        rmsNorm(xi, L.attnNorm, c.rmsNormEps, xn);
        const qi = qs.subarray(i * c.qDim, (i + 1) * c.qDim);
        matVec(L.wq, xn, c.qDim, d, qi);
        const slot = past + i;
        const ki = kc.subarray(slot * c.kvDim, (slot + 1) * c.kvDim);
        matVec(L.wk, xn, c.kvDim, d, ki);
        matVec(L.wv, xn, c.kvDim, d, vc.subarray(slot * c.kvDim, (slot + 1) * c.kvDim));
        rope(qi, c.nHeads, c.headDim, positions[i], this.invFreq);
        rope(ki, c.nKvHeads, c.headDim, positions[i], this.invFreq);
      }
      // Attention after all keys of this layer are written: tree rows may see earlier new tokens.
      for (let i = 0; i < n; i++) {
        const qi = qs.subarray(i * c.qDim, (i + 1) * c.qDim);
        attention(qi, kc, vc, visible[i], c, att);
        matVec(L.wo, att, d, c.qDim, o);
        for (let k = 0; k < d; k++) x[i * d + k] += o[k];
        const xi = x.subarray(i * d, (i + 1) * d);
        rmsNorm(xi, L.mlpNorm, c.rmsNormEps, xn);
        matVec(L.wGate, xn, c.intermediateSize, d, gate);
        matVec(L.wUp, xn, c.intermediateSize, d, up);
        swiGlu(gate, up, gate);
        matVec(L.wDown, gate, d, c.intermediateSize, o);
        for (let k = 0; k < d; k++) x[i * d + k] += o[k];
      }
    }
    kv.length = past + n;
    this.counters.forwards++;

    const logits = new Float32Array(rows.length * c.vocabSize);
    for (let r = 0; r < rows.length; r++) {
      const i = rows[r];
      rmsNorm(x.subarray(i * d, (i + 1) * d), this.w.finalNorm, c.rmsNormEps, xn);
      matVec(this.w.lmHead, xn, c.vocabSize, d, logits.subarray(r * c.vocabSize, (r + 1) * c.vocabSize));
    }
    return logits;
  }

  dispose(): void {}
}
