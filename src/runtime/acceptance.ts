/**
 * The acceptance vector Sequoia plans with, for a model pair at given sampling settings: the stored
 * one, or a fresh measurement on the target's own generations from held-out prompts (then stored).
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
