/**
 * Several fused verified steps with ONE readback (ChainedTreeSteps): step k + 1 is recorded and
 * submitted before step k's result is known, so the GPU->CPU sync (>= ~11 ms in Deno's WebGPU) is paid
 * once per chain instead of once per step.
 *
 * What the host cannot know in advance is how much each step accepts, so nothing it stages may depend
 * on it:
 * - Slots: each step compacts its own rows on the device as a single step does (tree_verify's lists,
 *   kv_copy INDIRECT: the target's accepted rows right after its root, the draft's kept prefix right
 *   after its root), and the next step writes its rows after the most rows a step can keep (1 + depth
 *   on the target, 2 + depth on the draft), whatever this one kept. The few rows left between (a step
 *   that kept less) are masked out: which slots are visible is a bitmap on the device (vis), set by
 *   shaders/chain_state.wgsl from the verification result, and every later mask row is ORed with it
 *   (shaders/chain_inputs.wgsl). The host stages only each step's own columns.
 * - Positions: staged relative to the step's root, made absolute on the device from the root's
 *   position, which chain_state advances by 1 + accepted.
 * - Tokens: chain_state writes the next root (the bonus) and the draft's pending rows [x, bonus], x being
 *   the last accepted token forwarded again (the draft's own row for it is hidden), so every later step
 *   has the same shape: 2 pending rows, then the tree's levels.
 * After the readback the host replays chain_state's CPU twin on the results (step_chain.ts) and
 * compacts both caches to the visible slots (one kv_copy commit each, no further sync).
 *
 * Exactness: each step runs the same kernels on the same rows as a single fused step (tree_draw,
 * tree_verify); only the attention's key order has gaps (masked rows), so greedy output equals AR's
 * and sampled output follows the target distribution exactly as single steps do.
 *
 * @module
 */

import type {
  ChainedStepsPlan,
  DeviceVerifiedStep,
  DeviceVerifyPlan,
  FusedDraftForward,
  FusedTreeLimits,
  FusedTreeStepPlan,
} from "../../model/capabilities.ts";
import * as ops from "../ops.ts";
import type { GpuForward } from "./forward.ts";
import { ChainBuffers, chainStateCpu, NONE, prefixBitmap, visibleSlots } from "./step_chain.ts";
import type { StagedRead } from "../device.ts";
import { checkPlan, type FusedStepBuffers, recordDraftForwards } from "./tree_step.ts";
import type { StagedInput } from "./inputs.ts";
import { type CheckedVerify, checkVerify, decodePath, recordVerify } from "./verify_step.ts";

/** One step as recorded: its draft forwards and target input in absolute slots, its verification. */
interface StepLayout {
  plan: FusedTreeStepPlan;
  verify: DeviceVerifyPlan;
  checked: CheckedVerify;
  triples: Uint32Array<ArrayBuffer>[];
  /** Draft slot of this step's x row (NONE for the first step, whose pending rows are the host's). */
  xSlot: number;
  /** Draft slot of this step's root (its first forward's last row). */
  rootSlot: number;
  /** Draft slot of this step's first row (the draft's cache length its forwards start after). */
  draftStart: number;
  /** Target slot of this step's root (the target's cache length its forward starts after). */
  targetBase: number;
}

/** The longest root-to-leaf path (edges) of a tree given by its children lists (parents first). */
function treeDepth(children: number[][]): number {
  const depth = new Int32Array(children.length);
  let max = 0;
  children.forEach((kids, p) => {
    for (const c of kids) max = Math.max(max, depth[c] = depth[p] + 1);
  });
  return max;
}

/** (rows, past + rows) mask of a relative (rows, w) mask with its columns moved right by `shift`. */
function shiftMask(mask: Uint8Array, rows: number, w: number, shift: number): Uint8Array {
  const wa = w + shift, out = new Uint8Array(rows * wa);
  for (let r = 0; r < rows; r++) out.set(mask.subarray(r * w, (r + 1) * w), r * wa + shift);
  return out;
}

