/**
 * Drafters build a token tree below the root with the draft model. Static-shape drafters (chain,
 * SpecInfer, Sequoia) expand the shape level by level: one batched draft forward per level over the
 * nodes that have children. SpecExec grows a best-first tree by cumulative draft log-probability.
 *
 * Every drafter leaves the nodes it forwarded in the draft's KV cache (slotOf[node] >= 0) so the
 * engine can keep the accepted ones; leaves are never forwarded (slotOf = -1).
 *
 * @module
 */

import { probabilities, type SamplingParams } from "../model/sampling.ts";
import type { CausalLM } from "../model/causal_lm.ts";
import type { Rng } from "../util/rng.ts";
import { drawIid, drawWithoutReplacement, topIndices } from "./draw.ts";
import { appendAttention, childrenOf, type TreeShape } from "./tree.ts";
import type { DrafterKind } from "./verify/verify.ts";
import { GpuLlama } from "../gpu/llama/model.ts";
import { deviceTreeStep } from "../gpu/llama/tree_step.ts";
import { MAX_CHILDREN } from "../gpu/ops.ts";

/** What a drafter gets for one step. */
export interface DraftInput {
  draft: CausalLM;
  /** Committed draft cache length (the draft has processed tokens [0, prefixLen)). */
  prefixLen: number;
  /** Tokens emitted but not yet in the draft cache, the root last (length >= 1). */
  pending: number[];
  sampling: SamplingParams;
  rng: Rng;
  /** Most nodes the target may verify in this step (context room); drafters shrink to fit. */
  maxNodes: number;
  /** Free KV slots in the draft cache after the pending tokens; drafters never forward more nodes. */
  draftRoom: number;
}

/** A drafted tree. */
export interface DraftOutput {
  /** (n) tokens; tokens[0] is the root. */
  tokens: Int32Array;
  parent: Int32Array;
  depth: Int32Array;
  children: number[][];
  /** Draft distribution each node's children were drawn from (nodes with children only). */
  q: (Float64Array | undefined)[];
  /** Draft KV slot of each node, -1 for nodes never forwarded through the draft. */
  slotOf: Int32Array;
  /** Draft forward passes made. */
  forwards: number;
}

/** A tree builder. */
export interface Drafter {
  readonly kind: DrafterKind;
  draft(input: DraftInput): Promise<DraftOutput>;
  /**
   * Optional: draft AND run the target over the tree in one device round trip (both models on the
   * GPU). Returns undefined when the models cannot do it; the engine then drafts and verifies apart.
   */
  draftAndScore?(
    input: DraftInput,
    target: CausalLM,
  ): Promise<{ tree: DraftOutput; logits: Float32Array } | undefined>;
}

/** Run the pending tokens through the draft (causally); returns the root's logits and its slot. */
async function feedPending(input: DraftInput): Promise<{ logits: Float32Array; rootSlot: number }> {
  const { draft, prefixLen, pending } = input;
  if (draft.kv.length !== prefixLen) {
    throw new Error(`drafter: draft cache ${draft.kv.length} != prefix ${prefixLen}`);
  }
  const logits = await draft.forward({
    tokens: Int32Array.from(pending),
    positions: Int32Array.from(pending, (_, i) => prefixLen + i),
    logitRows: [pending.length - 1],
  });
  return { logits, rootSlot: prefixLen + pending.length - 1 };
}

/**
 * One batched draft forward over tree nodes `rows` (appended after the draft cache; slotOf updated);
 * returns each row's logits. Tree nodes see everything before the root (committed prefix and the
 * other pending tokens), their cached ancestors and themselves.
 */
async function forwardNodes(
  input: DraftInput,
  tree: { parent: Int32Array; depth: Int32Array },
  tokens: ArrayLike<number>,
  rootSlot: number,
  rows: number[],
  slotOf: Int32Array,
): Promise<Float32Array[]> {
  const { positions, mask } = appendAttention(tree, rootSlot, input.draft.kv.length, rows, slotOf);
  const logits = await input.draft.forward({
    tokens: Int32Array.from(rows, (r) => tokens[r]),
    positions,
    mask,
  });
  const V = logits.length / rows.length;
  return rows.map((_, k) => logits.subarray(k * V, (k + 1) * V));
}

/** Keep the first nodes of a shape (breadth-first numbering: any prefix is a connected subtree). */
function truncateShape(shape: TreeShape, n: number): TreeShape {
  if (shape.parent.length <= n) return shape;
  return { parent: shape.parent.slice(0, n), depth: shape.depth.slice(0, n) };
}

