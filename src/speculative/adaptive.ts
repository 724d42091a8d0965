/**
 * Beyond the paper: keep an online estimate of the acceptance vector from verified steps and re-plan
 * the Sequoia tree when it drifts from the vector the tree was planned with (a different prompt domain,
 * temperature or model pair behaves differently from the startup measurement).
 *
 * Estimator: at a visited node with c children, the k-th drawn child (k <= c) is the accepted one with
 * probability p_k — the planner's own definition — so p_k ~ (times rank k was accepted) / (visited
 * nodes with >= k children). Unbiased, and cheap: counters only.
 *
 * @module
 */

import { materialize, planSequoia } from "./sequoia_plan.ts";
import type { TreeShape } from "./tree.ts";

/** Counts of accepted ranks and exposures. */
export class AcceptanceTracker {
  private readonly accepted: Float64Array;
  private readonly exposed: Float64Array;
  /** Visited nodes observed. */
  visits = 0;

  constructor(readonly width: number) {
    this.accepted = new Float64Array(width + 1);
    this.exposed = new Float64Array(width + 1);
  }

  /** Record one step's visits ([children, accepted rank or 0]). */
  observe(visits: ArrayLike<readonly [number, number]>): void {
    for (let i = 0; i < visits.length; i++) {
      const [c, rank] = visits[i];
      for (let k = 1; k <= Math.min(c, this.width); k++) this.exposed[k]++;
      if (rank >= 1 && rank <= this.width) this.accepted[rank]++;
      this.visits++;
    }
  }

  /** Estimated p_1..p_W; ranks seen fewer than `minExposure` times keep the `prior` value. */
  estimate(prior: ArrayLike<number>, minExposure = 50): number[] {
    return Array.from({ length: this.width }, (_, i) => {
      const k = i + 1;
      return this.exposed[k] >= minExposure ? this.accepted[k] / this.exposed[k] : (prior[i] ?? 0);
    });
  }

  /** Forget everything (after a re-plan). */
  reset(): void {
    this.accepted.fill(0);
    this.exposed.fill(0);
    this.visits = 0;
  }
}

/** L1 distance between two acceptance vectors (missing entries are 0). */
export function acceptanceDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < Math.max(a.length, b.length); i++) d += Math.abs((a[i] ?? 0) - (b[i] ?? 0));
  return d;
}

/** What a re-plan changed. */
export interface Replan {
  from: number[];
  to: number[];
  distance: number;
  shape: TreeShape;
}

/**
 * A Sequoia tree that re-plans itself: feed it every step's visits; when at least `minVisits` nodes
 * were seen and the estimate is farther than `threshold` (L1) from the planning vector, it plans the
 * same (n, d) budget anew (bounded cost: one DP of n x d) and returns the change.
 */
export class AdaptiveSequoiaPlan {
  private readonly tracker: AcceptanceTracker;
  /** The vector the current shape was planned with. */
  acceptance: number[];
  shape: TreeShape;

  constructor(
    acceptance: number[],
    readonly n: number,
    /** Speculated depth below the root. */
    readonly depth: number,
    readonly opts: { threshold: number; minVisits: number } = { threshold: 0.15, minVisits: 400 },
  ) {
    this.acceptance = [...acceptance];
    this.tracker = new AcceptanceTracker(acceptance.length);
    this.shape = materialize(planSequoia(acceptance, n, depth + 1), n, depth + 1);
  }

  /** Observe a step; returns the re-plan when one happened. */
  observe(visits: ArrayLike<readonly [number, number]>): Replan | undefined {
    this.tracker.observe(visits);
    if (this.tracker.visits < this.opts.minVisits) return undefined;
    const est = this.tracker.estimate(this.acceptance);
    const distance = acceptanceDistance(est, this.acceptance);
    if (distance <= this.opts.threshold) return undefined;
    const from = this.acceptance;
    this.acceptance = est;
    this.shape = materialize(planSequoia(est, this.n, this.depth + 1), this.n, this.depth + 1);
    this.tracker.reset();
    return { from, to: est, distance, shape: this.shape };
  }
}