/** (m, m) causal mask (the pending rows of a relative step). */
function causalMask(m: number): Uint8Array {
  const out = new Uint8Array(m * m);
  for (let r = 0; r < m; r++) out.fill(1, r * m, r * m + r + 1);
  return out;
}

/**
 * The relative plan `rest` placed at draft slot `d0` (its x row) and target slot `t0` (its root): masks
 * moved right, the pending forward given an explicit causal mask (the cache before it is masked by
 * vis), draft slots moved; positions stay relative (finished on the device).
 */
function placeRest(
  what: string,
  rest: FusedTreeStepPlan,
  verify: ChainedStepsPlan["restVerify"],
  uniforms: Float32Array,
  seed: number,
  d0: number,
  t0: number,
): { plan: FusedTreeStepPlan; verify: DeviceVerifyPlan } {
  let cols = 0; // the relative cache length before each forward
  const forwards = rest.forwards.map((f: FusedDraftForward, fi): FusedDraftForward => {
    const m = f.positions.length;
    const rel = f.mask ?? causalMask(m);
    if (rel.length !== m * (cols + m)) {
      throw new RangeError(
        `${what}: rest forward ${fi} has a mask of ${rel.length} entries, expected ${m} x ${cols + m}`,
      );
    }
    const mask = shiftMask(rel, m, cols + m, d0);
    cols += m;
    return { ...f, mask };
  });
  const n = rest.nodes;
  const target = { positions: rest.target.positions, mask: shiftMask(rest.target.mask, n, n, t0) };
  const draftSlots = Int32Array.from(verify.draftSlots, (s) => (s < 0 ? -1 : s + d0));
  return {
    plan: { ...rest, pending: [0, 0], forwards, target, seed },
    verify: { ...verify, draftSlots, uniforms },
  };
}

/** Rows a plan's draft forwards append to the draft's cache. */
function draftRows(plan: FusedTreeStepPlan): number {
  return plan.forwards.reduce((a, f) => a + f.positions.length, 0);
}

/** A checked chain: every step's layout in absolute slots, and where the chain starts. */
interface Chain {
  layouts: StepLayout[];
  /** Words of one step's result: count, bonus, the deepest path. */
  stride: number;
  T0: number;
  rootSlot0: number;
}

