/**
 * Verification on the device (shaders/tree_verify.wgsl) for a target's tree forward: the buffers, the
 * checks of a verification plan, the recording (the verify dispatch and the KV commits it feeds, in the
 * forward's submission) and the decoding of its O(depth) readback. Used by the fused step (tree_step.ts:
 * the draft's tree drawn on the device) and by {@link runVerifiedForward} (a tree drafted on the host,
 * e.g. SpecExec's or a pruned-vocabulary draft's).
 *
 * @module
 */

import type {
  DeviceVerifiedStep,
  DeviceVerifyRule,
  HostTreeVerifyPlan,
  TreeForwardInput,
} from "../../model/capabilities.ts";
import type { SamplingParams } from "../../model/sampling.ts";
import type { Gpu } from "../device.ts";
import * as ops from "../ops.ts";
import type { GpuForward } from "./forward.ts";
import type { GpuKvCache } from "./kv_cache.ts";

/** Word offsets of the target's and the draft's KV source lists in the output (256-byte aligned). */
function verifyOffsets(maxBatch: number): { tOff: number; dOff: number; words: number } {
  const align = (w: number) => Math.ceil(w / 64) * 64;
  const tOff = align(2 + maxBatch), dOff = tOff + align(1 + maxBatch);
  return { tOff, dOff, words: dOff + 1 + maxBatch };
}

/** The buffers of verified steps of trees up to maxBatch nodes over `vocab` tokens. */
export class VerifyBuffers {
  /** (3 maxBatch) u32: the tree (CSR children, draft slots; tree_verify.wgsl's layout). */
  readonly tree: GPUBuffer;
  /** (maxBatch) f32 uniforms. */
  readonly uniforms: GPUBuffer;
  /** (2, vocab) f32 scratch of the rejection rules (residual p and q). */
  readonly work: GPUBuffer;
  /** The path, then the two KV commits' source lists (count first) at {@link offsets}. */
  readonly out: GPUBuffer;
  /** Word offsets of the target's and the draft's KV source lists in {@link out}. */
  readonly offsets: { tOff: number; dOff: number };
  /** (maxBatch, vocab) f32 q rows uploaded for host-drafted trees (allocated on the first that needs one). */
  private qRows?: GPUBuffer;

  constructor(private readonly gpu: Gpu, readonly maxBatch: number, readonly vocab: number) {
    this.tree = gpu.createBuffer("verify tree", 3 * maxBatch * 4);
    this.uniforms = gpu.createBuffer("verify uniforms", maxBatch * 4);
    this.work = gpu.createBuffer("verify work", 2 * vocab * 4);
    const o = verifyOffsets(maxBatch);
    this.out = gpu.createBuffer("verify out", o.words * 4);
    this.offsets = { tOff: o.tOff, dOff: o.dOff };
  }

  /** The q rows buffer of host-drafted trees. */
  q(): GPUBuffer {
    this.qRows ??= this.gpu.createBuffer("verify q", this.maxBatch * this.vocab * 4);
    return this.qRows;
  }

  /** A KV source list of {@link out} as a binding. */
  list(off: number): { buffer: GPUBuffer; offset: number; size: number } {
    return { buffer: this.out, offset: off * 4, size: (1 + this.maxBatch) * 4 };
  }

  /** Free the buffers. */
  destroy(): void {
    for (const b of [this.tree, this.uniforms, this.work, this.out, this.qRows]) b?.destroy();
  }
}

/** What a verification plan must say, whoever drafted the tree. */
interface VerifyPlanCore {
  rule: DeviceVerifyRule;
  children: number[][];
  uniforms: Float32Array;
  /** (n) draft slots (-1: none), when a draft cache is compacted on the device too. */
  draftSlots?: Int32Array;
}

/** A checked plan: the tree words to upload and the longest root-to-leaf path. */
export interface CheckedVerify {
  words: Uint32Array<ArrayBuffer>;
  maxDepth: number;
}

