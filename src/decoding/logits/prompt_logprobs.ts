/**
 * The prompt's own log-probabilities (OpenAI's `echo` with `logprobs`): one teacher-forced pass over the
 * prompt, in chunks of the model's batch limit, reading every row. Costs one extra prefill and
 * (n - 1) x vocab floats of readback; the cache is emptied afterwards (decoding resets it anyway).
 * Raw model rows: the request's processors shape what is generated, not what was given.
 *
 * @module
 */

import type { CausalLM } from "../../model/causal_lm.ts";
import type { PromptEvent } from "../stats.ts";
import { logprobsOf } from "./logprobs.ts";

/** Logprob of prompt token i given tokens 0..i-1 (null at 0), with the `top` most likely per position. */
export async function promptLogprobs(
  model: CausalLM,
  prompt: ArrayLike<number>,
  top: number,
): Promise<PromptEvent> {
  const n = prompt.length;
  const V = model.config.vocabSize;
  const logprobs: (number | null)[] = [null];
  const tops: [number, number][][] = [[]];
  model.kv.truncate(0);
  const chunk = Math.max(1, Math.min(model.maxBatch ?? 256, 256));
  for (let a = 0; a < n - 1; a += chunk) {
    const b = Math.min(n - 1, a + chunk); // rows a..b-1 predict tokens a+1..b
    const rows = await model.forward({
      tokens: Int32Array.from(Array.from(prompt).slice(a, b)),
      positions: Int32Array.from({ length: b - a }, (_, i) => a + i),
    });
    for (let i = a; i < b; i++) {
      const r = logprobsOf(rows.subarray((i - a) * V, (i - a + 1) * V), prompt[i + 1], top);
      logprobs.push(r.logprob);
      tops.push(r.top);
    }
  }
  model.kv.truncate(0);
  return top > 0 ? { type: "prompt", logprobs, top: tops } : { type: "prompt", logprobs };
}