/** Check `plan` against the caches and limits and lay every step out (nothing is recorded). */
function layOut(
  target: GpuForward,
  draft: GpuForward,
  bufs: FusedStepBuffers,
  plan: ChainedStepsPlan,
  lim: FusedTreeLimits,
): Chain {
  const what = "fusedVerifiedSteps";
  const K = 1 + plan.seeds.length, n = plan.first.nodes;
  if (plan.uniforms.length !== plan.seeds.length) {
    throw new RangeError(`${what}: ${plan.seeds.length} seeds but ${plan.uniforms.length} uniform sets`);
  }
  if (plan.rest.nodes !== n) {
    throw new RangeError(`${what}: the later steps have ${plan.rest.nodes} nodes, the first ${n}`);
  }
  if (plan.rest.pending.length !== 2) {
    throw new RangeError(`${what}: the later steps have ${plan.rest.pending.length} pending rows, not 2`);
  }
  const T0 = target.kv.length, D0 = draft.kv.length, k0 = plan.first.pending.length;
  const rootSlot0 = D0 + k0 - 1;
  const rows0 = draftRows(plan.first), rowsR = draftRows(plan.rest);
  // The most rows a step keeps: the target its root and path, the draft its x row, root and prefix.
  const maxDepth = Math.max(treeDepth(plan.firstVerify.children), treeDepth(plan.restVerify.children));
  const stride = 2 + maxDepth;
  // Step j's target root at T0 + j (1 + depth); its draft rows from the first step's root + 1 + depth on.
  const tBase = (j: number) => T0 + j * (1 + maxDepth);
  const dStart = (j: number) => j === 0 ? D0 : rootSlot0 + 1 + maxDepth + (j - 1) * (2 + maxDepth);
  // Everything up front, so nothing is submitted for a chain that cannot run to the end.
  const tEnd = tBase(K - 1) + n, dEnd = K === 1 ? D0 + rows0 : dStart(K - 1) + rowsR;
  if (tEnd > target.capacity) {
    throw new RangeError(
      `${what}: ${K} steps of ${n} nodes after ${T0} reach slot ${tEnd}, past the target's KV capacity ${target.capacity}`,
    );
  }
  if (dEnd > draft.capacity) {
    throw new RangeError(
      `${what}: ${K} steps after ${D0} reach draft slot ${dEnd}, past the draft's KV capacity ${draft.capacity}`,
    );
  }
  // The final compaction moves every step's root and path (and the draft's x rows) in one commit.
  const moves = K * (2 + maxDepth);
  if (moves > Math.min(target.maxBatch, draft.maxBatch)) {
    throw new RangeError(
      `${what}: ${K} steps of depth ${maxDepth} may move ${moves} rows, more than maxBatch ${
        Math.min(target.maxBatch, draft.maxBatch)
      }`,
    );
  }
  const layouts: StepLayout[] = [{
    plan: plan.first,
    verify: plan.firstVerify,
    triples: checkPlan(plan.first, lim, draft, target),
    checked: checkVerify(what, plan.firstVerify, n, plan.first.sampling, bufs.verify.maxBatch, {
      rootSlot: rootSlot0,
      end: D0 + rows0,
    }),
    xSlot: NONE,
    rootSlot: rootSlot0,
    draftStart: D0,
    targetBase: T0,
  }];
  for (let j = 1; j < K; j++) {
    const d = dStart(j), t = tBase(j);
    const placed = placeRest(what, plan.rest, plan.restVerify, plan.uniforms[j - 1], plan.seeds[j - 1], d, t);
    layouts.push({
      ...placed,
      triples: checkPlan(placed.plan, lim, draft, target, { draft: d, target: t }),
      checked: checkVerify(what, placed.verify, n, placed.plan.sampling, bufs.verify.maxBatch, {
        rootSlot: d + 1,
        end: d + rowsR,
      }),
      xSlot: d,
      rootSlot: d + 1,
      draftStart: d,
      targetBase: t,
    });
  }
  return { layouts, stride, T0, rootSlot0 };
}

/**
 * Run the chain (see {@link ChainedTreeSteps.fusedVerifiedSteps}): `target` verifies, `draft` drafts
 * into `bufs`. `overlap` false: every step is submitted, then every path read with one sync. true
 * (streaming): step j + 1 is submitted before step j's path is read, so each sync overlaps the next
 * step's work and each step's tokens come as soon as it ran. Both caches are compacted to the steps
 * yielded when the generator ends (a consumer that stops early drops the step in flight); a failure
 * before any step was yielded leaves them as they were.
 */
