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
import { checkInput, checkTokens, type StagedInput } from "./inputs.ts";
import { checkVerify, finishVerify, recordVerify, VerifyBuffers } from "./verify_step.ts";
import type { ChainBuffers } from "./step_chain.ts";

/** The limits of a fused step with `draft` as the draft and `target` as the verifier. */
export function fusedLimits(target: { maxBatch: number }, draft: { maxBatch: number }): FusedTreeLimits {
  return { maxDraftRows: draft.maxBatch, maxNodes: target.maxBatch, maxChildren: ops.MAX_CHILDREN };
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

  /** The verification buffers of verified fused steps. */
  readonly verify: VerifyBuffers;
  /** The state of chained steps (multi_step.ts), allocated by the first chain. */
  chain?: ChainBuffers;

  constructor(gpu: Gpu, readonly maxBatch: number, vocab: number) {
    this.tokens = gpu.createBuffer("tree tokens", (2 * maxBatch + 8) * 4);
    this.q = gpu.createBuffer("tree q", maxBatch * vocab * 4);
    this.verify = new VerifyBuffers(gpu, maxBatch, vocab);
  }

  /** Free the buffers. */
  destroy(): void {
    for (const b of [this.tokens, this.q]) b.destroy();
    this.verify.destroy();
    this.chain?.destroy();
  }
}

/**
 * Throw a RangeError naming the numbers unless `plan` fits `lim` and the caches; returns the (rows, 3)
 * draw triples to upload per forward, with the q row of a row that draws nothing moved to the scratch
 * row n (tree_draw writes q for every row it runs, and several childless rows must not race on a node's
 * row; n < maxDraftRows, and only rows [0, n) are read back). `past`: the caches' lengths the plan is
 * laid out after (a chained step's, multi_step.ts; default: now).
 */
export function checkPlan(
  plan: FusedTreeStepPlan,
  lim: FusedTreeLimits,
  draft: GpuForward,
  target: GpuForward,
  past: { draft: number; target: number } = { draft: draft.kv.length, target: target.kv.length },
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
  if (past.draft + rows > draft.capacity) {
    throw new RangeError(
      `${what}: draft ${past.draft} cached + ${rows} rows exceed the KV capacity ${draft.capacity}`,
    );
  }
  checkInput(`${what}: target`, plan.target, past.target, target.inputs.lim);
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
  const what = "fusedVerifiedStep";
  const triples = checkPlan(plan, lim, draft, target);
  const n = plan.nodes, rootSlot = draft.kv.length + plan.pending.length - 1;
  const draftRows = triples.reduce((a, t) => a + t.length / 3, 0);
  const checked = checkVerify(what, verify, n, plan.sampling, bufs.verify.maxBatch, {
    rootSlot,
    end: draft.kv.length + draftRows,
  });
  return await runDraftAndTarget(target, draft, bufs, plan, triples, async () => {
    await recordVerify(target, bufs.verify, {
      rule: verify.rule,
      checked,
      uniforms: verify.uniforms,
      q: bufs.q,
      tokens: bufs.tokens,
      n,
      sampling: plan.sampling,
      draft: { kv: draft.kv, rootSlot },
    });
    const r = await finishVerify(
      target,
      bufs.verify,
      what,
      n,
      verify.children,
      checked.maxDepth,
      verify.draftSlots,
    );
    draft.kv.settle(rootSlot + 1 + r.draftKept);
    return r;
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
  const n = plan.nodes, k = plan.pending.length;
  const queue = draft.gpu.device.queue;
  const temp: GPUBuffer[] = [];
  try {
    return await target.atomically(() =>
      draft.atomically(async () => {
        queue.writeBuffer(bufs.tokens, 0, Uint32Array.of(plan.pending[k - 1]));
        queue.writeBuffer(bufs.tokens, n * 4, Uint32Array.from(plan.pending));
        await recordDraftForwards(draft, bufs, plan, triples, temp, "fusedTreeStep");
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

/**
 * Record (not submit) the draft's forwards of `plan` into its op context: forward f staged at increasing
 * offsets of the positions and mask buffers, reading its tokens at `tokOffset` of the step's token buffer,
 * then its tree_draw with its (rows, 3) triples in a small buffer of its own (pushed to `temp`: the caller
 * frees it after the submission) and seed `(plan.seed ^ Math.imul(f + 1, 0x9e3779b1)) >>> 0`. `staged`
 * runs between a forward's staging and its recording (a chained step finishes its inputs there).
 */
export async function recordDraftForwards(
  draft: GpuForward,
  bufs: FusedStepBuffers,
  plan: FusedTreeStepPlan,
  triples: Uint32Array<ArrayBuffer>[],
  temp: GPUBuffer[],
  what: string,
  staged?: (st: StagedInput) => Promise<void>,
): Promise<void> {
  const queue = draft.gpu.device.queue, V = draft.config.vocabSize;
  let posOffset = 0, maskOffset = 0;
  for (const [fi, f] of plan.forwards.entries()) {
    const st = draft.inputs.stage(`${what}: forward ${fi}`, f, draft.kv.length, { posOffset, maskOffset });
    await staged?.(st);
    await draft.record({ ...st, tokens: bufs.tokens, tokOffset: f.tokOffset });
    draft.kv.append(st.n);
    posOffset += st.n;
    maskOffset += st.maskBits?.length ?? 0;
    const drawBuf = draft.gpu.createBuffer(`${what}: plan ${fi}`, st.n * 12);
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
}

/** Zero the q rows no row drew from (the buffer keeps earlier steps' rows). */
function zeroUndrawn(q: Float32Array, triples: Uint32Array[], n: number, V: number): Float32Array {
  const used = new Uint8Array(n);
  for (const t of triples) for (let r = 0; r < t.length; r += 3) if (t[r + 1] > 0) used[t[r + 2]] = 1;
  for (let i = 0; i < n; i++) if (!used[i]) q.fill(0, i * V, (i + 1) * V);
  return q;
}
