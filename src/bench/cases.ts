/**
 * The side-by-side benchmark's case table: which method, tree, budget and size each row runs, and how
 * much each kind of case generates (the full run and `--quick`).
 *
 * @module
 */

import { type Method, TREE_DEFAULTS, type TreeOptions } from "../speculative/methods.ts";
import type { TreeChoice } from "../speculative/tree_choice.ts";

/** Methods accepted by --methods. */
export const BENCH_METHODS: readonly Method[] = ["ar", "chain", "specinfer", "sequoia", "specexec", "lookup"];

/** One benchmark configuration. */
export interface BenchCase {
  /** Row label, e.g. "sequoia n=8 d=2". */
  label: string;
  /** Bar name in the tok/s plot (the same across modes and temperatures, e.g. "sequoia (pick)"). */
  series: string;
  method: Method;
  tree: TreeOptions;
  /** "main": the side-by-side list; "sweep": extra Sequoia sizes for the tokens/step plot. */
  group: "main" | "sweep";
  /** Prompts (the first N of bench/prompts.json) and tokens generated per prompt. */
  prompts: number;
  maxTokens: number;
  /** Sequoia: the planned tree, the planner's G(n, d) and whether it is the profiler's pick. */
  sequoia?: { n: number; depth: number; predicted: number; pick: boolean };
}

/** How much each kind of case generates: prompts x tokens per run. */
export interface BenchSizes {
  main: { prompts: number; maxTokens: number };
  /** Sequoia tree sizes of the tokens/step sweep (at the profiler's depth for each size). */
  sweep: { sizes: number[]; prompts: number; maxTokens: number };
  /** SpecExec budgets; large trees get fewer tokens (a K-node verify costs ~K single-token passes on a CPU adapter). */
  specexec: { budget: number; prompts: number; maxTokens: number }[];
}

/** The full run (sized to finish in under 20 minutes on a 2-core llvmpipe machine). */
export const FULL_SIZES: BenchSizes = {
  main: { prompts: 4, maxTokens: 48 },
  sweep: { sizes: [4, 8, 16, 32, 64], prompts: 2, maxTokens: 32 },
  specexec: [
    { budget: 64, prompts: 2, maxTokens: 24 },
    { budget: 256, prompts: 2, maxTokens: 12 },
    { budget: 1024, prompts: 1, maxTokens: 8 },
  ],
};

/** `--quick`: a smoke run (under 2 minutes). */
export const QUICK_SIZES: BenchSizes = {
  main: { prompts: 1, maxTokens: 16 },
  sweep: { sizes: [4, 16], prompts: 1, maxTokens: 12 },
  specexec: [
    { budget: 64, prompts: 1, maxTokens: 8 },
    { budget: 256, prompts: 1, maxTokens: 4 },
    { budget: 1024, prompts: 1, maxTokens: 4 },
  ],
};

/**
 * `sizes` with SpecExec at `budgets` (`--specexec-budgets`): each budget takes the prompts and tokens of
 * the smallest default budget at or above it (the largest's beyond), so a bigger tree never generates
 * more than a smaller one.
 */
export function withSpecExecBudgets(sizes: BenchSizes, budgets: number[]): BenchSizes {
  const byBudget = [...sizes.specexec].sort((a, b) => a.budget - b.budget);
  return {
    ...sizes,
    specexec: budgets.map((budget) => {
      const like = byBudget.find((s) => s.budget >= budget) ?? byBudget[byBudget.length - 1];
      return { budget, prompts: like.prompts, maxTokens: like.maxTokens };
    }),
  };
}

/** Prompts a run with these sizes uses (the most any case takes). */
export function usedPrompts(sizes: BenchSizes): number {
  const sweep = sizes.sweep.sizes.length > 0 ? sizes.sweep.prompts : 0;
  return Math.max(sizes.main.prompts, sweep, ...sizes.specexec.map((s) => s.prompts));
}

