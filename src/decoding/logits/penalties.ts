/**
 * Repetition, presence and frequency penalties as a {@link LogitsProcessor}.
 *
 * - repetition (Hugging Face's `repetition_penalty`, 0.01 <= r <= 100): every token seen in the prompt or the output
 *   has its logit divided by r when positive and multiplied by r otherwise (r > 1 discourages repeats);
 * - presence / frequency (OpenAI's, over generated tokens only, as vLLM counts them): logit -= presence x
 *   [count > 0] + frequency x count.
 *
 * State: the generated tokens' counts and the set of prompt tokens, persistent by copy-on-advance (one
 * Map copy of the distinct generated tokens per advanced node: cheap next to a forward pass).
 *
 * @module
 */

import type { LogitsProcessor } from "./processor.ts";

/** Penalty state: what was seen. */
export interface PenaltyState {
  /** Distinct prompt token ids (repetition only). */
  readonly prompt: ReadonlySet<number>;
  /** Generated token id -> occurrences. */
  readonly counts: ReadonlyMap<number, number>;
}

/** Penalties of a request; 0 (or 1 for repetition) = off. */
export interface Penalties {
  presence: number;
  frequency: number;
  repetition: number;
}

/** The processor for `pen`; throws RangeError naming the field when a value is out of range. */
export function penaltyProcessor(pen: Penalties): LogitsProcessor<PenaltyState> {
  const { presence, frequency, repetition } = pen;
  if (!(presence >= -2 && presence <= 2)) {
    throw new RangeError(`presence_penalty must be in [-2, 2], got ${presence}`);
  }
  if (!(frequency >= -2 && frequency <= 2)) {
    throw new RangeError(`frequency_penalty must be in [-2, 2], got ${frequency}`);
  }
  // Bounded: a logit divided by a tiny penalty overflows float32 to +Infinity (and the row to NaN).
  if (!(repetition >= 0.01 && repetition <= 100)) {
    throw new RangeError(`repetition_penalty must be in [0.01, 100], got ${repetition}`);
  }
  return {
    initial: (prompt) => ({
      prompt: repetition === 1 ? new Set() : new Set(Array.from(prompt)),
      counts: new Map(),
    }),
    advance: (s, token) => {
      const counts = new Map(s.counts);
      counts.set(token, (counts.get(token) ?? 0) + 1);
      return { prompt: s.prompt, counts };
    },
    apply: (logits, s) => {
      const penalise = (id: number) => {
        if (id < 0 || id >= logits.length) return;
        const l = logits[id];
        logits[id] = l > 0 ? l / repetition : l * repetition;
      };
      if (repetition !== 1) {
        for (const id of s.prompt) if (!s.counts.has(id)) penalise(id);
        for (const id of s.counts.keys()) penalise(id);
      }
      if (presence !== 0 || frequency !== 0) {
        for (const [id, n] of s.counts) {
          if (id >= 0 && id < logits.length) logits[id] -= presence + frequency * n;
        }
      }
    },
  };
}
