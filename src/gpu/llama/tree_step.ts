/**
 * The fused tree step ({@link FusedTreeStep}) on the GPU: the draft's planned forwards, each followed by
 * a tree_draw kernel writing the children it draws straight into the token buffer the next forward (and
 * finally the target) reads; one submission for the draft part, one for the target over every node,
 * then ONE readback of tree tokens, target logits and (when asked) the draft's q rows.
 *
 * The caller plans everything tree-shaped (positions, masks, which rows draw which children); this file
 * only checks the plan against the buffers and runs it, so it knows tokens, positions, masks and rows.
 *
 * @module
 */

import type {
  DeviceVerifiedStep,
  DeviceVerifyPlan,
  FusedDraftForward,
  FusedTreeLimits,
  FusedTreeStepPlan,
  FusedTreeStepResult,
} from "../../model/capabilities.ts";
import type { Gpu } from "../device.ts";
import * as ops from "../ops.ts";
import type { GpuForward } from "./forward.ts";
import { checkInput, checkTokens } from "./inputs.ts";

/** The limits of a fused step with `draft` as the draft and `target` as the verifier. */
export function fusedLimits(target: { maxBatch: number }, draft: { maxBatch: number }): FusedTreeLimits {
  return { maxDraftRows: draft.maxBatch, maxNodes: target.maxBatch, maxChildren: ops.MAX_CHILDREN };
}

/** Words of a verified step's output buffer before the target's KV sources (256-byte aligned bindings). */
function verifyOffsets(maxBatch: number): { tOff: number; dOff: number; words: number } {
  const align = (w: number) => Math.ceil(w / 64) * 64;
  const tOff = align(2 + maxBatch), dOff = tOff + align(1 + maxBatch);
  return { tOff, dOff, words: dOff + 1 + maxBatch };
}

/** The draft-side buffers of fused steps (allocated on a model's first step as a draft, kept for the next). */
export class FusedStepBuffers {
  /**
   * (2 maxBatch + 8) u32 token ids: [0, n) tree nodes (node 0 = the root = pending[k - 1]; children
   * written by tree_draw), [n, n + k) the pending tokens.
   */
  readonly tokens: GPUBuffer;
  /** (maxBatch, vocab) f32 q rows written by tree_draw when sampling. */
  readonly q: GPUBuffer;

  /** (3 maxBatch + 1) u32: a verified step's tree (CSR children, draft slots; tree_verify.wgsl). */
  readonly tree: GPUBuffer;
  /** (maxBatch) f32 uniforms of a verified step. */
  readonly uniforms: GPUBuffer;
  /** (2, vocab) f32 scratch of the rejection rules (residual p and q). */
  readonly work: GPUBuffer;
  /** A verified step's output: the path, then the two KV commits' source lists. */
  readonly out: GPUBuffer;
  /** Word offsets of the target's and the draft's KV source lists in {@link out}. */
  readonly offsets: { tOff: number; dOff: number };

  constructor(gpu: Gpu, readonly maxBatch: number, vocab: number) {
    this.tokens = gpu.createBuffer("tree tokens", (2 * maxBatch + 8) * 4);
    this.q = gpu.createBuffer("tree q", maxBatch * vocab * 4);
    this.tree = gpu.createBuffer("verify tree", (3 * maxBatch + 1) * 4);
    this.uniforms = gpu.createBuffer("verify uniforms", maxBatch * 4);
    this.work = gpu.createBuffer("verify work", 2 * vocab * 4);
    const o = verifyOffsets(maxBatch);
    this.out = gpu.createBuffer("verify out", o.words * 4);
    this.offsets = { tOff: o.tOff, dOff: o.dOff };
  }

  /** Free the buffers. */
  destroy(): void {
    for (const b of [this.tokens, this.q, this.tree, this.uniforms, this.work, this.out]) b.destroy();
  }
}

/**
 * Throw a RangeError naming the numbers unless `plan` fits `lim` and the caches; returns the (rows, 3)
 * draw triples to upload per forward, with the q row of a row that draws nothing moved to the scratch
 * row n (tree_draw writes q for every row it runs, and several childless rows must not race on a node's
 * row; n < maxDraftRows, and only rows [0, n) are read back).
 */
