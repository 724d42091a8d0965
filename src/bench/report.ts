/**
 * The side-by-side benchmark's data: per-run samples, result rows (median tok/s, pooled ratios), the
 * per-mode facts and the JSON report, and {@link summarize} from one to the other. No GPU, no I/O.
 *
 * @module
 */

import type { Backend } from "../runtime/backend.ts";
import type { BenchCase } from "./cases.ts";
import type { PromptEntry } from "./prompts.ts";
import type { Method, TreeOptions } from "../speculative/methods.ts";
import type { MeasuredCosts } from "../speculative/tree_choice.ts";
import { median } from "../util/stats.ts";

/** How the target's weights are held. */
export type Mode = "resident" | "paged";
/** Every mode, in run order. */
export const MODES: readonly Mode[] = ["resident", "paged"];

/** Paging counters of one run (differences of two snapshots). */
export interface PagingSample {
  bytes: number;
  /** Reading + writing layer bytes. */
  uploadMs: number;
  /** Time forwards waited for a refill. */
  stallMs: number;
}

/** One measured run of one case: the sums over its prompts. */
export interface RunSample {
  tokens: number;
  decodeMs: number;
  steps: number;
  /** Sum over steps of the tokens each emitted (= tokens after the first for speculation). */
  stepTokens: number;
  /** Sum over steps of the tree's nodes (root included). */
  treeNodes: number;
  targetForwards: number;
  syncs: number;
  draftMs: number;
  verifyMs: number;
  paging?: PagingSample;
}

/** One result row. */
export interface BenchRow {
  mode: Mode;
  temperature: number;
  /** The prompt set's name (`--prompt-set`); absent in reports from before prompt sets. */
  set?: string;
  group: "main" | "sweep";
  label: string;
  series: string;
  method: Method;
  tree: TreeOptions;
  n?: number;
  depth?: number;
  pick?: boolean;
  /** Prompts per run (the case's count, or the set's size when smaller) and tokens per prompt. */
  prompts: number;
  maxTokens: number;
  /** Measured runs (warm-up excluded). */
  runs: number;
  /** Tokens counted per run (all prompts). */
  tokens: number;
  /** Median over runs of tokens / decode seconds (prefill excluded). */
  tokPerS: number;
  tokPerSRuns: number[];
  /** tokPerS / AR's tokPerS in the same mode, temperature and run. */
  speedup: number;
  tokensPerStep: number;
  /** Sequoia: the planner's G(n, d). */
  predictedTokensPerStep?: number;
  /** Mean tree nodes per step (root included); absent for AR. */
  treeNodesPerStep?: number;
  targetForwardsPerToken: number;
  syncsPerToken: number;
  draftMsPerStep?: number;
  verifyMsPerStep?: number;
  /** Paged mode: weight bytes streamed per generated token and how much of the upload time compute hid. */
  paging?: { uploadMBPerToken: number; uploadMsPerToken: number; stallMsPerToken: number; overlap: number };
}

/** Per-mode facts for the report. */
export interface ModeInfo {
  mode: Mode;
  device: string;
  /** Where this mode's rows ran (paged rows always on gpu: only it pages); absent in older reports. */
  backend?: Backend;
  /** Paged: the budget the target was loaded under and the plan it got. */
  gpuMemoryBudget?: number;
  targetWeightBytes?: number;
  plan?: { residentLayers: number; ringSlots: number; layerBytes: number; bytesPerForward: number };
  /**
   * Paged: the host-RAM cache of streamed layers (`budget` undefined: the default, half the free RAM;
   * 0: every streamed layer read from disk at every forward) and what it held after the runs.
   */
  hostCache?: { budget?: number; cachedLayers: number; cachedBytes: number; streamedLayers: number };
  /** The hardware profile's t(n) curves (absent on the CPU backend). */
  costs?: MeasuredCosts;
  picks: {
    temperature: number;
    n: number;
    depth: number;
    predictedTokPerS?: number;
    predictedSpeedup?: number;
  }[];
}

