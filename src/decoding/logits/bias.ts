/**
 * OpenAI's `logit_bias` as a {@link LogitsProcessor}: a fixed value added to chosen tokens' logits
 * (no state). A bias of -100 effectively bans a token and +100 effectively forces it, as with OpenAI.
 *
 * @module
 */

import type { LogitsProcessor } from "./processor.ts";

/** The processor adding `bias[id]` to logit `id`; throws RangeError naming a bad id or value. */
export function biasProcessor(bias: Record<number, number>, vocabSize: number): LogitsProcessor<null> {
  const ids = Int32Array.from(Object.keys(bias), Number);
  const values = Float32Array.from(Object.values(bias));
  for (let i = 0; i < ids.length; i++) {
    if (!Number.isInteger(ids[i]) || ids[i] < 0 || ids[i] >= vocabSize) {
      throw new RangeError(
        `logit_bias: token id ${Object.keys(bias)[i]} is not in the vocabulary (0..${vocabSize - 1})`,
      );
    }
    if (!(values[i] >= -100 && values[i] <= 100)) {
      throw new RangeError(
        `logit_bias: the bias of token ${ids[i]} must be in [-100, 100], got ${values[i]}`,
      );
    }
  }
  return {
    initial: () => null,
    advance: () => null,
    apply: (logits) => {
      for (let i = 0; i < ids.length; i++) logits[ids[i]] += values[i];
    },
  };
}
