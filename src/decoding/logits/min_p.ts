/**
 * min-p truncation as a {@link LogitsProcessor}: keep the tokens whose probability at temperature T is
 * at least `minP` x the most likely token's. Since p_i / p_max = exp((l_i - l_max) / T), that is the
 * logit mask l_i >= l_max + T ln(minP), applied before top-k / top-p (which then see the renormalised
 * survivors). At T = 0 (greedy) it changes nothing: the argmax always survives.
 *
 * @module
 */

import type { LogitsProcessor } from "./processor.ts";

/** The processor for `minP` in (0, 1] at `temperature`; throws RangeError for a bad value. */
export function minPProcessor(minP: number, temperature: number): LogitsProcessor<null> {
  if (!(minP >= 0 && minP <= 1)) throw new RangeError(`min_p must be in [0, 1], got ${minP}`);
  const offset = temperature * Math.log(minP); // <= 0; -Infinity for minP = 0
  return {
    initial: () => null,
    advance: () => null,
    apply: (logits) => {
      if (temperature === 0 || minP === 0) return;
      let max = -Infinity;
      for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
      const floor = max + offset;
      for (let i = 0; i < logits.length; i++) if (logits[i] < floor) logits[i] = -Infinity;
    },
  };
}
