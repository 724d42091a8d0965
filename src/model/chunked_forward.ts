/**
 * A causal forward run as several smaller forwards, with a turn of the event loop between them so an
 * abort (a client gone, a worker's cancel message) can land and stop it: the CPU and wasm backends'
 * forwards are synchronous, so without this a long prefill could not be stopped until its end.
 *
 * @module
 */

import { ForwardCancelled, type ForwardInput } from "./causal_lm.ts";
import type { KvCache } from "./kv_cache.ts";

/**
 * Run `input` through `run` in chunks of at most `chunk` tokens, each appended to `kv` in order, checking
 * `input.signal` between chunks; returns the logit rows of `input.logitRows` (default: all) in their
 * order, as one forward would. Masked inputs run whole (a tree is one forward). On an abort before a
 * chunk the cache is truncated back and {@link ForwardCancelled} thrown; a failing chunk also leaves the
 * cache as it was. The cost of a cancellable prefill is one macrotask per chunk (~0.1 ms here).
 */
export async function forwardInChunks(
  run: (part: ForwardInput) => Float32Array,
  kv: KvCache,
  input: ForwardInput,
  chunk: number,
  vocabSize: number,
): Promise<Float32Array> {
  const n = input.tokens.length;
  if (!input.signal || input.mask || n <= chunk) return run(input);
  const rows = input.logitRows ? Array.from(input.logitRows) : Array.from({ length: n }, (_, i) => i);
  for (const r of rows) {
    // Checked here, before any chunk runs: a bad row would otherwise fail after earlier chunks ran.
    if (!(Number.isInteger(r) && r >= 0 && r < n)) {
      throw new RangeError(`forward: logit row ${r} outside [0, ${n})`);
    }
  }
  const out = new Float32Array(rows.length * vocabSize);
  const past = kv.length, total = Math.ceil(n / chunk);
  try {
    for (let c = 0; c < total; c++) {
      if (c > 0) await new Promise((resolve) => setTimeout(resolve, 0));
      if (input.signal.aborted) throw new ForwardCancelled(c, total);
      const a = c * chunk, b = Math.min(n, a + chunk);
      const mine = rows.flatMap((r, k) => r >= a && r < b ? [[k, r - a]] : []);
      const logits = run({
        tokens: input.tokens.subarray(a, b),
        positions: input.positions.subarray(a, b),
        logitRows: mine.map(([, local]) => local),
      });
      mine.forEach(([k], j) => out.set(logits.subarray(j * vocabSize, (j + 1) * vocabSize), k * vocabSize));
    }
  } catch (e) {
    kv.truncate(past);
    throw e;
  }
  return out;
}
