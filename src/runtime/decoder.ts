/**
 * Everything a front end (CLI, bench, server) needs to decode with a method: load the draft when the
 * method speculates, find (or measure and store) the acceptance vector Sequoia plans with, and run AR
 * or speculative generation as one event stream.
 *
 * @module
 */

import { generateAutoregressive } from "../decoding/autoregressive.ts";
import type { ModelFolder } from "../model/folder.ts";
import type { SamplingParams } from "../model/sampling.ts";
import type { CausalLM } from "../model/causal_lm.ts";
import { Rng } from "../util/rng.ts";
import { measureAcceptance } from "../speculative/acceptance.ts";
import { loadAcceptance, modelId, saveAcceptance } from "./acceptance_store.ts";
import { generateSpeculative, type SpeculativeEvent } from "../speculative/engine.ts";
import { makeDrafter, type Method, type TreeOptions } from "../speculative/methods.ts";
import type { AdaptiveSequoiaPlan } from "../speculative/adaptive.ts";
import { StaticTreeDrafter } from "../speculative/drafters.ts";

/** Width of the star used to measure acceptance vectors (the planner's maximum fan-out). */
export const ACCEPTANCE_WIDTH = 16;
/** Held-out prompt tokens, and total tokens per sequence, of the acceptance measurement. */
const ACCEPTANCE_PROMPT = 12, ACCEPTANCE_LENGTH = 96;

/** Token sequences for acceptance measurement: the held-out text of the bundled models (never trained on). */
export async function acceptanceTexts(folder: ModelFolder, count = 8, length = 128): Promise<number[][]> {
  const text = await Deno.readTextFile(new URL("../../weights/tiny/heldout.txt", import.meta.url));
  const chapters = text.split("\n\n").filter((c) => c.trim());
  const step = Math.max(1, Math.floor(chapters.length / count));
  return chapters.filter((_, i) => i % step === 0).slice(0, count).map((c) =>
    folder.tokenizer.encode(c).slice(0, length)
  );
}

/**
 * The stored acceptance vector for this pair and sampling, or a fresh measurement (stored beside the
 * draft). Progress goes to `log`.
 */
export async function acceptanceFor(
  pair: { targetFolder: ModelFolder; draftFolder: ModelFolder; target: CausalLM; draft: CausalLM },
  sampling: SamplingParams,
  opts: { remeasure?: boolean; log?: (line: string) => void } = {},
): Promise<number[]> {
  const tId = await modelId(pair.targetFolder), dId = await modelId(pair.draftFolder);
  if (!opts.remeasure) {
    const hit = await loadAcceptance(pair.draftFolder.dir, tId, dId, sampling);
    if (hit) return hit.acceptance;
  }
  const log = opts.log ?? (() => {});
  log(
    `measuring the acceptance vector (T=${sampling.temperature}, top-k ${sampling.topK}, top-p ${sampling.topP}) ...`,
  );
  // Measure on what the target itself generates at these settings (from held-out prompts): speculation
  // drafts against the target's own text, which the draft predicts better than human text, so a vector
  // from teacher-forced human text under-predicts tokens per step (measured: by 11-20%).
  const prompts = await acceptanceTexts(pair.targetFolder, 6, ACCEPTANCE_PROMPT);
  const texts: number[][] = [];
  for (const [i, p] of prompts.entries()) {
    const ids = [...p];
    const gen = generateAutoregressive(pair.target, p, {
      maxTokens: ACCEPTANCE_LENGTH - p.length,
      sampling,
      seed: 77 + i,
    });
    for await (const ev of gen) if (ev.type === "token") ids.push(ev.id);
    texts.push(ids);
    log(`  generated ${i + 1}/${prompts.length} continuations`);
  }
  const v = await measureAcceptance(pair.target, pair.draft, texts, {
    sampling,
    width: ACCEPTANCE_WIDTH,
    repeats: 4,
    rng: new Rng(1234),
    skip: ACCEPTANCE_PROMPT,
  }, (done, total) => log(`  acceptance: ${done}/${total} positions`));
  const e = await saveAcceptance(pair.draftFolder.dir, tId, dId, sampling, v);
  log(
    `  p = [${e.acceptance.slice(0, 8).map((x) => x.toFixed(3)).join(", ")}, ...], reject ${
      e.reject.toFixed(3)
    }`,
  );
  return e.acceptance;
}

/** One generation with `method`: AR over the target, or speculative with the draft. */
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
    /** Sequoia only: a self-re-planning tree (kept across generations by long-lived callers). */
    adaptive?: AdaptiveSequoiaPlan;
    log?: (line: string) => void;
  },
): AsyncGenerator<SpeculativeEvent> {
  if (method === "ar") return generateAutoregressive(target, prompt, o);
  if (!draft) throw new RangeError(`method "${method}" needs a draft model`);
  if (method === "sequoia" && o.adaptive) {
    return adaptiveSequoia(target, draft, prompt, { ...o, adaptive: o.adaptive });
  }
  const { drafter, verifier } = makeDrafter(method, o.tree, o.acceptance);
  return generateSpeculative(target, draft, prompt, { ...o, drafter, verifier });
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