/**
 * Throw a RangeError naming the numbers unless `v` describes an n-node tree (children after their
 * parents, each node one parent), enough uniforms in [0, 1), the rule fits the temperature, and (with a
 * draft) slots in [rootSlot, draftEnd) with the root's first; returns the tree words (tree_verify.wgsl's
 * layout) and the most nodes a commit may move.
 */
export function checkVerify(
  what: string,
  v: VerifyPlanCore,
  n: number,
  sampling: SamplingParams,
  maxBatch: number,
  draft?: { rootSlot: number; end: number },
): CheckedVerify {
  if (!(v.rule in ops.VERIFY_RULES)) throw new RangeError(`${what}: unknown rule ${v.rule}`);
  if ((v.rule !== "greedy") !== sampling.temperature > 0) {
    throw new RangeError(
      `${what}: rule ${v.rule} at temperature ${sampling.temperature} (greedy is for 0 only)`,
    );
  }
  if (n > maxBatch) throw new RangeError(`${what}: ${n} nodes exceed maxBatch ${maxBatch}`);
  if (v.children.length !== n) {
    throw new RangeError(`${what}: ${v.children.length} child lists for ${n} nodes`);
  }
  if (v.uniforms.length < n) throw new RangeError(`${what}: ${v.uniforms.length} uniforms for ${n} nodes`);
  for (let i = 0; i < n; i++) {
    const u = v.uniforms[i];
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
  words.fill(0xffffffff, 2 * n);
  if (draft) {
    const s = v.draftSlots;
    if (!s || s.length !== n) throw new RangeError(`${what}: ${s?.length ?? 0} draft slots for ${n} nodes`);
    if (s[0] !== draft.rootSlot) {
      throw new RangeError(`${what}: the root's draft slot is ${s[0]}, expected ${draft.rootSlot}`);
    }
    for (let i = 0; i < n; i++) {
      if (s[i] !== -1 && !(Number.isInteger(s[i]) && s[i] >= draft.rootSlot && s[i] < draft.end)) {
        throw new RangeError(
          `${what}: node ${i}'s draft slot ${s[i]} outside [${draft.rootSlot}, ${draft.end})`,
        );
      }
      if (s[i] >= 0) words[2 * n + i] = s[i];
    }
  }
  return { words, maxDepth };
}

/**
 * Record (into the target's op context, after its tree forward) the verify dispatch over the forward's
 * n logit rows and the commits it feeds: the target's cache keeps the root (slot L) and the accepted
 * path; with `draft`, its cache keeps the path's forwarded prefix after `draft.rootSlot`.
 */
export async function recordVerify(
  target: GpuForward,
  vb: VerifyBuffers,
  a: {
    rule: DeviceVerifyRule;
    checked: CheckedVerify;
    uniforms: Float32Array;
    q: GPUBuffer;
    tokens: GPUBuffer;
    n: number;
    sampling: SamplingParams;
    draft?: { kv: GpuKvCache; rootSlot: number };
  },
): Promise<void> {
  const L = target.kv.length - a.n; // the forward appended its n rows already
  const queue = target.gpu.device.queue;
  queue.writeBuffer(vb.tree, 0, a.checked.words);
  queue.writeBuffer(vb.uniforms, 0, Float32Array.from(a.uniforms.subarray(0, a.n)));
  const { tOff, dOff } = vb.offsets;
  await ops.treeVerify(target.ctx, {
    rule: a.rule,
    logits: target.logits,
    q: a.q,
    tree: vb.tree,
    tokens: a.tokens,
    uniforms: vb.uniforms,
    work: vb.work,
    out: vb.out,
    n: a.n,
    vocab: target.config.vocabSize,
    temperature: a.sampling.temperature,
    topK: a.sampling.topK,
    topP: a.sampling.topP,
    targetBase: L,
    tOffset: tOff,
    dOffset: dOff,
  });
  const d = a.checked.maxDepth;
  if (d > 0) {
    await target.kv.recordCommit(target.ctx, vb.list(tOff), d, L + 1);
    if (a.draft) await a.draft.kv.recordCommit(target.ctx, vb.list(dOff), d, a.draft.rootSlot + 1);
  }
}

/**
 * Submit, read the path back (4 (2 + depth) bytes, one sync) and settle the target's cache at the root +
 * the accepted path; `draftSlots` (when a draft cache was compacted too) gives how many path nodes it kept.
 */
export async function finishVerify(
  target: GpuForward,
  vb: VerifyBuffers,
  what: string,
  n: number,
  children: number[][],
  maxDepth: number,
  draftSlots?: Int32Array,
): Promise<DeviceVerifiedStep> {
  const L = target.kv.length - n;
  await target.submit(what);
  const bytes = 4 * (2 + maxDepth);
  const out = new Uint32Array(await target.readback(vb.out, bytes));
  const r = decodePath(what, out, children, maxDepth, draftSlots);
  target.kv.settle(L + 1 + r.accepted.length);
  return { ...r, readbackBytes: bytes };
}

/**
 * Decode tree_verify's words [count, bonus, token | rank << 24 ...] (from word 0 of `out`) into the
 * accepted nodes of the tree with `children`, checking them; `draftSlots` gives how many path nodes the
 * draft cache kept (its longest forwarded prefix; 0 without).
 */
export function decodePath(
  what: string,
  out: Uint32Array,
  children: number[][],
  maxDepth: number,
  draftSlots?: Int32Array,
): Omit<DeviceVerifiedStep, "readbackBytes"> {
  const count = out[0];
  if (count > maxDepth) throw new Error(`${what}: the device accepted ${count} > depth ${maxDepth}`);
  const accepted: number[] = [], tokens: number[] = [];
  let v = 0;
  for (let i = 0; i < count; i++) {
    const rank = out[2 + i] >>> 24, kids = children[v];
    if (rank < 1 || rank > kids.length) {
      throw new Error(`${what}: the device accepted rank ${rank} of node ${v}'s ${kids.length}`);
    }
    v = kids[rank - 1];
    accepted.push(v);
    tokens.push(out[2 + i] & 0xffffff);
  }
  let draftKept = 0;
  if (draftSlots) { while (draftKept < count && draftSlots[accepted[draftKept]] >= 0) draftKept++; }
  return { accepted, tokens, bonus: out[1], draftKept };
}

/**
 * A target forward over a tree drafted on the host, verified on the device in the same submission: the
 * target's cache ends at the root + the accepted path, one readback of the path. q rows (rejection
 * rules) are uploaded for the nodes that have children. A failure leaves the cache as it was.
 */
export async function runVerifiedForward(
  target: GpuForward,
  vb: VerifyBuffers,
  input: TreeForwardInput,
  plan: HostTreeVerifyPlan,
): Promise<DeviceVerifiedStep> {
  const what = "verifiedForward", n = input.tokens.length, V = target.config.vocabSize;
  const checked = checkVerify(what, plan, n, plan.sampling, vb.maxBatch);
  const needsQ = plan.rule === "swor" || plan.rule === "specinfer";
  const st = target.inputs.stage(what, input, target.kv.length);
  // Any buffer bound read-only elsewhere in the dispatch: the greedy and match rules never read q.
  let q = vb.tree;
  if (needsQ) {
    q = vb.q();
    for (let v = 0; v < n; v++) {
      if (plan.children[v].length === 0) continue;
      const row = plan.q?.(v);
      if (!row || row.length !== V) {
        throw new RangeError(
          `${what}: rule ${plan.rule} needs node ${v}'s q row of ${V} (got ${row?.length ?? 0})`,
        );
      }
      target.gpu.device.queue.writeBuffer(q, v * V * 4, Float32Array.from(row));
    }
  }
  return await target.atomically(async () => {
    await target.record({ ...st, tokens: target.inputs.tokens, tokOffset: 0 });
    target.kv.append(n);
    await recordVerify(target, vb, {
      rule: plan.rule,
      checked,
      uniforms: plan.uniforms,
      q,
      tokens: target.inputs.tokens,
      n,
      sampling: plan.sampling,
    });
    return await finishVerify(target, vb, what, n, plan.children, checked.maxDepth);
  });
}