/**
 * The target's batch limit for these sizes: room for the largest SpecExec tree plus its root, and never
 * below the engine's default 256 (so the hardware profile's t(n) covers the Sequoia sizes).
 */
export function maxBatchFor(sizes: BenchSizes): number {
  return 1 + Math.max(256, ...sizes.specexec.map((s) => s.budget));
}

/**
 * The cases of one mode and temperature. `sequoia.ranked` is the profiler's ranking (for G(n, d) and the
 * sweep's depths); `withSweep` adds the extra Sequoia sizes (the first mode only: tokens/step does not
 * depend on where the weights live). `methods` keeps only those (AR always stays: it is the baseline).
 * Without a draft model (`sequoia` undefined) only AR and lookup run, lookup at its default node budget.
 */
export function buildCases(
  sizes: BenchSizes,
  sequoia: { pick: { n: number; depth: number }; ranked: TreeChoice[]; withSweep: boolean } | undefined,
  methods?: string[],
): BenchCase[] {
  const { main } = sizes;
  const keep = (cs: BenchCase[]) =>
    methods ? cs.filter((c) => c.method === "ar" || methods.includes(c.method)) : cs;
  if (!sequoia) {
    const n = TREE_DEFAULTS.lookupSize;
    return keep([
      { label: "ar", series: "ar", method: "ar", tree: {}, group: "main", ...main },
      {
        label: `lookup n=${n}`,
        series: "lookup",
        method: "lookup",
        tree: { treeSize: n },
        group: "main",
        ...main,
      },
    ]);
  }
  const g = (n: number, depth: number) =>
    sequoia.ranked.find((r) => r.n === n && r.depth === depth)?.tokensPerStep ?? NaN;
  const pick = sequoia.pick;
  const cases: BenchCase[] = [
    { label: "ar", series: "ar", method: "ar", tree: {}, group: "main", ...main },
    { label: "chain k=4", series: "chain k=4", method: "chain", tree: { depth: 4 }, group: "main", ...main },
    {
      label: "specinfer 4x4",
      series: "specinfer 4x4",
      method: "specinfer",
      tree: { width: 4, depth: 4 },
      group: "main",
      ...main,
    },
    {
      label: `sequoia n=${pick.n} d=${pick.depth}`,
      series: "sequoia (profiler's pick)",
      method: "sequoia",
      tree: { treeSize: pick.n, depth: pick.depth },
      group: "main",
      ...main,
      sequoia: { ...pick, predicted: g(pick.n, pick.depth), pick: true },
    },
    ...sizes.specexec.map((s): BenchCase => ({
      label: `specexec K=${s.budget}`,
      series: `specexec K=${s.budget}`,
      method: "specexec",
      tree: { budget: s.budget },
      group: "main",
      prompts: s.prompts,
      maxTokens: s.maxTokens,
    })),
    // Draft-free: the node budget of Sequoia's pick (what a tree may cost on this adapter), its own depth.
    {
      label: `lookup n=${pick.n}`,
      series: "lookup",
      method: "lookup",
      tree: { treeSize: pick.n },
      group: "main",
      ...main,
    },
  ];
  if (sequoia.withSweep) {
    for (const n of sizes.sweep.sizes) {
      // The profiler's best depth for this size (its ranking is by predicted tok/s on this adapter).
      const best = sequoia.ranked.find((r) => r.n === n);
      if (!best || (n === pick.n && best.depth === pick.depth)) continue;
      cases.push({
        label: `sequoia n=${n} d=${best.depth}`,
        series: "sequoia sweep",
        method: "sequoia",
        tree: { treeSize: n, depth: best.depth },
        group: "sweep",
        prompts: sizes.sweep.prompts,
        maxTokens: sizes.sweep.maxTokens,
        sequoia: { n, depth: best.depth, predicted: best.tokensPerStep, pick: false },
      });
    }
  }
  return keep(cases);
}