/**
 * A drafter over a fixed shape: children of each node are drawn from the draft distribution q —
 * without replacement (Sequoia), i.i.d. (SpecInfer, chain) — or the top-b at temperature 0.
 */
export class StaticTreeDrafter implements Drafter {
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
    const expand = (node: number, logits: Float32Array) => {
      const kids = children[node];
      if (kids.length === 0) return;
      const dist = probabilities(logits, input.sampling);
      q[node] = dist;
      const picks = greedy
        ? topIndices(logits, kids.length)
        : this.draw === "swor"
        ? drawWithoutReplacement(dist, kids.length, input.rng)
        : drawIid(dist, kids.length, input.rng);
      // Fewer distinct tokens than children (tiny support under top-k/top-p): repeat the last draw;
      // a repeated child can never be accepted twice, it only costs a slot.
      kids.forEach((c, i) => (tokens[c] = picks[Math.min(i, picks.length - 1)]));
    };
    expand(0, rootLogits);
    const maxDepth = shape.depth.reduce((a, b) => Math.max(a, b), 0);
    for (let d = 1; d < maxDepth; d++) {
      const rows: number[] = [];
      for (let i = 0; i < n; i++) if (shape.depth[i] === d && children[i].length > 0) rows.push(i);
      if (rows.length === 0) break;
      const rowLogits = await forwardNodes(input, shape, tokens, rootSlot, rows, slotOf);
      forwards++;
      rows.forEach((r, k) => expand(r, rowLogits[k]));
    }
    return { tokens, parent: shape.parent, depth: shape.depth, children, q, slotOf, forwards };
  }

  /**
   * GPU models: the whole step (draft levels with GPU-side child drawing, target verification) in one
   * readback. Children are drawn as on the CPU path (without replacement, or i.i.d.; top-b at T = 0).
   */
  async draftAndScore(
    input: DraftInput,
    target: CausalLM,
  ): Promise<{ tree: DraftOutput; logits: Float32Array } | undefined> {
    if (!(target instanceof GpuLlama) || !(input.draft instanceof GpuLlama)) return undefined;
    const shape = truncateShape(this.shape, Math.max(1, input.maxNodes));
    const n = shape.parent.length;
    if (n + input.pending.length + 1 > input.draft.maxBatch || n > target.maxBatch) return undefined;
    const children = childrenOf(shape.parent);
    // The GPU child-drawing kernel keeps at most MAX_CHILDREN choices in workgroup memory.
    if (children.some((c) => c.length > MAX_CHILDREN)) return undefined;
    const r = await deviceTreeStep(
      target,
      input.draft,
      { ...shape, children },
      input.pending,
      input.sampling,
      input.rng.nextU32(),
      this.draw,
    );
    const V = target.config.vocabSize;
    const q: (Float64Array | undefined)[] = new Array(n);
    if (r.q) {
      for (let i = 0; i < n; i++) {
        if (children[i].length) q[i] = Float64Array.from(r.q.subarray(i * V, (i + 1) * V));
      }
    }
    return {
      tree: {
        tokens: r.tokens,
        parent: shape.parent,
        depth: shape.depth,
        children,
        q,
        slotOf: r.slotOf,
        forwards: r.draftForwards,
      },
      logits: r.targetLogits,
    };
  }
}

/** A chain of k draft tokens (Leviathan et al.): one child per node. */
export function chainShape(k: number): TreeShape {
  return {
    parent: Int32Array.from({ length: k + 1 }, (_, i) => i - 1),
    depth: Int32Array.from({ length: k + 1 }, (_, i) => i),
  };
}

/** SpecInfer-style shape: `width` children at the root, each continued as a chain to `depth` levels. */
export function specInferShape(width: number, depth: number): TreeShape {
  const parent = [-1], dep = [0];
  for (let w = 0; w < width; w++) {
    parent.push(0);
    dep.push(1);
  }
  // Breadth-first: level l >= 2 node of chain w has parent = the chain's node at level l - 1.
  for (let l = 2; l < depth; l++) {
    for (let w = 0; w < width; w++) {
      parent.push(1 + (l - 2) * width + w);
      dep.push(l);
    }
  }
  return { parent: Int32Array.from(parent), depth: Int32Array.from(dep) };
}

/** Options of the SpecExec drafter. */
export interface SpecExecOptions {
  /** Tree budget K (nodes, root included). */
  budget: number;
  /** Children added per expanded node (top-w by draft probability). */
  width: number;
  /** Nodes expanded per batched draft forward. */
  batch: number;
  /** Per-level score decay (log(decay) added per level). */
  decay: number;
  /** Most expansion rounds (each one draft forward). */
  maxRounds: number;
}

