/**
 * Autoregressive decoding over any {@link CausalLM}: the baseline every speculative method must match
 * token for token at temperature 0, and in distribution when sampling.
 *
 * @module
 */

import { type CausalLM, ForwardCancelled } from "../model/causal_lm.ts";
import { isDeviceSampler, type PendingIds } from "../model/capabilities.ts";
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
   * Device backends: tokens decoded per submission (one GPU->CPU sync each) while streaming. The device
   * samples and feeds each token to the next step itself; tokens past an EOS are computed and dropped.
   * Default 8.
   */
  tokensPerSubmission?: number;
  /**
   * False when nothing consumes a token before the generation ends (a non-streaming request, `--json`):
   * device backends then decode `tokensPerReadback` tokens per submission and read the first token with
   * the first decode batch, so a 128-token generation takes 4 syncs instead of 17. Default true.
   */
  stream?: boolean;
  /** Device backends, not streaming: tokens decoded per submission and readback (default 32). */
  tokensPerReadback?: number;
  /**
   * Device backends: submit each decode batch before the previous one's readback resolves, its first
   * token the last id that batch wrote on the device, so the sync (>= ~11 ms in Deno) overlaps GPU work
   * instead of idling it. Costs at most one batch computed past an EOS / cancel (dropped, the cache
   * truncated back). The output is the same either way (tests compare); false only to measure. Default
   * true.
   */
  pipelined?: boolean;
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
    // A long prompt runs in chunks; a cancel stops it between two (ForwardCancelled, cache dropped).
    signal: opts.signal,
  };
  let forwards = 1;
  let t1: number | undefined;
  const pipe = LogitsPipeline.fromSpec(opts.processing, {
    temperature: opts.sampling.temperature,
    vocabSize: model.config.vocabSize,
    vocab: opts.vocab,
    grammar: opts.grammar,
  });
  const top = opts.logprobs;

  // The device samples only the plain distribution; processors and logprobs need the logits here.
  if (isDeviceSampler(model) && !pipe && top === undefined) {
    // Device path: the GPU samples (with uniforms from our seeded RNG, one per token in token order, as
    // on the CPU path: batch sizes and pipelining do not change which uniform a token gets) and chains
    // up to `size` steps per submission.
    const streaming = opts.stream !== false, pipelined = opts.pipelined !== false;
    const per = Math.max(1, opts.tokensPerSubmission ?? 8);
    const size = Math.min(streaming ? per : Math.max(1, opts.tokensPerReadback ?? 32), model.maxBatch ?? per);
    const head = (count: number) =>
      greedy ? { kind: "argmax" as const } : {
        kind: "sample" as const,
        sampling: opts.sampling,
        uniforms: Array.from({ length: count }, () => rng.next()),
      };
    try {
      let cur: PendingIds = await model.beginForwardIds(promptInput, head(1));
      // Not streaming: the first token stays on the device and is read with the first decode batch, so
      // no read ends the prefill: it is timed to its submission and decode time includes its device time.
      let withInput = false;
      if (!streaming) {
        t1 = performance.now();
        const steps = Math.min(size - 1, opts.maxTokens - 1, ctx - model.kv.length);
        if (steps > 0) {
          cur = await model.beginDecodeSteps(cur, steps, head(steps));
          forwards += steps;
          withInput = true;
        }
      }
      // Submits the batch after `cur` (chained on the device), given how many tokens are decided so far.
      const after = async (decided: number): Promise<PendingIds | undefined> => {
        const steps = Math.min(size, opts.maxTokens - decided, ctx - model.kv.length);
        if (steps <= 0 || opts.signal?.aborted) return undefined;
        forwards += steps;
        return await model.beginDecodeSteps(cur, steps, head(steps));
      };
      while (opts.maxTokens > 0) {
        const read = model.finishIds(cur, withInput); // queued now: before the next batch's submission
        read.catch(() => {}); // awaited below; a rejection while the next batch records is not unhandled
        const ahead = cur.count + (withInput ? 1 : 0);
        let next = pipelined ? await after(sink.produced + ahead) : undefined;
        const batch = await read;
        t1 ??= performance.now(); // streaming: the first token's read ends the prefill
        yield* sink.emit(batch);
        if (sink.finish) break; // a pipelined `next` is dropped with the truncation below
        if (!pipelined) next = await after(sink.produced);
        if (!next) break;
        cur = next;
        withInput = false;
      }
    } catch (e) {
      if (!(e instanceof ForwardCancelled)) throw e;
      sink.finish = "cancelled"; // the prefill stopped between chunks; the cache dropped it
    } finally {
      // Also when the consumer stops early. The cache keeps the prompt and every token drawn but the
      // last (as the host loop leaves it): what the device ran past that (EOS, max_tokens, a cancel, a
      // batch in flight) is dropped; its writes past the new length are never read.
      const drawn = sink.produced + (sink.finish === "stop" ? 1 : 0);
      if (model.kv.length > n) model.kv.truncate(n + Math.max(0, drawn - 1));
    }
    t1 ??= performance.now();
    if (!sink.finish && opts.signal?.aborted) sink.finish = "cancelled";
  } else {
    let logits: Float32Array | undefined;
    try {
      logits = await model.forward(promptInput);
    } catch (e) {
      if (!(e instanceof ForwardCancelled)) throw e;
      sink.finish = "cancelled"; // the prefill stopped between chunks; the cache dropped it
    }
    let state = pipe?.initial(prompt);
    t1 = performance.now();
    while (logits && sink.produced < opts.maxTokens) {
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
  const decodeMs = t2 - t1!;
  const produced = sink.produced;
  yield {
    type: "done",
    finishReason: sink.finish ?? "length",
    stats: {
      promptTokens: n,
      completionTokens: produced,
      prefillMs: t1! - t0,
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
