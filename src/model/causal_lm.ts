/**
 * The seam between decoding algorithms and model backends (the CPU reference, the WebGPU engine). A
 * model knows tokens, positions, KV slots and an attention mask — never "a tree". What only some
 * backends can do is a capability (capabilities.ts), asked for with a guard, never with `instanceof`.
 *
 * @module
 */

import type { ModelConfig } from "./config.ts";
import type { KvCache } from "./kv_cache.ts";

/** Input of one forward pass over `n` new tokens appended after the `past` cached slots. */
export interface ForwardInput {
  /** (n) token ids. */
  tokens: Int32Array;
  /** (n) RoPE positions of the new tokens. */
  positions: Int32Array;
  /**
   * (n, past + n) row-major, 1 = row i may attend to column j. Columns [0, past) are cached slots,
   * columns past + k are the new tokens. Omitted: causal (everything cached plus new tokens k <= i).
   */
  mask?: Uint8Array;
  /** Which new-token rows need logits; omitted: all rows. */
  logitRows?: ArrayLike<number>;
  /**
   * Aborting stops a forward that runs in chunks (a long prefill) between two chunks: it throws
   * {@link ForwardCancelled} and the cache is as before the forward. A single chunk always completes.
   */
  signal?: AbortSignal;
}

/** A chunked forward stopped by its input's signal; the cache holds nothing of it. */
export class ForwardCancelled extends Error {
  /** @param done chunks that had run (their keys are dropped again) of `total` */
  constructor(readonly done: number, readonly total: number) {
    super(`forward cancelled after ${done} of ${total} chunks`);
    this.name = "ForwardCancelled";
  }
}

/** A causal language model with its own KV cache for one sequence. */
export interface CausalLM {
  readonly config: ModelConfig;
  /** This sequence's KV cache: committed + appended slots, commit and truncate. */
  readonly kv: KvCache;
  /** Most tokens one forward may take (undefined: no limit but the KV capacity). */
  readonly maxBatch?: number;
  /**
   * Run the new tokens, append their keys/values at slots [kv.length, kv.length + n), return logits
   * (rows, vocab) for `logitRows` in that order.
   */
  forward(input: ForwardInput): Promise<Float32Array>;
  /** Release resources. */
  dispose(): void;
}

/** The causal mask for `n` new tokens after `past` cached slots: (n, past + n). */
export function causalMask(past: number, n: number): Uint8Array {
  const w = past + n;
  const m = new Uint8Array(n * w);
  for (let i = 0; i < n; i++) m.fill(1, i * w, i * w + past + i + 1);
  return m;
}
