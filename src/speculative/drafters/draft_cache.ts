/**
 * The draft-cache layout contract, written once. During a step the draft's KV cache holds:
 *
 *   [0, prefixLen)                committed: tokens the draft has processed in earlier steps
 *   [prefixLen, prefixLen + k)    the k pending tokens (emitted, not yet processed), the root last,
 *                                 so the root sits at rootSlot = prefixLen + k - 1
 *   [prefixLen + k, ...)          tree nodes below the root, in the order they were forwarded
 *
 * `slotOf[node]` records each forwarded node's slot; nodes never forwarded (leaves: their children
 * are never drawn) have slot -1. After verification the engine keeps the root and the longest prefix
 * of the accepted path that was forwarded ({@link keptDraftSlots}); the rest of the path becomes the
 * next step's pending tokens. Every drafter and the fused device step follow this layout.
 *
 * @module
 */

import type { CausalLM } from "../../model/causal_lm.ts";
import type { TreeShape } from "../tree.ts";
import { appendAttention } from "../tree.ts";
import type { DraftInput } from "./drafter.ts";

/** The draft model of a step, for drafters that need one (the engine passes it to them). */
export function draftModel(input: DraftInput): CausalLM {
  if (!input.draft) throw new RangeError("drafter: this drafter needs a draft model and the step has none");
  return input.draft;
}

/** Slot of the root (the last pending token) in the draft cache. */
export function rootSlot(prefixLen: number, pending: number): number {
  return prefixLen + pending - 1;
}

/** Run the pending tokens through the draft (causally); returns the root's logits and its slot. */
export async function feedPending(input: DraftInput): Promise<{ logits: Float32Array; rootSlot: number }> {
  const { prefixLen, pending } = input;
  const draft = draftModel(input);
  if (draft.kv.length !== prefixLen) {
    throw new Error(`drafter: draft cache ${draft.kv.length} != prefix ${prefixLen}`);
  }
  const logits = await draft.forward({
    tokens: Int32Array.from(pending),
    positions: Int32Array.from(pending, (_, i) => prefixLen + i),
    logitRows: [pending.length - 1],
  });
  return { logits, rootSlot: rootSlot(prefixLen, pending.length) };
}

/**
 * One batched draft forward over tree nodes `rows` (appended after the draft cache; slotOf updated);
 * returns each row's logits. Tree nodes see everything before the root (committed prefix and the
 * other pending tokens), their cached ancestors and themselves.
 */
export async function forwardNodes(
  input: DraftInput,
  tree: TreeShape,
  tokens: ArrayLike<number>,
  root: number,
  rows: number[],
  slotOf: Int32Array,
): Promise<Float32Array[]> {
  const draft = draftModel(input);
  const { positions, mask } = appendAttention(tree, root, draft.kv.length, rows, slotOf);
  const logits = await draft.forward({
    tokens: Int32Array.from(rows, (r) => tokens[r]),
    positions,
    mask,
  });
  const V = logits.length / rows.length;
  return rows.map((_, k) => logits.subarray(k * V, (k + 1) * V));
}

/**
 * What the draft keeps of an accepted path: the slots of its longest forwarded prefix (to move right
 * after the root) and how many path nodes that covers; the others are the next step's pending tokens.
 */
export function keptDraftSlots(accepted: number[], slotOf: Int32Array): { slots: number[]; count: number } {
  const slots: number[] = [];
  let count = 0;
  for (; count < accepted.length && slotOf[accepted[count]] >= 0; count++) {
    slots.push(slotOf[accepted[count]]);
  }
  return { slots, count };
}
