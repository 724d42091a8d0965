/**
 * The acceptance vector Sequoia plans with, for a model pair at given sampling settings: the stored
 * one, or a fresh measurement on the target's own generations from held-out prompts (then stored; see
 * cache_dir.ts for where).
 *
 * @module
 */

import { generateAutoregressive } from "../decoding/autoregressive.ts";
import type { ModelFolder } from "../model/folder.ts";
import type { SamplingParams } from "../model/sampling.ts";
import type { CausalLM } from "../model/causal_lm.ts";
import { Rng } from "../util/rng.ts";
import { measureAcceptance } from "../speculative/acceptance.ts";
import { acceptanceFiles, loadAcceptance, modelId, saveAcceptance } from "./acceptance_store.ts";
import type { InvalidCacheFile } from "./cache_dir.ts";
import { weightsDtypeOf } from "../model/capabilities.ts";
import { weightsSuffix } from "../model/weight_types.ts";

/** Width of the star used to measure acceptance vectors (the planner's maximum fan-out). */
export const ACCEPTANCE_WIDTH = 16;
/** Held-out prompt tokens, and total tokens per sequence, of the acceptance measurement. */
const ACCEPTANCE_PROMPT = 12, ACCEPTANCE_LENGTH = 96;
// With a draft's whole held-out prompts: up to 160 prompt tokens (their end), then 96 generated ones.
const DRAFT_PROMPT = 160, DRAFT_GENERATED = 96;

/** Where held-out text for a model comes from, and its passages. */
export interface HeldoutSource {
  /** The file read. */
  path: string;
  /**
   * "model": the model's own held-out text; "draft": the held-out prompts a draft trained for this target
   * ships (whole prompts, chat-formatted ones with their markup); "generic": the bundled prompt set.
   */
  kind: "model" | "draft" | "generic";
  /** Passages in file order. */
  passages: string[];
}

/** The bundled generic prompts (bench/prompts.json, also embedded by `deno task compile`). */
const GENERIC_PROMPTS = new URL("../../bench/prompts.json", import.meta.url);

/**
 * Held-out text that belongs to `dir`'s model: `heldout.txt` in the model folder or beside it (the
 * bundled pair has weights/tiny/heldout.txt, text the tiny models never trained on), chapters separated
 * by blank lines; else the generic prompt set. Never another model's held-out text: a model's acceptance
 * is measured on text like its own training distribution, or on neutral prompts. `draftDir`: a draft
 * trained for this target may ship the held-out text of its distillation (weights/smollm2-draft/
 * heldout.txt: chat-formatted and plain prompts it never trained on); that comes first.
 */
export async function heldoutSource(dir: string, draftDir?: string): Promise<HeldoutSource> {
  const folder = dir.replace(/\/+$/, "");
  const parent = folder.includes("/") ? folder.slice(0, folder.lastIndexOf("/")) || "/" : ".";
  const first = draftDir === undefined ? [] : [`${draftDir.replace(/\/+$/, "")}/heldout.txt`];
  for (const path of [...first, `${folder}/heldout.txt`, `${parent}/heldout.txt`]) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      continue;
    }
    // A draft's file holds whole prompts (chat ones span blank lines): separated by a line "<|endofprompt|>".
    const isDraft = path === first[0];
    const passages = (isDraft ? text.split("\n<|endofprompt|>\n") : text.split("\n\n")).filter((c) =>
      c.trim()
    );
    if (passages.length) return { path, kind: isDraft ? "draft" : "model", passages };
  }
  const j = JSON.parse(await Deno.readTextFile(GENERIC_PROMPTS)) as { prompts?: unknown };
  const passages = Array.isArray(j.prompts)
    ? j.prompts.filter((p): p is string => typeof p === "string")
    : [];
  if (!passages.length) throw new SyntaxError(`${GENERIC_PROMPTS.pathname}: no "prompts" list of strings`);
  return { path: GENERIC_PROMPTS.pathname, kind: "generic", passages };
}

/**
 * Token sequences for acceptance measurement: `count` passages spread evenly over the model's held-out
 * text (see {@link heldoutSource}; `draftDir`'s own first), each cut to `length` tokens. `log` says which
 * source was used.
 */
export async function acceptanceTexts(
  folder: ModelFolder,
  count = 8,
  length = 128,
  log?: (line: string) => void,
  draftDir?: string,
): Promise<number[][]> {
  const src = await heldoutSource(folder.dir, draftDir);
  logSource(src, folder.dir, log);
  return heldoutTokens(src, folder, count, length);
}

/** Says which held-out source {@link heldoutSource} found for the model in `dir`. */
function logSource(src: HeldoutSource, dir: string, log?: (line: string) => void): void {
  log?.(
    src.kind === "model"
      ? `held-out text: ${src.path}`
      : src.kind === "draft"
      ? `held-out text: ${src.path} (the draft's held-out prompts, whole)`
      : `held-out text: no heldout.txt in or beside ${dir}; using the generic prompts ${src.path}`,
  );
}

