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
    return this.batcher.forward(this.seq, input);
  }

  /** Nothing: the model belongs to whoever loaded it, the sequence to its pool. */
  dispose(): void {}
}
