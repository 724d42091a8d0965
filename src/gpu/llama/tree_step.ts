/**
 * A whole static-tree speculative step on the GPU with ONE readback: the draft processes the pending
 * tokens and then each level of the planned shape, a tree_draw kernel choosing every node's children
 * straight into the token buffer the next level (and finally the target) reads; the target verifies
 * the whole tree; then tree tokens, target logits and the draft's q rows come back together.
 *
 * Draft cache layout after the step: pending tokens at [prefixLen, prefixLen + k), then levels 1 ..
 * maxDepth - 1 in breadth-first order (every node of those levels is forwarded, so node i sits at
 * rootSlot + i); last-level nodes are never forwarded (slot -1).
 *
 * @module
 */

import type { SamplingParams } from "../../model/sampling.ts";
import { appendAttention, treeAttention } from "../../speculative/tree.ts";
import type { GpuLlama } from "./model.ts";
import * as ops from "../ops.ts";

/** What a device step returns for verification on the CPU. */
export interface DeviceTreeResult {
  /** (n) tree tokens, root first. */
  tokens: Int32Array;
  /** (n, vocab) target logits per node. */
  targetLogits: Float32Array;
  /** (n, vocab) draft distributions of nodes with children (sampling only; zero rows otherwise). */
  q: Float32Array | undefined;
  /** Draft KV slot per node (-1: not forwarded). */
  slotOf: Int32Array;
  /** Draft forward passes recorded. */
  draftForwards: number;
}

/**
 * Run one step. `shape`: breadth-first parents/depths (root = node 0) with `children` lists.
 * `pending`: tokens not yet in the draft cache, root last. The target cache must hold everything
 * before the root (its length is the root's position).
 */
export async function deviceTreeStep(
  target: GpuLlama,
  draft: GpuLlama,
  shape: { parent: Int32Array; depth: Int32Array; children: number[][] },
  pending: number[],
  sampling: SamplingParams,
  seed: number,
  draw: "swor" | "iid" = "swor",
): Promise<DeviceTreeResult> {
  const n = shape.parent.length, k = pending.length, V = draft.config.vocabSize;
  if (n + k + 1 > draft.maxBatch) {
    throw new RangeError(
      `device step: tree ${n} + pending ${k} exceed the draft's maxBatch ${draft.maxBatch}`,
    );
  }
  if (n > target.maxBatch) {
    throw new RangeError(`device step: tree ${n} exceeds the target's maxBatch ${target.maxBatch}`);
  }
  for (const c of shape.children) {
    if (c.length > ops.MAX_CHILDREN) {
      throw new RangeError(`device step: a node has ${c.length} children (max ${ops.MAX_CHILDREN})`);
    }
  }
  const { tokens: treeTok, q } = draft.treeBuffers();
  const queue = draft.gpu.device.queue;
  // treeTok: [0, n) tree nodes (root first), [n, n + k) the pending tokens.
  queue.writeBuffer(treeTok, 0, Uint32Array.of(pending[k - 1]));
  queue.writeBuffer(treeTok, n * 4, Uint32Array.from(pending));
  const ctx = draft.opContext;
  const prefixLen = draft.kv.length;
  const rootSlot = prefixLen + k - 1;
  const slotOf = new Int32Array(n).fill(-1);
  slotOf[0] = rootSlot;
  // Level 0: the pending tokens, causally; only the root (last row) has children.
  let posOffset = 0, maskOffset = 0, forwards = 0;
  maskOffset += await draft.recordTreeForward({
    tokens: treeTok,
    tokOffset: n,
    positions: Int32Array.from(pending, (_, i) => prefixLen + i),
    posOffset,
    maskOffset,
  });
  posOffset += k;
  forwards++;
  const firstChild = (i: number) => shape.children[i][0] ?? 0;
  // Each level's plan rows (child_start, child_count, q_index) get their own small buffer.
  const levelPlan = async (rows: number[][], level: number) => {
    const buf = draft.gpu.createBuffer(`tree plan ${level}`, rows.length * 12);
    queue.writeBuffer(buf, 0, Uint32Array.from(rows.flat()));
    await ops.treeDraw(ctx, {
      logits: draft.logitsBuffer,
      plan: buf,
      tokens: treeTok,
      q,
      rows: rows.length,
      vocab: V,
      temperature: sampling.temperature,
      topK: sampling.topK,
      topP: sampling.topP,
      seed: (seed ^ Math.imul(level + 1, 0x9e3779b1)) >>> 0,
      iid: draw === "iid",
    });
    return buf;
  };
  const temp: GPUBuffer[] = [];
  temp.push(
    await levelPlan(
      pending.map((_, i) => (i === k - 1 ? [firstChild(0), shape.children[0].length, 0] : [0, 0, 0])),
      0,
    ),
  );
  let maxDepth = 0;
  for (const d of shape.depth) maxDepth = Math.max(maxDepth, d);
  for (let d = 1; d < maxDepth; d++) {
    const rows: number[] = [];
    for (let i = 0; i < n; i++) if (shape.depth[i] === d) rows.push(i);
    if (!rows.some((r) => shape.children[r].length > 0)) break;
    // Breadth-first numbering: a level is a contiguous range of node indices.
    const { positions, mask } = appendAttention(shape, rootSlot, draft.kv.length, rows, slotOf);
    maskOffset += await draft.recordTreeForward({
      tokens: treeTok,
      tokOffset: rows[0],
      positions,
      posOffset,
      mask,
      maskOffset,
    });
    posOffset += rows.length;
    forwards++;
    temp.push(await levelPlan(rows.map((r) => [firstChild(r), shape.children[r].length, r]), d));
  }
  await draft.submitRecorded("draft tree");
  // Target: every node, tokens read from the draft's tree buffer.
  const L = target.kv.length;
  const ta = treeAttention(shape.parent, shape.depth, L);
  await target.recordTreeForward({
    tokens: treeTok,
    tokOffset: 0,
    positions: ta.positions,
    posOffset: 0,
    mask: ta.mask,
    maskOffset: 0,
  });
  await target.submitRecorded("verify tree");
  const greedy = sampling.temperature === 0;
  const parts = [{ buffer: treeTok, size: n * 4 }, { buffer: target.logitsBuffer, size: n * V * 4 }];
  if (!greedy) parts.push({ buffer: q, size: n * V * 4 });
  const [tok, logits, qRows] = await target.readMany(parts);
  for (const b of temp) b.destroy();
  return {
    tokens: new Int32Array(tok),
    targetLogits: new Float32Array(logits),
    q: qRows ? new Float32Array(qRows) : undefined,
    slotOf,
    draftForwards: forwards,
  };
}
