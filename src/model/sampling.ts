/**
 * Turning logits into the distribution we sample from (temperature, then top-k, then top-p — the order
 * transformers applies them), and sampling from it with an explicit RNG. Autoregressive decoding and
 * every speculative verifier use exactly these functions, so their target distributions are identical.
 *
 * @module
 */

import type { UniformSource } from "../util/rng.ts";

/** Sampling settings. temperature 0 means greedy (argmax). */
export interface SamplingParams {
  /** >= 0; 0 = greedy. */
  temperature: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK: number;
  /** Keep the smallest most-likely set whose mass reaches topP; 1 = off. */
  topP: number;
}

/** Greedy decoding. */
export const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1 };

/**
 * The defaults, in one place: the command line's sampling (`generate`, `profile`) and the settings the
 * startup profile measures acceptance and SpecExec budgets at (a request's common case: T = 0.7, no
 * truncation). The HTTP routes keep OpenAI's own defaults (temperature 1, top_p 1) on the wire.
 */
export const SAMPLING_DEFAULTS = {
  /** `generate` / `profile` flags: --temperature 0.7 --top-k 0 --top-p 0.95. */
  cli: { temperature: 0.7, topK: 0, topP: 0.95 } as SamplingParams,
  /** What the startup profile plans for: acceptance vector and SpecExec budgets. */
  profile: { temperature: 0.7, topK: 0, topP: 1 } as SamplingParams,
} as const;

/** Check sampling settings; throws RangeError naming the field. */
export function validateSampling(p: SamplingParams): void {
  if (!(p.temperature >= 0) || !Number.isFinite(p.temperature)) {
    throw new RangeError(`temperature must be a finite number >= 0, got ${p.temperature}`);
  }
  if (!Number.isInteger(p.topK) || p.topK < 0) {
    throw new RangeError(`top_k must be an integer >= 0, got ${p.topK}`);
  }
  if (!(p.topP > 0 && p.topP <= 1)) throw new RangeError(`top_p must be in (0, 1], got ${p.topP}`);
}

/** Index of the largest value (first one on ties, like torch.argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/**
 * The probability distribution defined by `logits` under `p`: (vocab) summing to 1.
 * Temperature 0 gives a one-hot at the argmax. Top-k keeps the k largest logits (ties at the k-th value
 * broken by index); top-p sorts descending and keeps the shortest prefix whose mass reaches top_p (the
 * token that crosses the threshold is kept).
 */
export function probabilities(logits: Float32Array, p: SamplingParams): Float64Array {
  const n = logits.length;
  const out = new Float64Array(n);
  if (p.temperature === 0) {
    out[argmax(logits)] = 1;
    return out;
  }
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < n; i++) {
    out[i] = Math.exp((logits[i] - max) / p.temperature);
    sum += out[i];
  }
  for (let i = 0; i < n; i++) out[i] /= sum;
  if ((p.topK > 0 && p.topK < n) || p.topP < 1) {
    // Sort indices by probability, descending; stable on index for reproducible ties.
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => out[b] - out[a] || a - b);
    // Top-p is measured on the distribution renormalised after top-k (transformers' warper order).
    const k = p.topK > 0 ? Math.min(p.topK, n) : n;
    let kmass = 0;
    for (let r = 0; r < k; r++) kmass += out[order[r]];
    let keep = k;
    if (p.topP < 1) {
      let mass = 0;
      for (let r = 0; r < k; r++) {
        mass += out[order[r]] / kmass;
        if (mass >= p.topP) {
          keep = r + 1;
          break;
        }
      }
    }
    let kept = 0;
    for (let r = 0; r < keep; r++) kept += out[order[r]];
    for (let r = keep; r < n; r++) out[order[r]] = 0;
    for (let r = 0; r < keep; r++) out[order[r]] /= kept;
  }
  return out;
}

/** Draw an index from a distribution `probs` (sums to ~1) with one uniform number from `rng`. */
export function sampleFrom(probs: ArrayLike<number>, rng: UniformSource): number {
  const u = rng.next();
  let acc = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] <= 0) continue;
    acc += probs[i];
    last = i;
    if (u < acc) return i;
  }
  return last; // rounding: u landed in the last sliver above the accumulated total
}

/** Pick the next token from logits: argmax when greedy, else a draw from {@link probabilities}. */
export function sampleToken(logits: Float32Array, p: SamplingParams, rng: UniformSource): number {
  return p.temperature === 0 ? argmax(logits) : sampleFrom(probabilities(logits, p), rng);
}
