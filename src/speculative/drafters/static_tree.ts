/**
 * A drafter over a fixed shape (chain, SpecInfer, Sequoia): children of each node are drawn from the
 * draft distribution q — without replacement (Sequoia), i.i.d. (SpecInfer, chain) — or the top-b at
 * temperature 0. One batched draft forward per level over the nodes that have children; on a backend
 * with the fused-tree-step capability the whole step is planned for the device instead
 * ({@link StaticTreeDrafter.planFused}), drawing children the same way.
 *
 * @module
 */

import type { FusedDraftForward, FusedTreeLimits } from "../../model/capabilities.ts";
import { probabilities } from "../../model/sampling.ts";
import type { PipelineState } from "../../decoding/logits/pipeline.ts";
import { drawIid, drawWithoutReplacement, topFinite } from "../draw.ts";
import { appendAttention, childrenOf, levels, type TreeShape } from "../tree.ts";
import type { DrafterKind } from "../verify/verifier.ts";
import type { Drafter, DraftInput, DraftOutput, FusedDraft } from "./drafter.ts";
import { draftModel, feedPending, forwardNodes, rootSlot } from "./draft_cache.ts";
import { truncateShape } from "./shapes.ts";

/** Nodes at depth d of a breadth-first shape (a contiguous range of indices). */
function levelRows(shape: TreeShape, d: number): number[] {
  const rows: number[] = [];
  for (let i = 0; i < shape.depth.length; i++) if (shape.depth[i] === d) rows.push(i);
  return rows;
}

/** A drafter over a fixed breadth-first shape. */
export class StaticTreeDrafter implements Drafter {
  readonly needsDraftModel = true;
  constructor(
    readonly kind: DrafterKind,
    /** Breadth-first shape, root included. */
    public shape: TreeShape,
    private readonly draw: "swor" | "iid",
  ) {
    this.setShape(shape);
  }

  /** Replace the shape (re-planning); takes effect at the next step. */
  setShape(shape: TreeShape): void {
    if (shape.parent.length < 1 || shape.parent[0] !== -1) {
      throw new RangeError("drafter: shape must start with the root");
    }
    this.shape = shape;
  }

  async draft(input: DraftInput): Promise<DraftOutput> {
    const shape = truncateShape(this.shape, Math.max(1, input.maxNodes));
    const n = shape.parent.length;
    const children = childrenOf(shape.parent);
    const tokens = new Int32Array(n);
    const slotOf = new Int32Array(n).fill(-1);
    const q: (Float64Array | undefined)[] = new Array(n);
    tokens[0] = input.pending[input.pending.length - 1];
    const { logits: rootLogits, rootSlot } = await feedPending(input);
    slotOf[0] = rootSlot;
    let forwards = 1;
    const greedy = input.sampling.temperature === 0;
    const forbidden: boolean[] = new Array(n).fill(false);
    // With processors: node v's state is the root's advanced along the path to v (parents come first).
    // A node whose token the processors forbid (greedy top-b can reach past a grammar's few allowed
    // tokens) has no state: its subtree is drafted from raw rows and can never be accepted (p = 0).
    const proc = input.processing;
    const states = proc ? new Array<PipelineState | undefined>(n) : undefined;
    if (proc) states![0] = proc.root;
    const expand = (node: number, raw: Float32Array) => {
      const kids = children[node];
      if (kids.length === 0) return;
      // `allowed`: the row as the processors leave it (a token they forbid has p = 0 too); `logits`: the
      // row the children are drawn from.
      let logits = raw, allowed = raw;
      if (proc) {
        if (node > 0 && states![shape.parent[node]] !== undefined && !forbidden[node]) {
          states![node] = proc.pipeline.advance(states![shape.parent[node]]!, tokens[node]);
        }
        if (states![node] !== undefined) allowed = logits = proc.pipeline.processed(raw, states![node]!);
        // A pruned draft (vocab_map) may have no row for any token the processors allow (a grammar's few):
        // draw from the raw row then (exact for any q; those children are never accepted, p = 0 there).
        if (!logits.some((x) => x > -Infinity)) logits = raw;
      }
      const dist = probabilities(logits, input.sampling);
      q[node] = dist;
      // Every draw stops at the support of q (tokens with a finite logit).
      const picks = greedy
        ? topFinite(logits, kids.length)
        : this.draw === "swor"
        ? drawWithoutReplacement(dist, kids.length, input.rng)
        : drawIid(dist, kids.length, input.rng);
      if (picks.length === 0) throw new Error(`drafter: the draft row of node ${node} has no finite logit`);
      // Fewer distinct tokens than children (tiny support under top-k/top-p, a pruned draft): repeat the
      // last draw; a repeated child can never be accepted twice, it only costs a slot.
      kids.forEach((c, i) => {
        tokens[c] = picks[Math.min(i, picks.length - 1)];
        forbidden[c] = allowed[tokens[c]] === -Infinity;
      });
    };
    expand(0, rootLogits);
    // Levels 1 .. last - 1 have children to draw; the last level's nodes are leaves (never forwarded).
    for (let d = 1; d < levels(shape.depth) - 1; d++) {
      const rows = levelRows(shape, d).filter((i) => children[i].length > 0);
      if (rows.length === 0) break;
      const rowLogits = await forwardNodes(input, shape, tokens, rootSlot, rows, slotOf);
      forwards++;
      rows.forEach((r, k) => expand(r, rowLogits[k]));
    }
    return { tokens, parent: shape.parent, depth: shape.depth, children, q, slotOf, forwards };
  }

