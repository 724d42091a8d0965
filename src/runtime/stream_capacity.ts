/**
 * The KV memory of batched streams (`serve --max-batch N`): the target and the draft each hold N + 1
 * sequences: sequence 0 for the runtime's own measurements (the models' context, as without batching)
 * and one per stream of `streamCapacity` slots, all under one budget. A slot costs 2 x layers x kv_dim
 * f32 per model; a stream holds the models' context or what the budget leaves after sequence 0, whichever
 * is smaller, and a stream's prompt + max_tokens must fit in it (the server refuses a longer request
 * with 400, naming the limit).
 *
 * @module
 */

import type { ModelConfig } from "../model/config.ts";
import { formatBytes } from "../util/bytes.ts";

/** Default KV budget of batched streams: 2 GiB (the wasm backend's memory is at most 4 GiB in all). */
export const DEFAULT_STREAM_KV_BYTES = 2 * 1024 ** 3;

/** Fewest slots a stream may hold: below this a budget is refused as a mistake. */
export const MIN_STREAM_SLOTS = 64;

/** How many sequences to load and how many slots each holds. */
export interface StreamCapacity {
  /** Sequences per model: streams + 1. */
  sequences: number;
  /** KV slots of each stream's sequence (1 ..); sequence 0 holds the models' context. */
  streamCapacity: number;
  /** Bytes of one slot, target and draft together. */
  slotBytes: number;
}

/** Bytes of one KV slot of `c` (keys and values of every layer, f32). */
export function kvSlotBytes(c: ModelConfig): number {
  return 2 * c.nLayers * c.kvDim * 4;
}

/**
 * Sequences and per-sequence capacity for `streams` batched streams of `target` (and `draft`) under
 * `kvBytes`; throws a RangeError naming the budget, the per-slot cost and what to change when it leaves
 * fewer than {@link MIN_STREAM_SLOTS} slots per stream.
 */
export function streamCapacity(
  target: ModelConfig,
  draft: ModelConfig | undefined,
  streams: number,
  kvBytes = DEFAULT_STREAM_KV_BYTES,
): StreamCapacity {
  if (!Number.isInteger(streams) || streams < 1) {
    throw new RangeError(`--max-batch must be a positive integer, got ${streams}`);
  }
  const sequences = streams + 1;
  const slotBytes = kvSlotBytes(target) + (draft ? kvSlotBytes(draft) : 0);
  const context = Math.min(target.maxPositions, draft?.maxPositions ?? Infinity);
  const fits = Math.max(0, Math.floor((kvBytes - context * slotBytes) / (streams * slotBytes)));
  if (fits < Math.min(MIN_STREAM_SLOTS, context)) {
    throw new RangeError(
      `--max-batch ${streams}: a KV cache per stream of ${formatBytes(slotBytes)} per token, after the ` +
        `${context}-token cache the server measures on, leaves ${fits} tokens per stream under the KV ` +
        `budget ${formatBytes(kvBytes)} (--kv-budget); lower --max-batch or raise --kv-budget`,
    );
  }
  return { sequences, streamCapacity: Math.min(context, fits), slotBytes };
}
