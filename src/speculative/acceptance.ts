/**
 * Measuring Sequoia's positional acceptance vector for a model pair at given sampling settings: on
 * real text, at every position, draw a star of W children from the draft (without replacement; top-W at
 * temperature 0), run the verifier, and histogram the rank of the accepted child. p_k is the
 * unconditional probability that the k-th drawn child is accepted; p_reject is reported separately and
 * never fed to the planner.
 *
 * @module
 */

import { argmax, probabilities, type SamplingParams } from "../model/sampling.ts";
import type { CausalLM } from "../model/causal_lm.ts";
import type { Rng } from "../util/rng.ts";
import { drawWithoutReplacement, topFinite } from "./draw.ts";
import { verifyGreedy } from "./verify/matching.ts";
import { verifySwor } from "./verify/rejection.ts";

/** A measured acceptance vector. */
export interface AcceptanceVector {
  /** p_1..p_W. */
  acceptance: number[];
  /** Probability that no child is accepted. */
  reject: number;
  /** Star trials made. */
  trials: number;
}

/**
 * Measure over `sequences` (token ids; each chunked to `chunk` tokens per forward).
 * @param onProgress called after each chunk with (done, total) positions
 */
export async function measureAcceptance(
  target: CausalLM,
  draft: CausalLM,
  sequences: number[][],
  opts: {
    sampling: SamplingParams;
    width: number;
    repeats: number;
    rng: Rng;
    chunk?: number;
    /** Positions before this index of each sequence (one index, or one per sequence) are context only. */
    skip?: number | number[];
  },
  onProgress?: (done: number, total: number) => void,
): Promise<AcceptanceVector> {
  const W = opts.width;
  const counts = new Float64Array(W + 1); // [0] = reject
  const chunk = Math.min(opts.chunk ?? 128, target.config.maxPositions, draft.config.maxPositions);
  const V = target.config.vocabSize;
  const skipOf = (k: number) => (Array.isArray(opts.skip) ? opts.skip[k] : opts.skip) ?? 0;
  const total = sequences.reduce((a, s, k) => a + Math.max(0, Math.min(s.length, chunk) - skipOf(k)), 0);
  let done = 0, trials = 0;
  for (const [k, seq] of sequences.entries()) {
    const skip = skipOf(k);
    const ids = seq.slice(0, chunk);
    const input = { tokens: Int32Array.from(ids), positions: Int32Array.from(ids, (_, i) => i) };
    target.kv.truncate(0);
    draft.kv.truncate(0);
    const pl = await target.forward(input);
    const ql = await draft.forward(input);
    for (let i = Math.max(0, skip - 1); i < ids.length; i++) {
      const pr = pl.subarray(i * V, (i + 1) * V), qr = ql.subarray(i * V, (i + 1) * V);
      const greedy = opts.sampling.temperature === 0;
      const P = greedy ? undefined : probabilities(pr, opts.sampling);
      const Q = greedy ? undefined : probabilities(qr, opts.sampling);
      for (let r = 0; r < (greedy ? 1 : opts.repeats); r++) {
        const kids = greedy ? topFinite(qr, W) : drawWithoutReplacement(Q!, W, opts.rng);
        const tree = { tokens: [-1, ...kids], children: [kids.map((_, k) => k + 1), ...kids.map(() => [])] };
        const res = greedy
          ? verifyGreedy(tree, () => argmax(pr))
          : verifySwor(tree, () => P!, () => Q!, opts.rng);
        counts[res.accepted.length ? res.accepted[0] : 0]++;
        trials++;
      }
    }
    done += Math.max(0, ids.length - skip);
    onProgress?.(done, total);
  }
  return {
    acceptance: Array.from(counts.subarray(1), (c) => c / trials),
    reject: counts[0] / trials,
    trials,
  };
}