export async function* runFusedVerifiedSteps(
  target: GpuForward,
  draft: GpuForward,
  bufs: FusedStepBuffers,
  plan: ChainedStepsPlan,
  lim: FusedTreeLimits,
  overlap = false,
): AsyncGenerator<DeviceVerifiedStep> {
  const chain = layOut(target, draft, bufs, plan, lim);
  const { layouts, stride, T0 } = chain;
  const K = layouts.length, n = plan.first.nodes, D0 = draft.kv.length;
  const wordsT = Math.ceil(target.capacity / 32), wordsD = Math.ceil(draft.capacity / 32);
  if (!bufs.chain?.fits(wordsT, wordsD, K * stride)) {
    bufs.chain?.destroy();
    bufs.chain = new ChainBuffers(draft.gpu, wordsT, wordsD, Math.max(K * stride, 64));
  }
  const cb = bufs.chain;
  const queue = draft.gpu.device.queue;
  const replay = new ChainReplay(chain, wordsT, wordsD, plan.first.pending[plan.first.pending.length - 1], n);
  const temp: GPUBuffer[] = [];
  const reads: (StagedRead | undefined)[] = [];
  let yielded = 0;
  try {
    queue.writeBuffer(cb.state, 0, Uint32Array.of(T0, 0, 0, 0));
    queue.writeBuffer(cb.visT, 0, replay.visT);
    queue.writeBuffer(cb.visD, 0, replay.visD);
    const pending = plan.first.pending;
    queue.writeBuffer(bufs.tokens, 0, Uint32Array.of(pending[pending.length - 1]));
    queue.writeBuffer(bufs.tokens, n * 4, Uint32Array.from(pending));
    const record = async (j: number) => {
      await recordStep(target, draft, bufs, cb, layouts[j], j, stride, temp, (t) => {
        if (overlap) reads[j] = t.readLater(cb.results, j * stride * 4, stride * 4);
      });
    };
    if (!overlap) {
      for (let j = 0; j < K; j++) await record(j);
      const words = new Uint32Array(await target.readback(cb.results, K * stride * 4));
      for (let j = 0; j < K; j++) {
        const step = replay.step(layouts[j], words.subarray(j * stride, (j + 1) * stride));
        yielded++;
        yield step;
      }
    } else {
      await record(0);
      for (let j = 0; j < K; j++) {
        if (j + 1 < K) await record(j + 1);
        const r = reads[j]!;
        reads[j] = undefined;
        const words = new Uint32Array(await target.finishRead(r));
        const step = replay.step(layouts[j], words);
        yielded++;
        yield step;
      }
    }
  } catch (e) {
    if (yielded === 0) {
      target.kv.restore(T0);
      draft.kv.restore(D0);
      target.ctx.rec.discard();
      draft.ctx.rec.discard();
    }
    throw e;
  } finally {
    for (const r of reads) if (r) draft.gpu.dropRead(r);
    for (const b of temp) b.destroy();
    if (yielded > 0) await replay.compact(target, draft);
  }
}

/** Record and submit step j: the draft's forwards (each with its tree_draw), the target, verify, chain_state. */
async function recordStep(
  target: GpuForward,
  draft: GpuForward,
  bufs: FusedStepBuffers,
  chain: ChainBuffers,
  l: StepLayout,
  j: number,
  stride: number,
  temp: GPUBuffer[],
  /** Records more into the target's submission after chain_state (a staged read of this step's result). */
  after: (target: GpuForward) => void,
): Promise<void> {
  const { plan } = l, n = plan.nodes;
  // Each step's rows start where the layout says, after the most rows the previous step could keep
  // (the caches' host lengths count slots written, not tokens; ChainReplay.compact ends the chain).
  draft.kv.restore(l.draftStart);
  target.kv.restore(l.targetBase);
  // Later steps finish their staged inputs on the device: positions relative to x (one before the
  // root) for the draft, to the root for the target; masks ORed with the visible slots.
  const finish = async (m: GpuForward, vis: GPUBuffer, st: StagedInput, shift: number) => {
    if (j === 0) return;
    await ops.chainInputs(m.ctx, {
      state: chain.state,
      vis,
      positions: m.inputs.positions,
      mask: m.inputs.mask,
      rows: st.n,
      posOffset: st.posOffset,
      shift,
      maskOffset: st.maskOffset,
      maskWords: st.maskWords,
    });
  };
  await recordDraftForwards(
    draft,
    bufs,
    plan,
    l.triples,
    temp,
    `fusedVerifiedSteps: step ${j}`,
    (st) => finish(draft, chain.visD, st, 1),
  );
  await draft.submit(`chain step ${j} draft`);
  const st = target.inputs.stage(`fusedVerifiedSteps: step ${j} target`, plan.target, target.kv.length);
  await finish(target, chain.visT, st, 0);
  await target.record({ ...st, tokens: bufs.tokens, tokOffset: 0 });
  target.kv.append(n);
  const vb = bufs.verify;
  // tree_verify over this step's rows and both caches' commits, as a single step; then the chain state.
  await recordVerify(target, vb, {
    rule: l.verify.rule,
    checked: l.checked,
    uniforms: l.verify.uniforms,
    q: bufs.q,
    tokens: bufs.tokens,
    n,
    sampling: plan.sampling,
    draft: { kv: draft.kv, rootSlot: l.rootSlot },
  });
  await ops.chainState(target.ctx, {
    out: vb.out,
    state: chain.state,
    visT: chain.visT,
    visD: chain.visD,
    tokens: bufs.tokens,
    results: chain.results,
    n,
    maxDepth: l.checked.maxDepth,
    targetBase: l.targetBase,
    xSlot: l.xSlot,
    rootSlot: l.rootSlot,
    dOffset: vb.offsets.dOff,
    rOffset: j * stride,
  });
  after(target);
  await target.submit(`chain step ${j} target`);
}

