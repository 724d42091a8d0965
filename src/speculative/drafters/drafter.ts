/**
 * The drafting seam: a {@link Drafter} builds a token tree below the root, with the draft model or
 * (lookup) from the text alone. The engine knows only this interface — never how a tree was planned,
 * nor which backend runs it.
 *
 * @module
 */

import type { CausalLM } from "../../model/causal_lm.ts";
import type { FusedDraftForward, FusedTreeLimits, FusedTreeStepResult } from "../../model/capabilities.ts";
import type { SamplingParams } from "../../model/sampling.ts";
import type { Rng } from "../../util/rng.ts";
import type { DrafterKind } from "../verify/verifier.ts";
import type { LogitsPipeline, PipelineState } from "../../decoding/logits/pipeline.ts";

/** What a drafter gets for one step. */
export interface DraftInput {
  /** The draft model; absent for a drafter that needs none ({@link Drafter.needsDraftModel} false). */
  draft?: CausalLM;
  /**
   * Committed draft cache length (the draft has processed tokens [0, prefixLen)); without a draft
   * model, the target's (every token but the root).
   */
  prefixLen: number;
  /** Tokens emitted but not yet in the draft cache, the root last (length >= 1; [root] without a draft). */
  pending: number[];
  /**
   * (prompt + emitted) every token of the sequence so far, the root last. The engine appends to the
   * same array from step to step (a drafter may index it incrementally); read it, never change it.
   */
  history: readonly number[];
  sampling: SamplingParams;
  rng: Rng;
  /** Most nodes the target may verify in this step (context room); drafters shrink to fit. */
  maxNodes: number;
  /** Free KV slots in the draft cache after the pending tokens; drafters never forward more nodes. */
  draftRoom: number;
  /**
   * The request's logit processors, to draft from the processed draft rows (node v's state: `root`
   * advanced along the path to v). Not needed for exactness (the verifiers are exact for any q: q is
   * whatever the children were drawn from); it raises acceptance, e.g. a grammar keeps drafts inside
   * it instead of having the verifier cut them.
   */
  processing?: { pipeline: LogitsPipeline; root: PipelineState };
}

/** A drafted tree. */
export interface DraftOutput {
  /** (n) tokens; tokens[0] is the root. */
  tokens: Int32Array;
  /** (n) parent index, -1 for the root. */
  parent: Int32Array;
  /** (n) depth, root = 0. */
  depth: Int32Array;
  /** Children of each node in draw order. */
  children: number[][];
  /** Draft distribution each node's children were drawn from (nodes with children only). */
  q: (Float64Array | undefined)[];
  /** Draft KV slot of each node, -1 for nodes never forwarded through the draft (see draft_cache.ts). */
  slotOf: Int32Array;
  /** Draft forward passes made. */
  forwards: number;
  /**
   * Optional, for a tree of the root alone: how many consecutive steps (this one included) the drafter
   * will propose nothing, so the engine may decode them autoregressively in one device submission.
   */
  plainSteps?: number;
}

/**
 * A whole step planned for a backend with the fused-tree-step capability: the draft forwards (with
 * the device-side drawing of every row's children) and how to turn what the device read back into the
 * drafted tree. The engine adds the target's part and runs it.
 */
export interface FusedDraft {
  /** The tree's shape (breadth-first, root = node 0). */
  shape: { parent: Int32Array; depth: Int32Array; children: number[][] };
  /** The draft forwards in order (pending tokens first). */
  forwards: FusedDraftForward[];
  /** How children are drawn on the device. */
  draw: "swor" | "iid";
  /** (n) each node's draft cache slot once the forwards ran (-1: never forwarded; see draft_cache.ts). */
  slotOf: Int32Array;
  /** The drafted tree, once the device has drawn its tokens (q rows when they were read back). */
  complete(result: FusedTreeStepResult): DraftOutput;
}

/** What one verified step achieved, as the engine tells a drafter ({@link Drafter.observe}). */
export interface StepOutcome {
  /** Nodes verified, root included (1: a plain autoregressive step). */
  treeSize: number;
  /** Tree nodes accepted (the bonus token not counted). */
  accepted: number;
  /** Wall time of the step (draft + verify), ms; a plain step decoded in a batch of k: its 1/k share. */
  ms: number;
  /** Plain steps decoded together in one device submission with this one (absent: 1, alone). */
  batch?: number;
  /** Whether the accepted path ended at a leaf (everything it proposed there was taken). */
  leaf?: boolean;
}

/** A tree builder. */
export interface Drafter {
  readonly kind: DrafterKind;
  /**
   * Whether the drafter drafts with a draft model. When false the engine runs without one (none need be
   * loaded; one that is loaded is left untouched) and `input.draft` is absent.
   */
  readonly needsDraftModel: boolean;
  /** Draft a tree (with forwards through `input.draft`, on any backend, when it needs a draft model). */
  draft(input: DraftInput): Promise<DraftOutput>;
  /** Optional: called after every step with what it achieved, before the next {@link Drafter.draft}. */
  observe?(step: StepOutcome): void;
  /**
   * Optional: this step as a {@link FusedDraft} within `limits`, or undefined when the tree does not
   * fit them (the engine then drafts with {@link Drafter.draft} and verifies apart).
   */
  planFused?(input: DraftInput, limits: FusedTreeLimits): FusedDraft | undefined;
}
