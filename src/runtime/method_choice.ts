/**
 * `--method auto`, per request: the predicted tokens per second of every method that can run, from the
 * startup hardware profile, the acceptance vector at the request's temperature, SpecExec's measured
 * budgets and a replay of lookup over the request's own prompt; the fastest wins. Pure arithmetic over
 * plain data (milliseconds), so the decision and its reason are reported per response and tested on
 * hand-made costs.
 *
 * Notation: t_T(n), t_D(n) one target / draft forward over n tokens (the profile's curves, interpolated
 * by `costAt`), s one sync (a readback; 0 on wasm), k AR's tokens per submission, h the host time per AR
 * token and a + b n per speculative step of n nodes (`MeasuredCosts.host`, 0 when absent). As in
 * tree_choice.ts:
 *
 *   AR        ms/token    = t_T(1) + s / k + h                          tok/s = 1000 / (ms/token)
 *   Sequoia   tokens/step = G(n, d + 1), the planner's table at the request's acceptance vector
 *             ms/step     = t_T(n) + d t_D(ceil(n / d)) + s + a + b n
 *             (n, d): the hardware-aware pick at that vector, or the request's own shape
 *   SpecExec  tokens/step and tok/s as measured at startup for its best budget K (or the request's K; the
 *             nearest measured one when it was not measured), ms/step = 1000 x tokens/step / tok/s. Its
 *             tree follows the draft's own probabilities, so it has no closed form: the measurement (a
 *             short run at the profile's sampling, T = 0.7) stands for every temperature.
 *   lookup    the prompt's replay (replayLookup in drafters/lookup.ts): step i verifies n_i nodes and
 *             accepts a_i, so
 *             tok/s = 1000 x sum_i (1 + a_i) / sum_i c(n_i),
 *             c(1) = AR's ms/token (nothing matched: a plain step, decoded as AR's are),
 *             c(n) = t_T(n) + s + a + b n (no draft forward; building the tree costs microseconds)
 *
 * The winner is the highest tok/s; ties go to the earlier of ar, sequoia, specexec, lookup (AR needs
 * nothing to be right). What each prediction leaves out: Sequoia's and lookup's acceptance is an
 * expectation (a real prompt does better or worse), SpecExec's is one prompt's at T = 0.7, lookup's is
 * the greedy one (optimistic at T > 0) and ignores its online policy's slow start. Lookup's online
 * fallback (plain steps while it does not pay) still bounds a wrong pick to a few percent.
 *
 * @module
 */

import type { TreeOptions } from "../speculative/methods.ts";
import type { LookupReplay } from "../speculative/drafters/lookup.ts";
import type { SequoiaPlan } from "../speculative/sequoia_plan.ts";
import { expectedTokens } from "../speculative/sequoia_plan.ts";
import { costAt, type MeasuredCosts, planForPick, rankTrees } from "../speculative/tree_choice.ts";
import type { BudgetRow } from "./hardware_profile.ts";

/** The methods auto chooses between, in tie-break order. */
export const AUTO_METHODS = ["ar", "sequoia", "specexec", "lookup"] as const;
/** A method auto may choose. */
export type AutoMethod = typeof AUTO_METHODS[number];

/** Measured costs; `draft` may be absent (a target-only profile: without a draft, ar and lookup only). */
export type ProfileCosts = Omit<MeasuredCosts, "draft"> & { draft?: number[] };

/** One candidate's predicted speed for this request. */
export interface Prediction {
  method: AutoMethod;
  /** Predicted tokens per second of decoding (prefill excluded). */
  tokPerS: number;
  tokensPerStep: number;
  /** Milliseconds per step (AR: per token). */
  stepMs: number;
  /** Where the numbers come from: the profile's t(n) (+ the planner), SpecExec's startup runs, the prompt's replay. */
  basis: "profile" | "measured" | "replay";
  /** The tree settings it was predicted at, which are the ones it decodes with. */
  tree: TreeOptions;
  /** A qualification of the prediction (e.g. SpecExec predicted at a budget near the request's). */
  note?: string;
}

/** A method auto did not consider for this request, and why. */
export interface Exclusion {
  method: AutoMethod;
  why: string;
}

/** Auto's decision for one request, as plain data. */
export interface MethodChoice {
  method: AutoMethod;
  /** The winner's tree settings. */
  tree: TreeOptions;
  /** Every candidate considered, fastest first. */
  predictions: Prediction[];
  excluded: Exclusion[];
  reason: {
    /** "fastest predicted"; "no hardware profile": nothing to predict with, the first method allowed. */
    rule: "fastest predicted" | "no hardware profile";
    /** The winner's predicted tok/s (null without a profile). */
    tokPerS: number | null;
    /** AR's predicted tok/s (null without a profile). */
    arTokPerS: number | null;
    /** tokPerS / arTokPerS (null without a profile). */
    speedup: number | null;
    /** The second fastest candidate. */
    runnerUp: { method: AutoMethod; tokPerS: number } | null;
    /** The same in one line, for logs. */
    summary: string;
  };
}