/** The JSON report (`--json PATH`). */
export interface BenchReport {
  version: 1;
  command: string;
  deno: string;
  adapter: string;
  startedAt: string;
  wallSeconds: number;
  settings: {
    quick: boolean;
    runs: number;
    temperatures: number[];
    modes: Mode[];
    backend?: Backend;
    warmup: string;
  };
  /** The texts of the prompts used, set after set. */
  prompts: string[];
  /** The prompt sets, each with the prompts used (absent in reports from before prompt sets). */
  promptSets?: { name: string; path: string; note?: string; prompts: PromptEntry[] }[];
  /** The target and draft as given (absent: the bundled tiny pair); draft null: `--draft none`. */
  models?: { target: string; draft: string | null };
  modes: ModeInfo[];
  rows: BenchRow[];
  plots: string[];
}

const sumOf = (xs: RunSample[], f: (s: RunSample) => number) => xs.reduce((a, s) => a + f(s), 0);

/**
 * A case's row from its measured runs: tok/s is the median over runs; every other figure pools all runs
 * (ratios of sums). `arTokPerS` is AR's median in the same mode, temperature and prompt set (NaN when
 * absent); `set` names the prompt set and `prompts` the prompts each run took (default: the case's).
 */
export function summarize(
  c: BenchCase,
  ctx: { mode: Mode; temperature: number; arTokPerS: number; set?: string; prompts?: number },
  runs: RunSample[],
): BenchRow {
  if (runs.length === 0) throw new RangeError(`no measured runs for ${c.label}`);
  const tps = runs.map((r) => (r.decodeMs > 0 ? r.tokens / (r.decodeMs / 1000) : NaN));
  const tokPerS = median(tps);
  const tokens = sumOf(runs, (r) => r.tokens);
  const steps = sumOf(runs, (r) => r.steps);
  const ar = c.method === "ar";
  const row: BenchRow = {
    mode: ctx.mode,
    temperature: ctx.temperature,
    ...(ctx.set === undefined ? {} : { set: ctx.set }),
    group: c.group,
    label: c.label,
    series: c.series,
    method: c.method,
    tree: c.tree,
    n: c.sequoia?.n,
    depth: c.sequoia?.depth,
    pick: c.sequoia?.pick,
    prompts: ctx.prompts ?? c.prompts,
    maxTokens: c.maxTokens,
    runs: runs.length,
    tokens: runs[0].tokens,
    tokPerS,
    tokPerSRuns: tps,
    speedup: ar ? 1 : tokPerS / ctx.arTokPerS,
    tokensPerStep: ar || steps === 0 ? 1 : sumOf(runs, (r) => r.stepTokens) / steps,
    predictedTokensPerStep: c.sequoia?.predicted,
    treeNodesPerStep: ar || steps === 0 ? undefined : sumOf(runs, (r) => r.treeNodes) / steps,
    targetForwardsPerToken: sumOf(runs, (r) => r.targetForwards) / tokens,
    syncsPerToken: sumOf(runs, (r) => r.syncs) / tokens,
    draftMsPerStep: ar || steps === 0 ? undefined : sumOf(runs, (r) => r.draftMs) / steps,
    verifyMsPerStep: ar || steps === 0 ? undefined : sumOf(runs, (r) => r.verifyMs) / steps,
  };
  const paged = runs.filter((r) => r.paging);
  if (paged.length) {
    const bytes = sumOf(paged, (r) => r.paging!.bytes);
    const upload = sumOf(paged, (r) => r.paging!.uploadMs);
    const stall = sumOf(paged, (r) => r.paging!.stallMs);
    const t = sumOf(paged, (r) => r.tokens);
    row.paging = {
      uploadMBPerToken: bytes / 1e6 / t,
      uploadMsPerToken: upload / t,
      stallMsPerToken: stall / t,
      overlap: upload > 0 ? Math.min(1, Math.max(0, 1 - stall / upload)) : 1,
    };
  }
  return row;
}
