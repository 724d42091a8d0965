/**
 * Autoregressive decoding over any {@link CausalLM}: the baseline every speculative method must match
 * token for token at temperature 0, and in distribution when sampling.
 *
 * @module
 */

import type { CausalLM } from "../model/causal_lm.ts";
import { isDeviceSampler } from "../model/capabilities.ts";
import { sampleToken, type SamplingParams, validateSampling } from "../model/sampling.ts";
import { Rng } from "../util/rng.ts";
import type { GenerationEvent } from "./stats.ts";
import { TokenSink } from "./token_sink.ts";
import { type GrammarFactory, LogitsPipeline } from "./logits/pipeline.ts";
import type { ProcessingSpec, TokenVocabulary } from "./logits/processor.ts";
import { logprobsOf } from "./logits/logprobs.ts";

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
  /** The request's logit processors (penalties, bias, min_p, grammar); see logits/processor.ts. */
  processing?: ProcessingSpec;
  /** Needed by a grammar: the tokens' bytes. */
  vocab?: TokenVocabulary;
  /** Builds a grammar's processor (needed by a grammar). */
  grammar?: GrammarFactory;
  /** Log-probabilities on each token event: the token's and the `logprobs` most likely (0..20). */
  logprobs?: number;
}

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
  const sink = new TokenSink(opts.maxTokens, new Set(opts.eosIds ?? []), opts.signal);
  const greedy = opts.sampling.temperature === 0;
  model.kv.truncate(0);
  const n = prompt.length;
  const syncs0 = isDeviceSampler(model) ? model.counters.readbacks : 0;
  const t0 = performance.now();
  const promptInput = {
    tokens: Int32Array.from(prompt),
    positions: Int32Array.from({ length: n }, (_, i) => i),
    logitRows: [n - 1],
  };
  let forwards = 1;
  let t1: number;
  const pipe = LogitsPipeline.fromSpec(opts.processing, {
    temperature: opts.sampling.temperature,
    vocabSize: model.config.vocabSize,
    vocab: opts.vocab,
    grammar: opts.grammar,
  });
  const top = opts.logprobs;

  // The device samples only the plain distribution; processors and logprobs need the logits here.
  if (isDeviceSampler(model) && !pipe && top === undefined) {
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
    while (sink.produced < opts.maxTokens) {
      yield* sink.emit(batch);
      if (sink.finish) break;
      const steps = Math.min(per, opts.maxTokens - sink.produced, ctx - model.kv.length);
      if (steps <= 0) break;
      batch = Array.from(await model.decodeSteps(batch[batch.length - 1], steps, head(steps)));
      forwards += steps;
    }
  } else {
    let logits = await model.forward(promptInput);
    let state = pipe?.initial(prompt);
    t1 = performance.now();
    while (sink.produced < opts.maxTokens) {
      if (opts.signal?.aborted) { // before sampling: a cancelled stream draws no more random numbers
        sink.finish = "cancelled";
        break;
      }
      const row = pipe ? pipe.processed(logits, state!) : logits;
      const id = sampleToken(row, opts.sampling, rng);
      yield* sink.emit([id], top === undefined ? undefined : [logprobsOf(row, id, top)]);
      const pos = model.kv.length;
      if (sink.finish || pos >= ctx) break;
      if (pipe) state = pipe.advance(state!, id);
      logits = await model.forward({ tokens: Int32Array.of(id), positions: Int32Array.of(pos) });
      forwards++;
    }
  }
  const t2 = performance.now();
  const decodeMs = t2 - t1;
  const produced = sink.produced;
  yield {
    type: "done",
    finishReason: sink.finish ?? "length",
    stats: {
      promptTokens: n,
      completionTokens: produced,
      prefillMs: t1 - t0,
      decodeMs,
      tokPerS: decodeMs > 0 ? produced / (decodeMs / 1000) : 0,
      // Forwards whose token was emitted: the device may have computed up to tokensPerSubmission - 1
      // tokens past the end (EOS, max_tokens, a cancel) that are dropped; they are not steps of this
      // generation, so AR's tokens per step stays 1.
      targetForwards: Math.min(forwards, Math.max(1, produced)),
      tokensPerStep: produced > 1 ? 1 : produced,
      syncs: isDeviceSampler(model) ? model.counters.readbacks - syncs0 : 0,
    },
  };
}
