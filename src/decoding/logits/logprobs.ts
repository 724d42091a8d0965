/**
 * Log-probabilities of a logits row (OpenAI's `logprobs` / `top_logprobs`): log-softmax at temperature 1
 * of the row as processed (bias, penalties, grammar), i.e. the model's distribution over the next token
 * before temperature and truncation, which is what clients compare across samples.
 *
 * @module
 */

/** log Σ exp(row), stable. */
export function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  if (max === -Infinity) return -Infinity;
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] - max);
  return max + Math.log(s);
}

/** The log-probability of `id` in `row`, and the `top` most likely (id, logprob), most likely first. */
export function logprobsOf(
  row: Float32Array,
  id: number,
  top: number,
): { logprob: number; top: [number, number][] } {
  const lse = logSumExp(row);
  const best: [number, number][] = [];
  if (top > 0) {
    // Keep a small sorted list: top <= 20, so insertion beats sorting the vocabulary.
    for (let i = 0; i < row.length; i++) {
      const v = row[i];
      if (best.length === top && !(v > best[top - 1][1])) continue;
      if (best.length < top) best.push([i, v]);
      else best[top - 1] = [i, v];
      // Bubble up; strict comparison keeps the lower id first on ties.
      for (let j = best.length - 1; j > 0 && best[j - 1][1] < best[j][1]; j--) {
        [best[j - 1], best[j]] = [best[j], best[j - 1]];
      }
    }
  }
  return { logprob: row[id] - lse, top: best.map(([i, v]) => [i, v - lse]) };
}
