/**
 * `deno task bench --sweep`: run Sequoia for every (n, d) of a grid on the running adapter, in the same
 * run as the AR baseline, and print the hardware-aware profiler's pick beside the best found.
 * Target: the pick reaches >= 90% of the best measured tok/s.
 *
 * @module
 */

import type { CausalLM } from "../model/causal_lm.ts";
import { SAMPLING_DEFAULTS, type SamplingParams } from "../model/sampling.ts";
import { planSequoia } from "../speculative/sequoia_plan.ts";
import { rankTrees } from "../speculative/tree_choice.ts";
import { sharedGpu } from "../runtime/backend.ts";
import { decode } from "../speculative/decode.ts";
import { type BenchPair, loadPair, openPair } from "./pair.ts";
import { benchPrompts } from "./prompts.ts";

/** The (n, d) grid a sweep measures. */
export interface SweepGrid {
  /** Tree sizes n (root included). */
  sizes: number[];
  /** Speculated depths d (only d < n is run). */
  depths: number[];
}

/** `--quick`'s grid and the full one. */
export const SWEEP_GRIDS: { quick: SweepGrid; full: SweepGrid } = {
  quick: { sizes: [2, 4, 8, 16], depths: [1, 2, 4] },
  full: { sizes: [2, 4, 8, 16, 32, 64], depths: [1, 2, 3, 4, 6, 8] },
};

/** Options of the sweep. */
export interface SweepOptions {
  grid: SweepGrid;
  /** Held-out prompts ({@link benchPrompts}). */
  prompts: number;
  /** Tokens generated per prompt and configuration. */
  maxTokens: number;
  /** Where the JSON goes (none when undefined). */
  jsonPath?: string;
}

/** What the sweep found. */
export interface SweepResult {
  rows: SweepRow[];
  /** AR tok/s in the same run. */
  ar: number;
  pick: { n: number; depth: number };
}

/** One measured configuration. */
export interface SweepRow {
  n: number;
  depth: number;
  tokPerS: number;
  tokensPerStep: number;
  predictedTokPerS?: number;
}

async function measure(
  pair: { target: CausalLM; draft?: CausalLM },
  prompts: number[][],
  method: "ar" | "sequoia",
  tree: { treeSize?: number; depth?: number },
  acceptance: number[],
  sampling: SamplingParams,
  maxTokens: number,
): Promise<{ tokPerS: number; tokensPerStep: number }> {
  let tokens = 0, ms = 0, steps = 0, emitted = 0;
  for (const [i, p] of prompts.entries()) {
    const events = decode(method, pair.target, pair.draft, p, {
      tree,
      acceptance,
      maxTokens,
      sampling,
      seed: 500 + i,
      eosIds: [],
    });
    for await (const ev of events) {
      if (ev.type !== "done") continue;
      tokens += ev.stats.completionTokens;
      ms += ev.stats.decodeMs;
      const s = ev.stats as { steps?: number; tokensPerStep: number };
      steps += s.steps ?? 0;
      emitted += (s.steps ?? 0) * s.tokensPerStep;
    }
  }
  return { tokPerS: tokens / (ms / 1000), tokensPerStep: steps ? emitted / steps : 1 };
}

/** Run the sweep at the profile's sampling (T = 0.7) on the bundled pair; prints Markdown, returns the rows. */
export async function benchSweep(o: SweepOptions): Promise<SweepResult> {
  const log = (l: string) => console.error(l);
  const texts = await benchPrompts(o.prompts);
  const folders = await openPair();
  const prompts = texts.map((p) => folders.targetFolder.tokenizer.encode(p));
  const pair = await loadPair(folders, { mode: "resident", backend: "gpu", maxBatch: 256, log });
  try {
    const r = await sweepGrid(pair, prompts, {
      ...o.grid,
      maxTokens: o.maxTokens,
      sampling: SAMPLING_DEFAULTS.profile,
    });
    if (o.jsonPath) await Deno.writeTextFile(o.jsonPath, JSON.stringify(r, null, 2));
    return r;
  } finally {
    pair.close();
    folders.close();
  }
}

/** The sweep proper on a loaded GPU pair. */
async function sweepGrid(
  pair: BenchPair,
  prompts: number[][],
  opts: SweepGrid & { maxTokens: number; sampling: SamplingParams },
): Promise<SweepResult> {
  const log = (l: string) => console.error(l);
  const gpu = await sharedGpu();
  const costs = pair.costs;
  if (!costs) throw new Error("the sweep needs the GPU backend (its hardware profile)");
  const acceptance = await pair.acceptance(opts.sampling);
  // Ranked on a plan no larger than the grid (not pickSequoiaTree's 256-node one): the question is
  // whether the profiler picks the best of the trees measured here.
  const ranked = rankTrees(
    planSequoia(acceptance, Math.max(...opts.sizes), Math.max(...opts.depths) + 1),
    costs,
  );
  const predicted = new Map(ranked.map((r) => [`${r.n}/${r.depth}`, r.tokPerS]));
  const pick = ranked[0];
  // Warm up both paths once, then measure.
  await measure(pair, prompts.slice(0, 1), "ar", {}, acceptance, opts.sampling, 8);
  const ar = (await measure(pair, prompts, "ar", {}, acceptance, opts.sampling, opts.maxTokens)).tokPerS;
  const rows: SweepRow[] = [];
  const grid = opts.sizes.flatMap((n) => opts.depths.filter((d) => d < n).map((d) => ({ n, d })));
  if (!grid.some((g) => g.n === pick.n && g.d === pick.depth)) grid.push({ n: pick.n, d: pick.depth });
  for (const { n, d } of grid) {
    const r = await measure(
      pair,
      prompts,
      "sequoia",
      { treeSize: n, depth: d },
      acceptance,
      opts.sampling,
      opts.maxTokens,
    );
    rows.push({ n, depth: d, ...r, predictedTokPerS: predicted.get(`${n}/${d}`) });
    log(`  sequoia n=${n} d=${d}: ${r.tokPerS.toFixed(1)} tok/s, ${r.tokensPerStep.toFixed(2)} tokens/step`);
  }
  rows.sort((a, b) => b.tokPerS - a.tokPerS);
  const best = rows[0];
  const picked = rows.find((r) => r.n === pick.n && r.depth === pick.depth)!;
  console.log(
    `\n## Sequoia (n, d) sweep at T=${opts.sampling.temperature} (${
      gpu.adapter.description || gpu.adapter.vendor
    })\n`,
  );
  console.log("| n | depth | tok/s | tokens/step | profiler's predicted tok/s |");
  console.log("|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    console.log(
      `| ${r.n} | ${r.depth} | ${r.tokPerS.toFixed(1)} | ${r.tokensPerStep.toFixed(2)} | ${
        r.predictedTokPerS?.toFixed(1) ?? ""
      } |`,
    );
  }
  console.log(
    `\nAR: ${ar.toFixed(1)} tok/s. Best found: n=${best.n} d=${best.depth} ${
      best.tokPerS.toFixed(1)
    } tok/s. ` +
      `Profiler's pick: n=${pick.n} d=${pick.depth} ${picked.tokPerS.toFixed(1)} tok/s = ` +
      `${(100 * picked.tokPerS / best.tokPerS).toFixed(0)}% of the best (target >= 90%).` +
      (best.tokPerS < ar ? " No tree beats AR on this adapter; the profiler says so too." : ""),
  );
  return { rows, ar, pick: { n: pick.n, depth: pick.depth } };
}