/** What the prediction needs; a candidate whose input is absent is excluded ("not available"). */
export interface ChoiceInputs {
  /** The hardware profile; absent (e.g. the CPU reference): nothing is predicted. */
  costs?: ProfileCosts;
  /**
   * Sequoia: the acceptance vector at the request's sampling, the planner's table for it (planForPick;
   * computed when absent: tens of ms, so callers cache it per temperature) and the request's shape.
   */
  sequoia?: {
    acceptance: ArrayLike<number>;
    plan?: SequoiaPlan;
    tree?: Pick<TreeOptions, "treeSize" | "depth">;
  };
  /** SpecExec: the profile's measured budgets and the request's budget. */
  specexec?: { budgets: readonly BudgetRow[]; budget?: number };
  /** Lookup: the replay of the request's prompt at the budget and depth lookup would decode with. */
  lookup?: LookupReplay;
  /** Methods the caller rules out (e.g. the request sets a tree field they do not read). */
  exclude?: readonly Exclusion[];
}

/** AR's milliseconds per token: t_T(1) + s / k + h. */
export function arMsPerToken(costs: ProfileCosts): number {
  return costAt(costs.sizes, costs.target, 1) + costs.sync / costs.arTokensPerSubmission +
    (costs.host?.ar ?? 0);
}

/** A speculative step's host time for an n-node tree: a + b n. */
function hostStepMs(costs: ProfileCosts, n: number): number {
  const [a, b] = costs.host?.step ?? [0, 0];
  return a + b * n;
}

/** AR's prediction. */
export function predictAr(costs: ProfileCosts): Prediction {
  const ms = arMsPerToken(costs);
  return { method: "ar", tokPerS: 1000 / ms, tokensPerStep: 1, stepMs: ms, basis: "profile", tree: {} };
}

/**
 * Sequoia's prediction: the hardware-aware pick on `plan` (rankTrees' first), or, when the request gives
 * a shape, G(n, d + 1) at n = treeSize ?? the pick's n and d = depth ?? the pick's depth (d is capped at
 * n - 1 and the table's depth for the cost, as a tree of n nodes has at most n - 1 levels below the root).
 * Undefined when there is no tree size >= 2 to rank.
 */
export function predictSequoia(
  costs: MeasuredCosts,
  plan: SequoiaPlan,
  tree: Pick<TreeOptions, "treeSize" | "depth"> = {},
): Prediction | undefined {
  const pick = rankTrees(plan, costs)[0];
  if (!pick) return undefined;
  if (tree.treeSize === undefined && tree.depth === undefined) {
    return {
      method: "sequoia",
      tokPerS: pick.tokPerS,
      tokensPerStep: pick.tokensPerStep,
      stepMs: pick.stepMs,
      basis: "profile",
      tree: { treeSize: pick.n, depth: pick.depth },
    };
  }
  const n = tree.treeSize ?? pick.n, depth = tree.depth ?? pick.depth;
  const d = Math.max(1, Math.min(depth, n - 1, plan.maxDepth - 1));
  const g = n <= 1 ? 1 : expectedTokens(plan, Math.min(n, plan.maxNodes), d + 1);
  const stepMs = costAt(costs.sizes, costs.target, n) +
    (n > 1 ? d * costAt(costs.sizes, costs.draft, Math.ceil(n / d)) : 0) + costs.sync + hostStepMs(costs, n);
  return {
    method: "sequoia",
    tokPerS: (1000 * g) / stepMs,
    tokensPerStep: g,
    stepMs,
    basis: "profile",
    tree: { treeSize: n, depth },
  };
}

/**
 * SpecExec's prediction from its measured budgets: the fastest, or the request's `budget` (its own row,
 * else the nearest measured budget's, by ratio, with a note). Undefined without a measured budget.
 */
export function predictSpecExec(budgets: readonly BudgetRow[], budget?: number): Prediction | undefined {
  if (budgets.length === 0) return undefined;
  let row: BudgetRow, note: string | undefined;
  if (budget === undefined) row = budgets.reduce((a, b) => (b.tokPerS > a.tokPerS ? b : a));
  else {
    const dist = (r: BudgetRow) => Math.abs(Math.log(r.budget / budget));
    row = budgets.reduce((a, b) => (dist(b) < dist(a) ? b : a));
    if (row.budget !== budget) note = `K = ${budget} was not measured; predicted at K = ${row.budget}`;
  }
  return {
    method: "specexec",
    tokPerS: row.tokPerS,
    tokensPerStep: row.tokensPerStep,
    stepMs: (1000 * row.tokensPerStep) / row.tokPerS,
    basis: "measured",
    tree: { budget: budget ?? row.budget },
    ...(note ? { note } : {}),
  };
}

