/**
 * The seam between decoding algorithms and model backends (CPU reference now, WebGPU next). A model
 * knows tokens, positions, KV slots and an attention mask — never "a tree".
 *
 * @module
 */

import type { ModelConfig } from "./config.ts";

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
}

/** A causal language model with its own KV cache for one sequence. */
export interface CausalLM {
  readonly config: ModelConfig;
  /** Committed + appended KV slots. */
  readonly cacheLength: number;
  /** Most tokens one forward may take (undefined: no limit but the KV capacity). */
  readonly maxBatch?: number;
  /**
   * Run the new tokens, append their keys/values at slots [cacheLength, cacheLength + n), return logits
   * (rows, vocab) for `logitRows` in that order.
   */
  forward(input: ForwardInput): Promise<Float32Array>;
  /** Keep slots [0, prefixLen) and the `accepted` slots (moved to follow the prefix); drop the rest. */
  commit(prefixLen: number, accepted: ArrayLike<number>): void | Promise<void>;
  /** Forget every slot from `length` on. */
  truncate(length: number): void;
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

/** What a device-side head computes from each logit row. */
export type IdHead =
  | { kind: "argmax" }
  | { kind: "sample"; sampling: import("./sampling.ts").SamplingParams; uniforms: ArrayLike<number> };

/**
 * A model that can pick tokens on its device, so only ids are read back, and chain several
 * autoregressive steps in one submission (the GPU backend).
 */
export interface DeviceSampler {
  /** Forward, then argmax or sample each logit row on the device. */
  forwardIds(input: ForwardInput, head: IdHead): Promise<Uint32Array>;
  /** Feed `first` at position cacheLength, then decode `steps` tokens in one submission. */
  decodeSteps(first: number, steps: number, head: IdHead): Promise<Uint32Array>;
  /** Submissions and GPU->CPU readbacks (syncs) since load. */
  readonly counters: { submissions: number; readbacks: number };
}

/** True when `m` implements {@link DeviceSampler}. */
export function isDeviceSampler(m: CausalLM): m is CausalLM & DeviceSampler {
  return typeof (m as Partial<DeviceSampler>).decodeSteps === "function";
}