/**
 * SpecExec's best-first "cache" tree: score(node) = sum over its path of log q(token) (draft at T = 1)
 * plus log(decay) per level. Repeatedly expand (one batched draft forward) the best unexpanded nodes
 * that can still enter the top K, adding each one's top-w children; stop when none can; keep the top K
 * (a connected subtree: scores fall along every path). Pair it with the match verifier.
 */
export class SpecExecDrafter implements Drafter {
  readonly kind = "specexec" as const;
  constructor(readonly opts: SpecExecOptions) {
    if (opts.budget < 1 || opts.width < 1 || opts.batch < 1) {
      throw new RangeError("specexec: budget, width and batch must be >= 1");
    }
  }

  async draft(input: DraftInput): Promise<DraftOutput> {
    const K = Math.max(1, Math.min(this.opts.budget, input.maxNodes));
    const logDecay = Math.log(this.opts.decay);
    const tokens: number[] = [input.pending[input.pending.length - 1]];
    const parent: number[] = [-1];
    const depth: number[] = [0];
    const score: number[] = [0];
    const expanded: boolean[] = [false];
    const slot: number[] = [-1];
    const { logits: rootLogits, rootSlot } = await feedPending(input);
    slot[0] = rootSlot;
    let forwards = 1;
    const addChildren = (node: number, logits: Float32Array) => {
      expanded[node] = true;
      // log-softmax at T = 1
      let max = -Infinity;
      for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
      let z = 0;
      for (let i = 0; i < logits.length; i++) z += Math.exp(logits[i] - max);
      const lz = max + Math.log(z);
      for (const t of topIndices(logits, this.opts.width)) {
        tokens.push(t);
        parent.push(node);
        depth.push(depth[node] + 1);
        score.push(score[node] + (logits[t] - lz) + logDecay);
        expanded.push(false);
        slot.push(-1);
      }
    };
    if (K > 1) addChildren(0, rootLogits);
    for (let round = 0; round < this.opts.maxRounds && K > 1; round++) {
      // The K-th best score so far: a node whose score is below it can never enter the tree.
      const sorted = score.map((s, i) => ({ s, i })).sort((a, b) => b.s - a.s || a.i - b.i);
      const kth = sorted.length >= K ? sorted[K - 1].s : -Infinity;
      const frontier = sorted.filter(({ s, i }) => !expanded[i] && s >= kth && depth[i] < 200).slice(
        0,
        this.opts.batch,
      );
      // Expanding v adds children with scores < score[v]; only worth it if they can beat the K-th.
      // The draft cache must hold every expanded node: never expand past its free slots.
      const free = input.draftRoom - (input.draft.kv.length - (input.prefixLen + input.pending.length));
      const useful = frontier.filter(({ s }) => sorted.length < K || s + logDecay > kth).slice(
        0,
        Math.max(0, free),
      );
      if (useful.length === 0) break;
      const rows = useful.map(({ i }) => i);
      const shape = { parent: Int32Array.from(parent), depth: Int32Array.from(depth) };
      const slotOf = Int32Array.from(slot);
      const rowLogits = await forwardNodes(input, shape, tokens, rootSlot, rows, slotOf);
      rows.forEach((r) => (slot[r] = slotOf[r]));
      forwards++;
      rows.forEach((r, k) => addChildren(r, rowLogits[k]));
    }
    // Keep the top K (root first; ties by creation order keep parents before children).
    const keep = score.map((s, i) => ({ s, i })).sort((a, b) => b.s - a.s || a.i - b.i).slice(0, K).map((x) =>
      x.i
    );
    keep.sort((a, b) => a - b);
    const newIndex = new Map(keep.map((old, i) => [old, i]));
    const n = keep.length;
    const out = {
      tokens: Int32Array.from(keep, (i) => tokens[i]),
      parent: Int32Array.from(keep, (i) => (parent[i] < 0 ? -1 : newIndex.get(parent[i]) ?? -2)),
      depth: Int32Array.from(keep, (i) => depth[i]),
      slotOf: Int32Array.from(keep, (i) => slot[i]),
    };
    if (out.parent.some((p) => p === -2)) {
      throw new Error("specexec: top-K set is not connected (scores must fall along paths)");
    }
    return { ...out, children: childrenOf(out.parent), q: new Array(n), forwards };
  }
}