/**
 * The host's copy of the chain's state: every step's path decoded from its result and chain_state's CPU
 * twin replayed on it, so the host knows which slots stayed visible (what {@link compact} keeps).
 */
class ChainReplay {
  readonly visT: Uint32Array<ArrayBuffer>;
  readonly visD: Uint32Array<ArrayBuffer>;
  private readonly state: Uint32Array;
  private readonly tokens: Uint32Array;

  constructor(
    private readonly chain: Chain,
    wordsT: number,
    wordsD: number,
    root: number,
    private readonly n: number,
  ) {
    this.visT = prefixBitmap(wordsT, chain.T0);
    this.visD = prefixBitmap(wordsD, chain.rootSlot0);
    this.state = Uint32Array.of(chain.T0, 0, 0, 0);
    this.tokens = new Uint32Array(n + 2);
    this.tokens[0] = root;
  }

  /** Decode step `l`'s result words [count, bonus, path...] and advance the state as the device did. */
  step(l: StepLayout, res: Uint32Array): DeviceVerifiedStep {
    const stride = this.chain.stride;
    const r = decodePath(
      "fusedVerifiedSteps",
      res,
      l.verify.children,
      l.checked.maxDepth,
      l.verify.draftSlots,
    );
    const out = new Uint32Array(stride + 1); // the path words, then the draft's kept count
    out.set(res.subarray(0, stride));
    out[stride] = r.draftKept;
    chainStateCpu({
      out,
      state: this.state,
      visT: this.visT,
      visD: this.visD,
      tokens: this.tokens,
      results: new Uint32Array(stride),
      n: this.n,
      maxDepth: l.checked.maxDepth,
      targetBase: l.targetBase,
      xSlot: l.xSlot,
      rootSlot: l.rootSlot,
      dOffset: stride,
      rOffset: 0,
    });
    return { ...r, readbackBytes: stride * 4 }; // its share of a chain's readback, or its own
  }

  /**
   * Compact both caches to the visible slots (one kv_copy commit each, no sync): the target then holds
   * every token before the next root, the draft every token before [x, root].
   */
  async compact(target: GpuForward, draft: GpuForward): Promise<void> {
    const { T0, rootSlot0 } = this.chain;
    await target.kv.commit(T0, visibleSlots(this.visT, T0, target.kv.length));
    await draft.kv.commit(rootSlot0, visibleSlots(this.visD, rootSlot0, draft.kv.length));
    const p = this.state[0];
    if (target.kv.length !== p || draft.kv.length !== p - 1) {
      throw new Error(
        `fusedVerifiedSteps: after compaction the caches hold ${target.kv.length} and ${draft.kv.length} slots, expected ${p} and ${
          p - 1
        }`,
      );
    }
  }
}
