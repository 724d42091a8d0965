/**
 * `deno task bench --sweep`: run Sequoia for every (n, d) of a grid on the running adapter, in the same
 * run as the AR baseline, and print the hardware-aware profiler's pick beside the best found.
 * Target: the pick reaches >= 90% of the best measured tok/s.
 *
 * @module
 */

import type { GpuLlama } from "../gpu/llama/model.ts";
import type { ModelFolder } from "../model/folder.ts";
import type { SamplingParams } from "../model/sampling.ts";
import { planSequoia } from "../speculative/sequoia_plan.ts";
import { rankTrees } from "../speculative/tree_choice.ts";
import { sharedGpu } from "../runtime/backend.ts";
import { acceptanceFor } from "../runtime/acceptance.ts";
import { decode } from "../speculative/decode.ts";
import { loadOrMeasureCosts } from "../runtime/hardware_profile.ts";

/** One measured configuration. */
export interface SweepRow {
  n: number;
  depth: number;
  tokPerS: number;
  tokensPerStep: number;
  predictedTokPerS?: number;
}

async function measure(
  pair: { target: GpuLlama; draft: GpuLlama },
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

/** Run the sweep; prints Markdown and returns the rows. */
export async function benchSweep(
  pair: { targetFolder: ModelFolder; draftFolder: ModelFolder; target: GpuLlama; draft: GpuLlama },
  prompts: number[][],
  opts: { sizes: number[]; depths: number[]; maxTokens: number; sampling: SamplingParams },
): Promise<{ rows: SweepRow[]; ar: number; pick: { n: number; depth: number } }> {
  const log = (l: string) => console.error(l);
  const gpu = await sharedGpu();
  const { costs } = await loadOrMeasureCosts(gpu, pair, { log });
  const acceptance = await acceptanceFor(pair, opts.sampling, { log });
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