function checkPlan(
  plan: FusedTreeStepPlan,
  lim: FusedTreeLimits,
  draft: GpuForward,
  target: GpuForward,
): Uint32Array<ArrayBuffer>[] {
  const n = plan.nodes, k = plan.pending.length;
  const what = "fusedTreeStep";
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${what}: ${n} nodes (at least the root)`);
  if (k < 1) throw new RangeError(`${what}: no pending tokens (the root is the last one)`);
  if (n + k + 1 > lim.maxDraftRows) {
    throw new RangeError(
      `${what}: ${n} nodes + ${k} pending + 1 exceed the draft's maxDraftRows ${lim.maxDraftRows}`,
    );
  }
  if (n > lim.maxNodes) throw new RangeError(`${what}: ${n} nodes exceed maxNodes ${lim.maxNodes}`);
  checkTokens(`${what}: pending`, plan.pending, draft.config.vocabSize);
  if (plan.forwards.length === 0) throw new RangeError(`${what}: no draft forwards`);
  if (plan.target.positions.length !== n) {
    throw new RangeError(`${what}: target has ${plan.target.positions.length} positions for ${n} nodes`);
  }
  let rows = 0;
  const drawn = new Uint8Array(n), qUsed = new Uint8Array(n);
  const triples = plan.forwards.map((f: FusedDraftForward, fi) => {
    const m = f.positions.length;
    const at = `${what}: forward ${fi}`;
    if (!Number.isInteger(f.tokOffset) || f.tokOffset < 0 || f.tokOffset + m > n + k) {
      throw new RangeError(`${at} reads tokens [${f.tokOffset}, ${f.tokOffset + m}) outside [0, ${n + k})`);
    }
    if (f.draw.length !== m * 3) {
      throw new RangeError(`${at}: draw has ${f.draw.length} entries, expected ${m} x 3`);
    }
    const t = Uint32Array.from(f.draw);
    for (let r = 0; r < m; r++) {
      const first = t[r * 3], count = t[r * 3 + 1], qRow = t[r * 3 + 2];
      if (count > lim.maxChildren) {
        throw new RangeError(`${at}: row ${r} draws ${count} children (max ${lim.maxChildren})`);
      }
      if (count === 0) {
        t[r * 3 + 2] = n; // the scratch q row (see above)
        continue;
      }
      if (first < 1 || first + count > n) {
        throw new RangeError(`${at}: row ${r} draws nodes [${first}, ${first + count}) outside [1, ${n})`);
      }
      if (qRow >= n) throw new RangeError(`${at}: row ${r} has q row ${qRow} outside [0, ${n})`);
      if (qUsed[qRow]++) throw new RangeError(`${at}: q row ${qRow} is drawn from twice`);
      for (let c = first; c < first + count; c++) {
        if (drawn[c]++) throw new RangeError(`${at}: node ${c} is drawn twice`);
      }
    }
    rows += m;
    return t;
  });
  // Totals up front, so nothing is recorded for a plan that cannot run to the end.
  if (rows > draft.maxBatch) {
    throw new RangeError(`${what}: ${rows} draft rows in all exceed the draft's maxBatch ${draft.maxBatch}`);
  }
  if (draft.kv.length + rows > draft.capacity) {
    throw new RangeError(
      `${what}: draft ${draft.kv.length} cached + ${rows} rows exceed the KV capacity ${draft.capacity}`,
    );
  }
  checkInput(`${what}: target`, plan.target, target.kv.length, target.inputs.lim);
  return triples;
}

/**
 * Run `plan` (see {@link FusedTreeStep.fusedTreeStep}) with `draft` drafting into `bufs` and `target`
 * verifying. Draft forward f reads its tokens at `tokOffset` of the token buffer, its positions at
 * increasing offsets of the positions buffer, its mask at increasing words of the mask buffer, and draws
 * with seed `(plan.seed ^ Math.imul(f + 1, 0x9e3779b1)) >>> 0`. A failure leaves both caches as they were.
 */
export async function runFusedTreeStep(
  target: GpuForward,
  draft: GpuForward,
  bufs: FusedStepBuffers,
  plan: FusedTreeStepPlan,
  lim: FusedTreeLimits,
): Promise<FusedTreeStepResult> {
  const triples = checkPlan(plan, lim, draft, target);
  const n = plan.nodes, V = target.config.vocabSize;
  return await runDraftAndTarget(target, draft, bufs, plan, triples, async () => {
    await target.submit("verify tree");
    const parts = [{ buffer: bufs.tokens, size: n * 4 }, { buffer: target.logits, size: n * V * 4 }];
    if (plan.wantQ) parts.push({ buffer: bufs.q, size: n * V * 4 });
    const [tok, logits, qRows] = await target.readMany(parts);
    return {
      tokens: new Int32Array(tok),
      targetLogits: new Float32Array(logits),
      q: qRows ? zeroUndrawn(new Float32Array(qRows), triples, n, V) : undefined,
    };
  });
}

/**
 * Throw a RangeError naming the numbers unless `v` describes the n-node tree of `plan` and the draft's
 * cache as this step leaves it; returns the (3n + 1) u32 tree words (tree_verify.wgsl's layout) and the
 * longest root-to-leaf path (the most nodes a commit may move).
 */
