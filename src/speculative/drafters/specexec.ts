/**
 * SpecExec's best-first "cache" tree (Svirschevski et al. 2024): the draft's most probable
 * continuations by cumulative log-probability, grown one batched draft forward per expansion round,
 * kept to the top K. Deterministic children: pair it with the match verifier.
 *
 * @module
 */

import { topFinite } from "../draw.ts";
import { childrenOf } from "../tree.ts";
import type { Drafter, DraftInput, DraftOutput } from "./drafter.ts";
import { draftModel, feedPending, forwardNodes } from "./draft_cache.ts";
import type { PipelineState } from "../../decoding/logits/pipeline.ts";

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
  readonly needsDraftModel = true;
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
    // With processors: each node's state is its parent's advanced by its token (parents come first).
    const proc = input.processing;
    const states: PipelineState[] = proc ? [proc.root] : [];
    const addChildren = (node: number, raw: Float32Array) => {
      expanded[node] = true;
      const logits = proc ? proc.pipeline.processed(raw, states[node]) : raw;
      // log-softmax at T = 1
      let max = -Infinity;
      for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
      let z = 0;
      for (let i = 0; i < logits.length; i++) z += Math.exp(logits[i] - max);
      const lz = max + Math.log(z);
      // Only tokens with q > 0: not those a processor forbids, nor those outside a pruned draft's vocabulary.
      for (const t of topFinite(logits, this.opts.width)) {
        if (proc) states.push(proc.pipeline.advance(states[node], t));
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
      const free = input.draftRoom - (draftModel(input).kv.length - (input.prefixLen + input.pending.length));
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
