/**
 * The decoding methods by name, with their defaults: which drafter builds the tree and which verifier
 * is exact for it, and which methods need a draft model (all but ar and lookup).
 *
 * @module
 */

import type { Drafter } from "./drafters/drafter.ts";
import { chainShape, specInferShape } from "./drafters/shapes.ts";
import { SpecExecDrafter } from "./drafters/specexec.ts";
import { LOOKUP_DEFAULTS, LookupDrafter } from "./drafters/lookup.ts";
import { StaticTreeDrafter } from "./drafters/static_tree.ts";
import { materialize, planSequoia } from "./sequoia_plan.ts";
import type { VerifierKind } from "./verify/verifier.ts";

/** Decoding methods. */
export const METHODS = ["ar", "chain", "specinfer", "sequoia", "specexec", "lookup"] as const;
/** A decoding method. */
export type Method = typeof METHODS[number];

/** Methods that run on the target alone: AR, and lookup (trees copied from the text, no draft model). */
export const DRAFT_FREE_METHODS: readonly Method[] = ["ar", "lookup"];

/** Whether `method` needs a draft model loaded. */
export function needsDraftModel(method: Method): boolean {
  return !DRAFT_FREE_METHODS.includes(method);
}

/** Tree settings; unset fields take each method's default. */
export interface TreeOptions {
  /** Sequoia: nodes in the tree, root included (default 32); lookup: most nodes (default 16). */
  treeSize?: number;
  /**
   * Speculated levels below the root: chain length k (default 4), SpecInfer depth (4), Sequoia max
   * depth (8), lookup max depth (8).
   */
  depth?: number;
  /** SpecInfer: children of the root (default 4); SpecExec: children per expanded node (default 8). */
  width?: number;
  /** SpecExec: tree budget K, root included (default 128). */
  budget?: number;
}

/** Defaults, in one place. */
export const TREE_DEFAULTS = {
  chainDepth: 4,
  specInferWidth: 4,
  specInferDepth: 4,
  sequoiaSize: 32,
  sequoiaDepth: 8,
  specExecBudget: 128,
  specExecWidth: 8,
  specExecBatch: 64,
  specExecDecay: 0.95,
  specExecRounds: 12,
  lookupSize: LOOKUP_DEFAULTS.budget,
  lookupDepth: LOOKUP_DEFAULTS.depth,
} as const;

/** A drafter and its exact verifier for `method` (not "ar"). */
export function makeDrafter(
  method: Exclude<Method, "ar">,
  o: TreeOptions,
  acceptance?: ArrayLike<number>,
): { drafter: Drafter; verifier: VerifierKind } {
  const D = TREE_DEFAULTS;
  switch (method) {
    case "chain":
      return {
        drafter: new StaticTreeDrafter("chain", chainShape(o.depth ?? D.chainDepth), "iid"),
        verifier: "specinfer",
      };
    case "specinfer":
      return {
        drafter: new StaticTreeDrafter(
          "specinfer",
          specInferShape(o.width ?? D.specInferWidth, (o.depth ?? D.specInferDepth) + 1),
          "iid",
        ),
        verifier: "specinfer",
      };
    case "sequoia": {
      if (!acceptance) {
        throw new RangeError("sequoia needs an acceptance vector (deno task profile --acceptance)");
      }
      const n = o.treeSize ?? D.sequoiaSize, d = (o.depth ?? D.sequoiaDepth) + 1;
      const shape = materialize(planSequoia(acceptance, n, d), n, d);
      return { drafter: new StaticTreeDrafter("sequoia", shape, "swor"), verifier: "swor" };
    }
    case "specexec":
      return {
        drafter: new SpecExecDrafter({
          budget: o.budget ?? D.specExecBudget,
          width: o.width ?? D.specExecWidth,
          batch: D.specExecBatch,
          decay: D.specExecDecay,
          maxRounds: D.specExecRounds,
        }),
        verifier: "match",
      };
    case "lookup":
      // Deterministic children copied from the text: the match rule (greedy at T = 0) is exact for them.
      return {
        drafter: new LookupDrafter({ budget: o.treeSize ?? D.lookupSize, depth: o.depth ?? D.lookupDepth }),
        verifier: "match",
      };
  }
}