function checkVerify(
  v: DeviceVerifyPlan,
  n: number,
  rootSlot: number,
  draftEnd: number,
): { words: Uint32Array<ArrayBuffer>; maxDepth: number } {
  const what = "fusedVerifiedStep";
  if (!(v.rule in ops.VERIFY_RULES)) throw new RangeError(`${what}: unknown rule ${v.rule}`);
  if (v.children.length !== n) {
    throw new RangeError(`${what}: ${v.children.length} child lists for ${n} nodes`);
  }
  if (v.draftSlots.length !== n) {
    throw new RangeError(`${what}: ${v.draftSlots.length} draft slots for ${n} nodes`);
  }
  if (v.draftSlots[0] !== rootSlot) {
    throw new RangeError(`${what}: the root's draft slot is ${v.draftSlots[0]}, expected ${rootSlot}`);
  }
  if (v.uniforms.length < n) throw new RangeError(`${what}: ${v.uniforms.length} uniforms for ${n} nodes`);
  for (const u of v.uniforms) {
    if (!(u >= 0 && u < 1)) throw new RangeError(`${what}: uniform ${u} outside [0, 1)`);
  }
  const words = new Uint32Array(3 * n);
  const depth = new Int32Array(n), seen = new Uint8Array(n);
  let at = 0, maxDepth = 0;
  for (let p = 0; p < n; p++) {
    words[p] = at;
    for (const c of v.children[p]) {
      if (!Number.isInteger(c) || c <= p || c >= n) {
        throw new RangeError(`${what}: node ${p} has child ${c} outside (${p}, ${n})`);
      }
      if (seen[c]++) throw new RangeError(`${what}: node ${c} has two parents`);
      depth[c] = depth[p] + 1;
      maxDepth = Math.max(maxDepth, depth[c]);
      words[n + 1 + at++] = c;
    }
  }
  words[n] = at;
  if (at !== n - 1) throw new RangeError(`${what}: ${at} children in all for ${n} nodes (a tree has n - 1)`);
  for (let i = 0; i < n; i++) {
    const s = v.draftSlots[i];
    if (s !== -1 && !(Number.isInteger(s) && s >= rootSlot && s < draftEnd)) {
      throw new RangeError(`${what}: node ${i}'s draft slot ${s} outside [${rootSlot}, ${draftEnd})`);
    }
    words[2 * n + i] = s < 0 ? 0xffffffff : s;
  }
  return { words, maxDepth };
}

/**
 * {@link runFusedTreeStep}, then verification on the device in the same submission (tree_verify.wgsl)
 * with both caches compacted there (kv_copy INDIRECT from the lists it writes): ONE readback of
 * 4 (2 + depth) bytes. The caches' lengths are settled from it; a failure leaves both as they were.
 */
export async function runFusedVerifiedStep(
  target: GpuForward,
  draft: GpuForward,
  bufs: FusedStepBuffers,
  plan: FusedTreeStepPlan,
  lim: FusedTreeLimits,
  verify: DeviceVerifyPlan,
): Promise<DeviceVerifiedStep> {
  const triples = checkPlan(plan, lim, draft, target);
  const n = plan.nodes, k = plan.pending.length, V = target.config.vocabSize;
  const L = target.kv.length, rootSlot = draft.kv.length + k - 1;
  const draftRows = triples.reduce((a, t) => a + t.length / 3, 0);
  const { words, maxDepth } = checkVerify(verify, n, rootSlot, draft.kv.length + draftRows);
  const sampled = verify.rule !== "greedy";
  if (sampled !== plan.sampling.temperature > 0) {
    throw new RangeError(
      `fusedVerifiedStep: rule ${verify.rule} at temperature ${plan.sampling.temperature} (greedy is for 0 only)`,
    );
  }
  const queue = target.gpu.device.queue;
  queue.writeBuffer(bufs.tree, 0, words);
  queue.writeBuffer(bufs.uniforms, 0, Float32Array.from(verify.uniforms.subarray(0, n)));
  const { tOff, dOff } = bufs.offsets;
  const list = (off: number) => ({ buffer: bufs.out, offset: off * 4, size: (1 + bufs.maxBatch) * 4 });
  return await runDraftAndTarget(target, draft, bufs, plan, triples, async () => {
    await ops.treeVerify(target.ctx, {
      rule: verify.rule,
      logits: target.logits,
      q: bufs.q,
      tree: bufs.tree,
      tokens: bufs.tokens,
      uniforms: bufs.uniforms,
      work: bufs.work,
      out: bufs.out,
      n,
      vocab: V,
      temperature: plan.sampling.temperature,
      topK: plan.sampling.topK,
      topP: plan.sampling.topP,
      targetBase: L,
      tOffset: tOff,
      dOffset: dOff,
    });
    if (maxDepth > 0) {
      await target.kv.recordCommit(target.ctx, list(tOff), maxDepth, L + 1);
      await draft.kv.recordCommit(target.ctx, list(dOff), maxDepth, rootSlot + 1);
    }
    await target.submit("verify tree on the device");
    const bytes = 4 * (2 + maxDepth);
    const out = new Uint32Array(await target.readback(bufs.out, bytes));
    const count = out[0];
    if (count > maxDepth) {
      throw new Error(`fusedVerifiedStep: the device accepted ${count} > depth ${maxDepth}`);
    }
    const accepted: number[] = [], tokens: number[] = [];
    let v = 0;
    for (let i = 0; i < count; i++) {
      const rank = out[2 + i] >>> 24, kids = verify.children[v];
      if (rank < 1 || rank > kids.length) {
        throw new Error(`fusedVerifiedStep: the device accepted rank ${rank} of node ${v}'s ${kids.length}`);
      }
      v = kids[rank - 1];
      accepted.push(v);
      tokens.push(out[2 + i] & 0xffffff);
    }
    let draftKept = 0;
    while (draftKept < count && verify.draftSlots[accepted[draftKept]] >= 0) draftKept++;
    target.kv.settle(L + 1 + count);
    draft.kv.settle(rootSlot + 1 + draftKept);
    return { accepted, tokens, bonus: out[1], draftKept, readbackBytes: bytes };
  });
}