/** `count` of `src`'s passages, spread evenly, as `folder`'s token ids cut to `length`. */
function heldoutTokens(src: HeldoutSource, folder: ModelFolder, count: number, length: number): number[][] {
  const step = Math.max(1, Math.floor(src.passages.length / count));
  // A draft's whole prompts keep their end (where the answer starts); passages their beginning.
  return src.passages.filter((_, i) => i % step === 0).slice(0, count).map((c) => {
    const ids = folder.tokenizer.encode(c);
    return src.kind === "draft" ? ids.slice(-length) : ids.slice(0, length);
  });
}

/** Options of {@link loadOrMeasureAcceptance}. */
export interface AcceptanceOptions {
  /** Measure even when a stored vector exists. */
  remeasure?: boolean;
  /** Progress and warnings. */
  log?: (line: string) => void;
  /** Cache directory (default `$SPECDEC_CACHE_DIR`; null: beside the draft). See cache_dir.ts. */
  cacheDir?: string | null;
}

/** An acceptance vector and where it lives. */
export interface AcceptanceResult {
  acceptance: number[];
  /** True when read from a store, false when measured now. */
  cached: boolean;
  /** The file it was read from or stored in; undefined when a fresh vector could not be stored. */
  path?: string;
}

/**
 * The stored acceptance vector for this pair and sampling, or a fresh measurement (stored in the cache
 * directory when one is in force, else beside the draft). An unusable store (e.g. a truncated
 * acceptance.json) is named in a warning and measured around, and the fresh file replaces it.
 * Progress and warnings go to `log`.
 */
export async function loadOrMeasureAcceptance(
  pair: { targetFolder: ModelFolder; draftFolder: ModelFolder; target: CausalLM; draft: CausalLM },
  sampling: SamplingParams,
  opts: AcceptanceOptions = {},
): Promise<AcceptanceResult> {
  const log = opts.log ?? (() => {});
  const tId = await modelId(pair.targetFolder) + weightsSuffix(weightsDtypeOf(pair.target));
  const dId = await modelId(pair.draftFolder);
  const files = acceptanceFiles(pair.draftFolder.dir, opts.cacheDir);
  if (!opts.remeasure) {
    const invalid: InvalidCacheFile[] = [];
    const hit = await loadAcceptance(pair.draftFolder.dir, tId, dId, sampling, {
      cacheDir: opts.cacheDir,
      onInvalid: (e) => invalid.push(e),
    });
    for (const e of invalid) {
      log(
        `warning: ${e.message}; ignoring it` +
          (hit
            ? ""
            : e.path === files.write
            ? ": the acceptance vector is re-measured and the file rewritten"
            : ": the acceptance vector is re-measured"),
      );
    }
    if (hit) return { acceptance: hit.acceptance, cached: true, path: hit.path };
  }
  log(
    `measuring the acceptance vector (T=${sampling.temperature}, top-k ${sampling.topK}, top-p ${sampling.topP}) ...`,
  );
  // Measure on what the target itself generates at these settings (from held-out prompts): speculation
  // drafts against the target's own text, which the draft predicts better than human text, so a vector
  // from teacher-forced human text under-predicts tokens per step (measured: by 11-20%).
  const src = await heldoutSource(pair.targetFolder.dir, pair.draftFolder.dir);
  logSource(src, pair.targetFolder.dir, (l) => log(`  ${l}`));
  const whole = src.kind === "draft";
  const prompts = heldoutTokens(src, pair.targetFolder, 6, whole ? DRAFT_PROMPT : ACCEPTANCE_PROMPT);
  const texts: number[][] = [];
  for (const [i, p] of prompts.entries()) {
    const ids = [...p];
    const gen = generateAutoregressive(pair.target, p, {
      maxTokens: whole ? DRAFT_GENERATED : ACCEPTANCE_LENGTH - p.length,
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
    skip: whole ? prompts.map((p) => p.length) : ACCEPTANCE_PROMPT,
    chunk: whole ? DRAFT_PROMPT + DRAFT_GENERATED : undefined,
  }, (done, total) => log(`  acceptance: ${done}/${total} positions`));
  let acceptance = v.acceptance, path: string | undefined;
  try {
    const e = await saveAcceptance(pair.draftFolder.dir, tId, dId, sampling, v, { cacheDir: opts.cacheDir });
    acceptance = e.acceptance;
    path = e.path;
  } catch (e) {
    // A read-only model folder (e.g. the weights embedded in the compiled binary) only loses the store.
    log(`acceptance vector not stored: cannot write ${files.write}: ${(e as Error).message}`);
  }
  log(
    `  p = [${acceptance.slice(0, 8).map((x) => x.toFixed(3)).join(", ")}, ...], reject ${
      v.reject.toFixed(3)
    }`,
  );
  return { acceptance, cached: false, path };
}

/** {@link loadOrMeasureAcceptance}'s vector alone. */
export async function acceptanceFor(
  pair: { targetFolder: ModelFolder; draftFolder: ModelFolder; target: CausalLM; draft: CausalLM },
  sampling: SamplingParams,
  opts: AcceptanceOptions = {},
): Promise<number[]> {
  return (await loadOrMeasureAcceptance(pair, sampling, opts)).acceptance;
}
