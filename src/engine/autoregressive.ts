/**
 * Autoregressive decoding over any {@link CausalLM}: the baseline every speculative method must match
 * token for token at temperature 0, and in distribution when sampling.
 *
 * @module
 */

import { type CausalLM, isDeviceSampler } from "../model/types.ts";
import { sampleToken, type SamplingParams, validateSampling } from "../model/sampling.ts";
import { Rng } from "../util/rng.ts";

/** Options of one generation. */
export interface GenerateOptions {
  maxTokens: number;
  sampling: SamplingParams;
  seed: number;
  /** Token ids that end generation (not emitted). */
  eosIds?: number[];
  /** Aborting stops generation at the next token boundary with finish reason "cancelled". */
  signal?: AbortSignal;
  /**
   * Device backends: tokens decoded per submission (one GPU->CPU sync each). The device samples and
   * feeds each token to the next step itself; tokens past an EOS are computed and dropped. Default 8.
   */
  tokensPerSubmission?: number;
}

/** Why generation ended. */
export type FinishReason = "stop" | "length" | "cancelled";

/** Counters of one generation. */
export interface GenerationStats {
  promptTokens: number;
  completionTokens: number;
  /** Time to process the prompt and produce the first token's logits. */
  prefillMs: number;
  /** Time from the first generated token's logits to the end. */
  decodeMs: number;
  /** completionTokens / (decode time), tokens per second after the first. */
  tokPerS: number;
  /** Target model forward passes (prefill included). */
  targetForwards: number;
  /** Emitted tokens per target forward after prefill (1 for autoregressive decoding). */
  tokensPerStep: number;
  /** GPU->CPU readbacks (each >= ~11 ms in Deno); 0 on the CPU backend. */
  syncs: number;
}

/** One event of a generation stream. */
export type GenerationEvent =
  | { type: "token"; id: number }
  | { type: "done"; finishReason: FinishReason; stats: GenerationStats };

/**
 * Generate up to `maxTokens` tokens after `prompt`, one target forward per token.
 * The model's cache is reset first. Yields each token id, then a final "done" event.
 */
export async function* generateAutoregressive(
  model: CausalLM,
  prompt: ArrayLike<number>,
  opts: GenerateOptions,
): AsyncGenerator<GenerationEvent> {
  validateSampling(opts.sampling);
  if (prompt.length === 0) throw new RangeError("prompt must contain at least one token");
  const ctx = model.config.maxPositions;
  if (prompt.length >= ctx) {
    throw new RangeError(`prompt has ${prompt.length} tokens; the model's context is ${ctx}`);
  }
  const rng = new Rng(opts.seed);
  const eos = new Set(opts.eosIds ?? []);
  const greedy = opts.sampling.temperature === 0;
  model.truncate(0);
  const n = prompt.length;
  const syncs0 = isDeviceSampler(model) ? model.counters.readbacks : 0;
  const t0 = performance.now();
  const promptInput = {
    tokens: Int32Array.from(prompt),
    positions: Int32Array.from({ length: n }, (_, i) => i),
    logitRows: [n - 1],
  };
  let forwards = 1;
  let produced = 0;
  let finish: FinishReason = "length";
  let t1: number;

  if (isDeviceSampler(model)) {
    // Device path: the GPU samples (with uniforms from our seeded RNG, one per token, as on the CPU
    // path) and chains up to `tokensPerSubmission` steps per submission.
    const per = Math.max(1, opts.tokensPerSubmission ?? 8);
    const head = (count: number) =>
      greedy ? { kind: "argmax" as const } : {
        kind: "sample" as const,
        sampling: opts.sampling,
        uniforms: Array.from({ length: count }, () => rng.next()),
      };
    let batch = Array.from(await model.forwardIds(promptInput, head(1)));
    t1 = performance.now();
    outer: while (true) {
      for (const id of batch) {
        if (opts.signal?.aborted) {
          finish = "cancelled";
          break outer;
        }
        if (eos.has(id)) {
          finish = "stop";
          break outer;
        }
        produced++;
        yield { type: "token", id };
        if (produced >= opts.maxTokens) break outer;
      }
      const steps = Math.min(per, opts.maxTokens - produced, ctx - model.cacheLength);
      if (steps <= 0) break;
      batch = Array.from(await model.decodeSteps(batch[batch.length - 1], steps, head(steps)));
      forwards += steps;
    }
  } else {
    let logits = await model.forward(promptInput);
    t1 = performance.now();
    while (produced < opts.maxTokens) {
      if (opts.signal?.aborted) {
        finish = "cancelled";
        break;
      }
      const id = sampleToken(logits, opts.sampling, rng);
      if (eos.has(id)) {
        finish = "stop";
        break;
      }
      produced++;
      yield { type: "token", id };
      const pos = model.cacheLength;
      if (produced >= opts.maxTokens || pos >= ctx) break;
      logits = await model.forward({ tokens: Int32Array.of(id), positions: Int32Array.of(pos) });
      forwards++;
    }
  }
  const t2 = performance.now();
  const decodeMs = t2 - t1;
  yield {
    type: "done",
    finishReason: finish,
    stats: {
      promptTokens: n,
      completionTokens: produced,
      prefillMs: t1 - t0,
      decodeMs,
      tokPerS: decodeMs > 0 ? produced / (decodeMs / 1000) : 0,
      targetForwards: forwards,
      tokensPerStep: forwards > 1 ? (produced - 1) / (forwards - 1) : produced,
      syncs: isDeviceSampler(model) ? model.counters.readbacks - syncs0 : 0,
    },
  };
}
