/**
 * One sequence of a {@link MultiSequence} model as a plain {@link CausalLM}: its own cache, and a
 * forward that joins the stream group's next batch ({@link Batcher}). The decoding algorithms run on it
 * unchanged.
 *
 * @module
 */

import type { CausalLM, ForwardInput } from "../model/causal_lm.ts";
import type { ModelConfig } from "../model/config.ts";
import type { KvCache } from "../model/kv_cache.ts";
import type { Batcher } from "./batcher.ts";

/**
 * Most tokens of a causal (prefill) forward that go into one batch while other streams run: a longer
 * prompt joins successive batches a chunk at a time, so the running streams keep emitting a token per
 * batch while it fills its cache, instead of all waiting for one forward over the whole prompt (alone, a
 * stream prefills in one forward). 8: on a CPU a forward costs about the same per token from a few tokens
 * on (SmolLM2 on 2 cores: t(8) = 112 ms, t(64) = 626 ms), so small chunks lose no prefill speed, while a
 * chunk adds t(8 + chunk) rather than t(8) to 8 running streams' inter-token latency (16: their p95 ITL
 * was 6.5x a lone stream's).
 */
export const PREFILL_CHUNK = 8;

/** Sequence `seq` of the batcher's model. */
export class SequenceView implements CausalLM {
  /** The model's config, its context cut to this sequence's cache (a stream holds no more). */
  readonly config: ModelConfig;
  readonly kv: KvCache;

  constructor(private readonly batcher: Batcher, readonly seq: number, private readonly model: CausalLM) {
    this.kv = batcher.model.cacheOf(seq);
    this.config = { ...model.config, maxPositions: Math.min(model.config.maxPositions, this.kv.capacity) };
  }

  get maxBatch(): number | undefined {
    return this.model.maxBatch;
  }

  forward(input: ForwardInput): Promise<Float32Array> {
    const n = input.tokens.length;
    if (input.mask || n <= PREFILL_CHUNK || this.batcher.streams <= 1) {
      return this.batcher.forward(this.seq, input);
    }
    return this.chunked(input);
  }

  /**
   * A causal forward in chunks of {@link PREFILL_CHUNK}, one batch each (a token's logits do not depend
   * on its chunk: the same result as one forward); the logit rows asked for, in their order.
   */
  private async chunked(input: ForwardInput): Promise<Float32Array> {
    const n = input.tokens.length, V = this.config.vocabSize;
    const rows = input.logitRows ?? Array.from({ length: n }, (_, i) => i);
    for (let r = 0; r < rows.length; r++) {
      if (!(Number.isInteger(rows[r]) && rows[r] >= 0 && rows[r] < n)) {
        throw new RangeError(`forward: logit row ${rows[r]} outside [0, ${n})`);
      }
    }
    const out = new Float32Array(rows.length * V);
    for (let o = 0; o < n; o += PREFILL_CHUNK) {
      const e = Math.min(n, o + PREFILL_CHUNK);
      const mine: number[] = []; // indices into rows of this chunk's logit rows
      for (let r = 0; r < rows.length; r++) if (rows[r] >= o && rows[r] < e) mine.push(r);
      const logits = await this.batcher.forward(this.seq, {
        tokens: input.tokens.subarray(o, e),
        positions: input.positions.subarray(o, e),
        logitRows: mine.map((r) => rows[r] - o),
      });
      mine.forEach((r, k) => out.set(logits.subarray(k * V, (k + 1) * V), r * V));
    }
    return out;
  }

  /** Nothing: the model belongs to whoever loaded it, the sequence to its pool. */
  dispose(): void {}
}