/**
 * Record and submit the draft's forwards (each with its tree_draw), then record the target's forward
 * over every node (not submitted); `finish` submits and reads back. Runs under both models' atomically.
 */
async function runDraftAndTarget<T>(
  target: GpuForward,
  draft: GpuForward,
  bufs: FusedStepBuffers,
  plan: FusedTreeStepPlan,
  triples: Uint32Array<ArrayBuffer>[],
  finish: () => Promise<T>,
): Promise<T> {
  const n = plan.nodes, k = plan.pending.length, V = target.config.vocabSize;
  const queue = draft.gpu.device.queue;
  const temp: GPUBuffer[] = [];
  try {
    return await target.atomically(() =>
      draft.atomically(async () => {
        queue.writeBuffer(bufs.tokens, 0, Uint32Array.of(plan.pending[k - 1]));
        queue.writeBuffer(bufs.tokens, n * 4, Uint32Array.from(plan.pending));
        let posOffset = 0, maskOffset = 0;
        for (const [fi, f] of plan.forwards.entries()) {
          const st = draft.inputs.stage(`fusedTreeStep: forward ${fi}`, f, draft.kv.length, {
            posOffset,
            maskOffset,
          });
          await draft.record({ ...st, tokens: bufs.tokens, tokOffset: f.tokOffset });
          draft.kv.append(st.n);
          posOffset += st.n;
          maskOffset += st.maskBits?.length ?? 0;
          // This forward's (rows, 3) draw triples get their own small buffer (read by tree_draw below).
          const drawBuf = draft.gpu.createBuffer(`tree plan ${fi}`, st.n * 12);
          temp.push(drawBuf);
          queue.writeBuffer(drawBuf, 0, triples[fi]);
          await ops.treeDraw(draft.ctx, {
            logits: draft.logits,
            plan: drawBuf,
            tokens: bufs.tokens,
            q: bufs.q,
            rows: st.n,
            vocab: V,
            temperature: plan.sampling.temperature,
            topK: plan.sampling.topK,
            topP: plan.sampling.topP,
            seed: (plan.seed ^ Math.imul(fi + 1, 0x9e3779b1)) >>> 0,
            iid: plan.draw === "iid",
          });
        }
        await draft.submit("draft tree");
        // Target: every node, tokens read from the draft's tree buffer.
        const st = target.inputs.stage("fusedTreeStep: target", plan.target, target.kv.length);
        await target.record({ ...st, tokens: bufs.tokens, tokOffset: 0 });
        target.kv.append(n);
        return await finish();
      })
    );
  } finally {
    for (const b of temp) b.destroy();
  }
}

/** Zero the q rows no row drew from (the buffer keeps earlier steps' rows). */
function zeroUndrawn(q: Float32Array, triples: Uint32Array[], n: number, V: number): Float32Array {
  const used = new Uint8Array(n);
  for (const t of triples) for (let r = 0; r < t.length; r += 3) if (t[r + 1] > 0) used[t[r + 2]] = 1;
  for (let i = 0; i < n; i++) if (!used[i]) q.fill(0, i * V, (i + 1) * V);
  return q;
}