/** Lookup's prediction from the prompt's replay (a replay with no step predicts AR's speed). */
export function predictLookup(costs: ProfileCosts, replay: LookupReplay): Prediction {
  const ar = arMsPerToken(costs);
  let tokens = 0, ms = 0;
  for (let i = 0; i < replay.nodes.length; i++) {
    const n = replay.nodes[i];
    tokens += 1 + replay.accepted[i];
    ms += n <= 1 ? ar : costAt(costs.sizes, costs.target, n) + costs.sync + hostStepMs(costs, n);
  }
  if (tokens === 0) [tokens, ms] = [1, ar];
  return {
    method: "lookup",
    tokPerS: (1000 * tokens) / ms,
    tokensPerStep: tokens / Math.max(1, replay.nodes.length),
    stepMs: ms / Math.max(1, replay.nodes.length),
    basis: "replay",
    tree: { treeSize: replay.budget, depth: replay.depth },
  };
}

/**
 * Auto's choice for one request: every candidate not excluded and with its input present is predicted
 * (module doc), the fastest wins. Without costs nothing can be predicted: the first method allowed
 * (ar unless excluded) with rule "no hardware profile". Throws a RangeError when every method is excluded.
 *
 * @example
 * ```ts
 * const choice = chooseMethod({ costs, sequoia: { acceptance }, lookup: replayLookup(prompt) });
 * choice.method; // e.g. "sequoia"
 * choice.predictions.map((p) => [p.method, p.tokPerS]);
 * ```
 */
export function chooseMethod(inputs: ChoiceInputs): MethodChoice {
  const excluded: Exclusion[] = [...(inputs.exclude ?? [])];
  const ruledOut = (m: AutoMethod) => excluded.some((e) => e.method === m);
  const exclude = (method: AutoMethod, why: string) => {
    if (!ruledOut(method)) excluded.push({ method, why });
  };
  const { costs } = inputs;
  if (!costs) {
    // Nothing to predict with: the first method allowed whose input is there (ar needs none).
    const missing = {
      sequoia: !inputs.sequoia,
      specexec: !inputs.specexec,
      lookup: !inputs.lookup,
      ar: false,
    };
    const method = AUTO_METHODS.find((m) => !ruledOut(m) && !missing[m]);
    if (!method) throw new RangeError("method choice: every method is excluded");
    for (const m of AUTO_METHODS) if (m !== method) exclude(m, "no hardware profile to predict it with");
    return {
      method,
      tree: {},
      predictions: [],
      excluded,
      reason: {
        rule: "no hardware profile",
        tokPerS: null,
        arTokPerS: null,
        speedup: null,
        runnerUp: null,
        summary: `${method}: no hardware profile on this backend to predict with`,
      },
    };
  }
  const predictions: Prediction[] = [];
  const ar = predictAr(costs);
  if (!ruledOut("ar")) predictions.push(ar);
  if (!ruledOut("sequoia")) {
    const s = inputs.sequoia;
    if (!s) exclude("sequoia", "no draft model");
    else if (!costs.draft) exclude("sequoia", "the profile has no draft costs");
    else {
      const p = predictSequoia(costs as MeasuredCosts, s.plan ?? planForPick(s.acceptance), s.tree);
      if (p) predictions.push(p);
      else exclude("sequoia", "the profile has no tree size >= 2 to rank");
    }
  }
  if (!ruledOut("specexec")) {
    const p = inputs.specexec && predictSpecExec(inputs.specexec.budgets, inputs.specexec.budget);
    if (p) predictions.push(p);
    else exclude("specexec", inputs.specexec ? "no SpecExec budget measured" : "no draft model");
  }
  if (!ruledOut("lookup")) {
    if (inputs.lookup) predictions.push(predictLookup(costs, inputs.lookup));
    else exclude("lookup", "no replay of the prompt");
  }
  if (predictions.length === 0) throw new RangeError("method choice: every method is excluded");
  const order = (m: AutoMethod) => AUTO_METHODS.indexOf(m);
  // Equal up to rounding (e.g. a replay of plain steps only, which is AR's speed summed step by step): a tie.
  const faster = (a: Prediction, b: Prediction) =>
    Math.abs(a.tokPerS - b.tokPerS) <= 1e-9 * Math.max(a.tokPerS, b.tokPerS) ? 0 : b.tokPerS - a.tokPerS;
  predictions.sort((a, b) => faster(a, b) || order(a.method) - order(b.method));
  const [win, next] = predictions;
  const f = (x: number) => x.toFixed(1);
  return {
    method: win.method,
    tree: win.tree,
    predictions,
    excluded,
    reason: {
      rule: "fastest predicted",
      tokPerS: win.tokPerS,
      arTokPerS: ar.tokPerS,
      speedup: win.tokPerS / ar.tokPerS,
      runnerUp: next ? { method: next.method, tokPerS: next.tokPerS } : null,
      summary:
        `${win.method}: ${f(win.tokPerS)} tok/s predicted, ${(win.tokPerS / ar.tokPerS).toFixed(2)}x AR (${
          f(ar.tokPerS)
        })` + (next ? `; next ${next.method} ${f(next.tokPerS)}` : ""),
    },
  };
}