  /**
   * The whole step for the device: the pending tokens (causal; the root's row draws its children),
   * then every node of each level with children (a level is a contiguous range of breadth-first
   * indices, so its tokens are read straight from the step's token buffer), each row drawing its
   * children into that buffer. Undefined when the shape exceeds the device's limits.
   */
  planFused(input: DraftInput, limits: FusedTreeLimits): FusedDraft | undefined {
    const shape = truncateShape(this.shape, Math.max(1, input.maxNodes));
    const n = shape.parent.length, k = input.pending.length;
    if (n + k + 1 > limits.maxDraftRows || n > limits.maxNodes) return undefined;
    const children = childrenOf(shape.parent);
    if (children.some((c) => c.length > limits.maxChildren)) return undefined;
    const root = rootSlot(input.prefixLen, k);
    const slotOf = new Int32Array(n).fill(-1);
    slotOf[0] = root;
    const drawRow = (node: number) => [children[node][0] ?? 0, children[node].length, node];
    const forwards: FusedDraftForward[] = [{
      tokOffset: n, // the pending tokens follow the n tree nodes in the step's token buffer
      positions: Int32Array.from(input.pending, (_, i) => input.prefixLen + i),
      draw: Uint32Array.from(input.pending.flatMap((_, i) => i === k - 1 ? drawRow(0) : [0, 0, 0])),
    }];
    let cacheLen = input.prefixLen + k;
    for (let d = 1; d < levels(shape.depth) - 1; d++) {
      const rows = levelRows(shape, d);
      if (!rows.some((r) => children[r].length > 0)) break;
      const { positions, mask } = appendAttention(shape, root, cacheLen, rows, slotOf);
      forwards.push({ tokOffset: rows[0], positions, mask, draw: Uint32Array.from(rows.flatMap(drawRow)) });
      cacheLen += rows.length;
    }
    return {
      shape: { ...shape, children },
      forwards,
      draw: this.draw,
      slotOf,
      complete: (r) => {
        const V = draftModel(input).config.vocabSize;
        const q: (Float64Array | undefined)[] = new Array(n);
        if (r.q) {
          for (let i = 0; i < n; i++) {
            if (children[i].length) q[i] = Float64Array.from(r.q.subarray(i * V, (i + 1) * V));
          }
        }
        return {
          tokens: r.tokens,
          parent: shape.parent,
          depth: shape.depth,
          children,
          q,
          slotOf,
          forwards: forwards.length,
        };
      },
    };
  }
}
