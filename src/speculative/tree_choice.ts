/**
 * Sequoia's hardware-aware choice (section 3.3 of the paper, done automatically): given the planner's
 * G(n, d) and measured costs on the running adapter, pick the tree size n and depth d that maximise
 * tokens per second, and compare with the autoregressive baseline on the same engine.
 *
 * Cost of one fused GPU step (draft levels + target + one readback):
 *   t_step(n, d) = t_target(n) + d * t_draft(ceil(n / d)) + t_sync
 * AR with k tokens per submission costs t_target(1) + t_sync / k per token.
 *
 * @module
 */

import { expectedTokens, planSequoia, type SequoiaPlan } from "./sequoia_plan.ts";

/**
 * The largest tree the hardware-aware choice considers: 256 nodes (the GPU engine's default maxBatch)
 * and 16 speculated levels (17 planner levels, root included).
 */
export const PICK_LIMITS = { maxNodes: 256, maxLevels: 17 } as const;

/** Measured costs, milliseconds. `target` / `draft` map a batch size to one forward's compute time. */
export interface MeasuredCosts {
  /** Batch sizes measured (ascending), e.g. 1, 2, 4, ... */
  sizes: number[];
  /** t_target(sizes[i]) compute time, excluding the sync. */
  target: number[];
  /** t_draft(sizes[i]) compute time, excluding the sync. */
  draft: number[];
  /** One GPU->CPU sync. */
  sync: number;
  /** Tokens per submission the AR baseline uses. */
  arTokensPerSubmission: number;
  /**
   * Host time of a decode beyond its forwards, measured by short real decodes (absent in profiles
   * measured before it existed: 0). `ar`: per AR token (sampling, the loop); `step`: per speculative
   * step, `a + b n` for an n-node tree (drafting's and verification's bookkeeping, sampling every node,
   * KV compaction). Negligible next to a GPU readback; on the wasm backend, where a tiny model's forward
   * takes a millisecond, it decides whether speculation pays.
   */
  host?: { ar: number; step: [number, number] };
}

/** The chosen tree and its predicted performance. */
export interface TreeChoice {
  n: number;
  /** Speculated depth below the root (planner levels - 1). */
  depth: number;
  /** G(n, depth + 1). */
  tokensPerStep: number;
  stepMs: number;
  tokPerS: number;
  arTokPerS: number;
  /** tokPerS / arTokPerS; below 1 means speculation does not pay on this adapter. */
  speedup: number;
}

/** Linear interpolation of a measured cost curve at batch size x (clamped at the ends). */
export function costAt(sizes: number[], ms: number[], x: number): number {
  if (x <= sizes[0]) return ms[0];
  for (let i = 1; i < sizes.length; i++) {
    if (x <= sizes[i]) {
      return ms[i - 1] + (ms[i] - ms[i - 1]) * (x - sizes[i - 1]) / (sizes[i] - sizes[i - 1]);
    }
  }
  const k = sizes.length - 1;
  return ms[k] * (x / sizes[k]); // beyond the last measurement: proportional
}

/**
 * Every (n, d) with n in the measured sizes up to the plan's maximum and d in 1 .. plan depth - 1,
 * ranked by predicted tok/s; the first is the pick.
 *
 * `streams` > 1: the tree of one of that many batched streams (serve --max-batch), each with the same
 * tree: one step's target forward holds streams x n tokens and each draft level streams x ceil(n / d),
 * while the host work of every stream runs one after another, so
 *   t_step = t_target(B n) + d t_draft(B ceil(n / d)) + t_sync + B (a + b n),
 * and per stream tokPerS = 1000 G / t_step against batched AR's 1000 / (t_target(B) + t_sync / k + B ar).
 * As B grows t_target(B n) leaves the flat part of the curve sooner: the pick shrinks, and once no tree
 * beats AR (speedup < 1) the stream is better off decoding plainly.
 */
export function rankTrees(plan: SequoiaPlan, costs: MeasuredCosts, streams = 1): TreeChoice[] {
  const host = costs.host ?? { ar: 0, step: [0, 0] };
  const B = streams;
  const arMs = costAt(costs.sizes, costs.target, B) + costs.sync / costs.arTokensPerSubmission + B * host.ar;
  const out: TreeChoice[] = [];
  for (const n of costs.sizes) {
    if (n < 2 || n > plan.maxNodes) continue;
    for (let d = 1; d < plan.maxDepth && d < n; d++) {
      const g = expectedTokens(plan, n, d + 1);
      if (!Number.isFinite(g)) continue;
      const stepMs = costAt(costs.sizes, costs.target, B * n) +
        d * costAt(costs.sizes, costs.draft, B * Math.ceil(n / d)) + costs.sync +
        B * (host.step[0] + host.step[1] * n);
      const tokPerS = (1000 * g) / stepMs;
      out.push({
        n,
        depth: d,
        tokensPerStep: g,
        stepMs,
        tokPerS,
        arTokPerS: 1000 / arMs,
        speedup: tokPerS / (1000 / arMs),
      });
    }
  }
  return out.sort((a, b) => b.tokPerS - a.tokPerS || a.n - b.n || a.depth - b.depth);
}

/** The planner's table for the largest tree the choice considers ({@link PICK_LIMITS}). */
export function planForPick(acceptance: ArrayLike<number>): SequoiaPlan {
  return planSequoia(acceptance, PICK_LIMITS.maxNodes, PICK_LIMITS.maxLevels);
}

/**
 * Sequoia's hardware-aware pick for an acceptance vector on measured costs: every (n, d) ranked, the
 * first is the pick. The one entry point for serve, generate, profile and bench.
 */
export function pickSequoiaTree(
  acceptance: ArrayLike<number>,
  costs: MeasuredCosts,
): { pick: TreeChoice; ranked: TreeChoice[]; plan: SequoiaPlan } {
  const plan = planForPick(acceptance);
  const ranked = rankTrees(plan, costs);
  if (ranked.length === 0) throw new RangeError("tree choice: no measured tree size >= 2 to rank");
  return { pick: ranked[0], ranked, plan };
}
