/**
 * One generation with a method by name: autoregressive over the target, speculative with the draft
 * (the method's drafter and its exact verifier), or lookup (speculative over the target alone, trees
 * copied from the text); Sequoia with a self-re-planning tree when the caller keeps one across
 * generations.
 *
 * @module
 */

import { generateAutoregressive } from "../decoding/autoregressive.ts";
import type { SamplingParams } from "../model/sampling.ts";
import type { CausalLM } from "../model/causal_lm.ts";
import { generateSpeculative, type SpeculativeEvent } from "./engine.ts";
import { makeDrafter, type Method, needsDraftModel, type TreeOptions } from "./methods.ts";
import type { AdaptiveSequoiaPlan } from "./adaptive.ts";
import { StaticTreeDrafter } from "./drafters/static_tree.ts";
import type { GrammarFactory } from "../decoding/logits/pipeline.ts";
import type { ProcessingSpec, TokenVocabulary } from "../decoding/logits/processor.ts";
import { promptLogprobs } from "../decoding/logits/prompt_logprobs.ts";

/**
 * One generation with `method`: AR over the target, speculative with the draft, or lookup (which never
 * uses `draft`, loaded or not).
 */
export function decode(
  method: Method,
  target: CausalLM,
  draft: CausalLM | undefined,
  prompt: number[],
  o: {
    tree: TreeOptions;
    acceptance?: number[];
    maxTokens: number;
    sampling: SamplingParams;
    seed: number;
    eosIds: number[];
    signal?: AbortSignal;
    tokensPerSubmission?: number;
    /** False when no token is consumed before the end (AR: longer device batches; see GenerateOptions). */
    stream?: boolean;
    /** AR on a device, not streaming: tokens per submission and readback (default 32). */
    tokensPerReadback?: number;
    /** Fused speculative steps on a device: most steps chained (default 8; see SpeculativeOptions). */
    stepsPerReadback?: number;
    /** Streaming: chain fused steps too, each read overlapping the next step (default false). */
    streamChain?: boolean;
    /** AR on a device: overlap each readback with the next batch (default true; false only to measure). */
    pipelined?: boolean;
    /** Sequoia only: a self-re-planning tree (kept across generations by long-lived callers). */
    adaptive?: AdaptiveSequoiaPlan;
    log?: (line: string) => void;
    /** The request's logit processors (penalties, bias, min-p, grammar). */
    processing?: ProcessingSpec;
    /** Needed by a grammar: the tokens' bytes. */
    vocab?: TokenVocabulary;
    /** Builds a grammar's processor. */
    grammar?: GrammarFactory;
    /** Log-probabilities on every token event (the token's and this many most likely). */
    logprobs?: number;
    /** First emit the prompt's log-probabilities (with `logprobs`' top count). */
    promptLogprobs?: boolean;
    /** Speculative methods: most tree nodes of each next step (see SpeculativeOptions.nodeLimit). */
    nodeLimit?: () => number;
  },
): AsyncGenerator<SpeculativeEvent> {
  if (o.promptLogprobs) return withPromptLogprobs(method, target, draft, prompt, o);
  if (method === "ar") return generateAutoregressive(target, prompt, o);
  if (!draft && needsDraftModel(method)) throw new RangeError(`method "${method}" needs a draft model`);
  if (method === "sequoia" && o.adaptive && draft) {
    return adaptiveSequoia(target, draft, prompt, { ...o, adaptive: o.adaptive });
  }
  const { drafter, verifier } = makeDrafter(method, o.tree, o.acceptance);
  return generateSpeculative(target, draft, prompt, { ...o, drafter, verifier });
}

/** The prompt's logprobs (one teacher-forced pass), then the generation. */
async function* withPromptLogprobs(
  method: Method,
  target: CausalLM,
  draft: CausalLM | undefined,
  prompt: number[],
  o: Parameters<typeof decode>[4],
): AsyncGenerator<SpeculativeEvent> {
  yield await promptLogprobs(target, prompt, o.logprobs ?? 0);
  yield* decode(method, target, draft, prompt, { ...o, promptLogprobs: false });
}

/** Sequoia whose tree follows the online acceptance estimate (re-planned between steps, logged). */
async function* adaptiveSequoia(
  target: CausalLM,
  draft: CausalLM,
  prompt: number[],
  o: Parameters<typeof decode>[4] & { adaptive: AdaptiveSequoiaPlan },
): AsyncGenerator<SpeculativeEvent> {
  const drafter = new StaticTreeDrafter("sequoia", o.adaptive.shape, "swor");
  for await (const ev of generateSpeculative(target, draft, prompt, { ...o, drafter, verifier: "swor" })) {
    if (ev.type === "step" && ev.visits) {
      const r = o.adaptive.observe(ev.visits);
      if (r) {
        drafter.setShape(r.shape);
        o.log?.(
          `sequoia: acceptance drifted by ${r.distance.toFixed(2)} (p1 ${r.from[0].toFixed(2)} -> ${
            r.to[0].toFixed(2)
          }); ` +
            `re-planned the ${o.adaptive.n}-node tree`,
        );
      }
    }
    yield ev;
  }
}
