/**
 * What only some backends can do, as interfaces a caller asks for with a guard (never `instanceof`):
 *
 * - {@link DeviceSampler}: pick tokens on the device (argmax or sampling) so only ids are read back, and
 *   chain several autoregressive steps in one submission.
 * - {@link FusedTreeStep}: a whole static-tree speculative step (draft levels with device-side child
 *   drawing, then the target over the tree) in one submission and one readback. The caller (the
 *   speculative engine) plans everything tree-shaped — positions, masks, which children each row draws —
 *   so the backend still only sees tokens, positions, masks and slots.
 * - {@link Paged}: weights streamed through a ring of layer slots under a GPU memory budget.
 * - {@link MultiSequence}: several sequences' KV caches, their new tokens run in one forward (batched
 *   streams: the weights read once for all of them).
 *
 * @module
 */

import type { CausalLM, ForwardInput } from "./causal_lm.ts";
import type { KvCache } from "./kv_cache.ts";
import type { SamplingParams } from "./sampling.ts";
import type { WeightsDtype } from "./weight_types.ts";

/** What a device-side head computes from each logit row. */
export type IdHead =
  | { kind: "argmax" }
  | { kind: "sample"; sampling: SamplingParams; uniforms: ArrayLike<number> };

/**
 * Ids a device has computed (or is computing) and not read back: a submitted decode batch or forward head
 * ({@link DeviceSampler.beginDecodeSteps}). Opaque to the caller but for these fields.
 */
export interface PendingIds {
  /** Ids the batch produces: decode steps, or the forward's logit rows. */
  readonly count: number;
  /** The cache length before the batch (decode step s ran at position past + s). */
  readonly past: number;
  /** The cache length after it: a batch chained from this one must start there. */
  readonly end: number;
}

/**
 * A model that picks tokens on its device and chains decode steps in one submission; and pipelines
 * them: a batch submitted while the previous one's readback is in flight (its first token the last id
 * the previous one wrote, still on the device), so the >= ~11 ms sync overlaps device work.
 */
export interface DeviceSampler {
  /** Forward, then argmax or sample each logit row on the device. */
  forwardIds(input: ForwardInput, head: IdHead): Promise<Uint32Array>;
  /** Feed `first` at position kv.length, then decode `steps` tokens in one submission. */
  decodeSteps(first: number, steps: number, head: IdHead): Promise<Uint32Array>;
  /** {@link forwardIds} without the readback: the ids stay on the device for a chained batch or a read. */
  beginForwardIds(input: ForwardInput, head: IdHead): Promise<PendingIds>;
  /**
   * Submit `steps` decode steps and return without waiting for them. The first token is `first` when a
   * number (a host id, fed at kv.length), else the last id the pending batch `first` wrote, read on the
   * device (the cache must still end where `first` ended). The cache grows by `steps` at once; a batch
   * never read is dropped by truncating the cache (its writes past the new length are dead).
   */
  beginDecodeSteps(first: number | PendingIds, steps: number, head: IdHead): Promise<PendingIds>;
  /**
   * Read a pending batch's ids: one sync. The copy is queued when this is called, before any batch begun
   * after the call, so it completes with its batch while later ones run. `withInput`: the batch's input
   * token first (a decode batch chained from one that was never read). A batch must be read before the
   * second batch begun after it (two id buffers alternate).
   */
  finishIds(batch: PendingIds, withInput?: boolean): Promise<Uint32Array>;
  /**
   * Submissions and device->host readbacks (syncs) since load; `overlapped`: decode batches submitted
   * while one of this model's readbacks was still in flight.
   */
  readonly counters: { submissions: number; readbacks: number; overlapped: number };
}

/** True when `m` implements {@link DeviceSampler}. */
export function isDeviceSampler(m: CausalLM): m is CausalLM & DeviceSampler {
  return typeof (m as Partial<DeviceSampler>).decodeSteps === "function";
}

/** Device->host readbacks of `m` since load (0 for backends without a device). */
export function readbacks(m: CausalLM): number {
  return isDeviceSampler(m) ? m.counters.readbacks : 0;
}

/**
 * One draft forward of a fused tree step, then the drawing of children for its rows.
 *
 * The step's token buffer holds (n) tree nodes (node 0 = the root) followed by the (k) pending tokens;
 * a forward reads its `positions.length` tokens from `tokOffset` in that buffer, appended after the
 * draft's cache as it stands when the forward runs (levels run in order).
 */
export interface FusedDraftForward {
  /** First token of this forward in the step's token buffer. */
  tokOffset: number;
  /** (rows) RoPE positions. */
  positions: Int32Array;
  /** (rows, past + rows) visibility, past = the draft cache length before this forward; omitted: causal. */
  mask?: Uint8Array;
  /**
   * (rows, 3) per row: first child node, child count (0: none), and the node whose draft distribution
   * (q row) this row is. Children are drawn from that row's logits into the token buffer at
   * [first child, first child + count). A row with count 0 draws nothing and its q row is ignored; a q
   * row belongs to at most one drawing row of the step.
   */
  draw: Uint32Array;
}

/** Everything one fused step runs. */
export interface FusedTreeStepPlan {
  /** (n) nodes in the tree, root included. */
  nodes: number;
  /** (k) tokens not yet in the draft's cache, the root last. */
  pending: number[];
  /** The draft forwards in order: the pending tokens first (causal), then one per tree level. */
  forwards: FusedDraftForward[];
  /** Target over all n nodes, after its cache: (n) positions and the (n, past + n) ancestor mask. */
  target: { positions: Int32Array; mask: Uint8Array };
  sampling: SamplingParams;
  /** Seed of the device-side drawing (one step's randomness). */
  seed: number;
  /** "swor": children without replacement (Sequoia); "iid": with replacement (chain, SpecInfer). */
  draw: "swor" | "iid";
  /** Read back the draft's q rows (needed by the rejection verifiers; not at temperature 0). */
  wantQ: boolean;
}

/** What a fused step reads back, with ONE sync. */
export interface FusedTreeStepResult {
  /** (n) tree tokens, root first (drawn on the device). */
  tokens: Int32Array;
  /** (n, vocab) target logits per node. */
  targetLogits: Float32Array;
  /** (n, vocab) draft distributions per node (rows of nodes without children are zero); when wantQ. */
  q?: Float32Array;
}

/** The verification rules a device applies (the CPU verifiers of speculative/verify/ are their oracle). */
export type DeviceVerifyRule = "greedy" | "match" | "swor" | "specinfer";

/** How a fused step verifies its tree on the device ({@link FusedTreeStep.fusedVerifiedStep}). */
export interface DeviceVerifyPlan {
  rule: DeviceVerifyRule;
  /** Each node's children in draw order; every child's index is larger than its parent's. */
  children: number[][];
  /**
   * (n) the draft cache slot of each node this step forwarded (the root's included), -1 for the others:
   * the draft keeps the longest forwarded prefix of the accepted path.
   */
  draftSlots: Int32Array;
  /** (>= n) uniforms in [0, 1), consumed in the CPU verifiers' order (greedy consumes none). */
  uniforms: Float32Array;
}

/** What a verified fused step reads back: the accepted path and the bonus, O(depth) bytes. */
export interface DeviceVerifiedStep {
  /** Accepted nodes (root excluded), in path order. */
  accepted: number[];
  /** Their tokens. */
  tokens: number[];
  /** The token drawn from the target after the last accepted node. */
  bonus: number;
  /** Path nodes the draft cache kept (its longest forwarded prefix); the rest are pending again. */
  draftKept: number;
  /** Bytes this step read back. */
  readbackBytes: number;
}

/** A tree forward's host inputs: (n) node tokens (root first), positions and the (n, past + n) mask. */
export interface TreeForwardInput {
  tokens: ArrayLike<number>;
  positions: ArrayLike<number>;
  mask: Uint8Array;
}

/** How a target verifies a tree drafted on the host ({@link TreeVerifier.verifiedForward}). */
export interface HostTreeVerifyPlan {
  rule: DeviceVerifyRule;
  /** Each node's children in draw order; every child's index is larger than its parent's. */
  children: number[][];
  /** (>= n) uniforms in [0, 1), consumed in the CPU verifiers' order. */
  uniforms: Float32Array;
  sampling: SamplingParams;
  /** Node v's draft distribution (vocab), for the rejection rules at the nodes with children. */
  q?: (v: number) => ArrayLike<number> | undefined;
}

/** A target that verifies a host-drafted tree on its device, reading back only the path. */
export interface TreeVerifier {
  /**
   * One forward over the tree after the cache, verified on the device with `plan.rule` in the same
   * submission; the cache then holds the root and the accepted path (`draftKept` is 0: no draft here).
   */
  verifiedForward(input: TreeForwardInput, plan: HostTreeVerifyPlan): Promise<DeviceVerifiedStep>;
}

/** True when `m` implements {@link TreeVerifier}. */
export function isTreeVerifier(m: CausalLM): m is CausalLM & TreeVerifier {
  return typeof (m as Partial<TreeVerifier>).verifiedForward === "function";
}

/** Limits of a fused step on a pair. */
export interface FusedTreeLimits {
  /** Most tree nodes + pending tokens the draft's buffers hold (n + k + 1 <= this). */
  maxDraftRows: number;
  /** Most nodes the target verifies in one forward. */
  maxNodes: number;
  /** Most children one row may draw on the device. */
  maxChildren: number;
}

/** A target that can run a whole speculative step with a draft on the same device. */
export interface FusedTreeStep {
  /** The limits of a fused step with `draft`, or undefined when this pair cannot run one. */
  fusedTreeLimits(draft: CausalLM): FusedTreeLimits | undefined;
  /**
   * Run the plan: the draft's forwards (its cache grows by every forwarded row), the target over the
   * tree (its cache grows by n), one readback.
   */
  fusedTreeStep(draft: CausalLM, plan: FusedTreeStepPlan): Promise<FusedTreeStepResult>;
  /**
   * Run the plan and verify on the device in the same submission: `verify.rule` walks the tree on the
   * target's and draft's rows in GPU memory, both caches are compacted there (the target keeps the root
   * and the accepted path, the draft its kept prefix), and only the path comes back. `plan.wantQ` is
   * ignored (the rows stay on the device).
   */
  fusedVerifiedStep(
    draft: CausalLM,
    plan: FusedTreeStepPlan,
    verify: DeviceVerifyPlan,
  ): Promise<DeviceVerifiedStep>;
}

/**
 * Several fused verified steps submitted back to back and read back once ({@link ChainedTreeSteps}).
 * Steps after the first are planned once, in their own coordinates: the draft's pending tokens are
 * [x, root] (x the previous step's last accepted token, forwarded again; root its bonus) at draft slots
 * 0 and 1 of an otherwise empty cache, the target's root at slot 0 of an empty cache, so positions are
 * relative (draft: to x, target: to the root), masks cover the step's own columns and draft slots count
 * from 0. The device places each step after the previous one's rows and finishes its inputs there.
 */
export interface ChainedStepsPlan {
  /** The first step, exactly as {@link FusedTreeStep.fusedVerifiedStep} takes it. */
  first: FusedTreeStepPlan;
  firstVerify: DeviceVerifyPlan;
  /** Every later step in the relative layout above (its `pending` and `seed` are ignored). */
  rest: FusedTreeStepPlan;
  /** Its tree and relative draft slots (root: 1); the uniforms are per step, below. */
  restVerify: Omit<DeviceVerifyPlan, "uniforms">;
  /** Steps after the first: each one's drawing seed and verification uniforms (same length). */
  seeds: number[];
  uniforms: Float32Array[];
}

/** A target that chains fused verified steps with a draft on its device: one readback for all. */
export interface ChainedTreeSteps {
  /**
   * Run 1 + seeds.length steps of `plan` with no readback between them and yield each step's path:
   * `overlap` false, all read at once after the last step; true (streaming), each read while the next
   * step runs. When the generator ends (a consumer may stop early: the step in flight is dropped) both
   * caches are as after that many single {@link FusedTreeStep.fusedVerifiedStep} calls, except that the
   * draft has not kept the last accepted token: its pending tokens are [last accepted token (the last
   * root when none), last bonus].
   */
  fusedVerifiedSteps(
    draft: CausalLM,
    plan: ChainedStepsPlan,
    overlap?: boolean,
  ): AsyncGenerator<DeviceVerifiedStep>;
}

/** True when `m` implements {@link ChainedTreeSteps}. */
export function hasChainedTreeSteps(m: CausalLM): m is CausalLM & ChainedTreeSteps {
  return typeof (m as Partial<ChainedTreeSteps>).fusedVerifiedSteps === "function";
}

/** True when `m` implements {@link FusedTreeStep}. */
export function hasFusedTreeStep(m: CausalLM): m is CausalLM & FusedTreeStep {
  return typeof (m as Partial<FusedTreeStep>).fusedTreeStep === "function";
}

/** How a model's weights are split between resident buffers and the layer ring. */
export interface PagingPlan {
  /** Decoder layers 0 .. residentLayers - 1 stay on the GPU. */
  residentLayers: number;
  /** Ring slots for the other layers (>= 2). */
  ringSlots: number;
  /** Bytes of one decoder layer's seven matrices (what a slot holds). */
  layerBytes: number;
  /** Resident bytes besides layers: embeddings, LM head, every norm. */
  baseBytes: number;
  /** Weight bytes on the GPU under this plan. */
  gpuWeightBytes: number;
  /** Bytes uploaded per forward pass (every streamed layer once). */
  bytesPerForward: number;
}

/** Cumulative paging counters (since load). */
export interface PagingStats {
  /** Layer refills and their bytes. */
  uploads: number;
  bytesUploaded: number;
  /** Refills served from the host-RAM cache. */
  hostHits: number;
  /**
   * Layers loaded on demand because their slot did not hold them when needed (0 in steady state: every
   * refill is scheduled ahead; after a failed read the ring reloads this way once).
   */
  demandLoads: number;
  /**
   * Time reading layer bytes from disk and putting them in the device layout (runs while the GPU computes,
   * unless it is stalled on).
   */
  readMs: number;
  /** Host time copying bytes into the queue (writeBuffer). */
  writeMs: number;
  /** Time a forward waited for a slot's refill: the part of reading and writing NOT hidden by compute. */
  stallMs: number;
  /** The plan in force. */
  plan: PagingPlan;
  /** Layers pinned in host RAM and their bytes. */
  hostCachedLayers: number;
  hostCachedBytes: number;
}

/** A model loaded with `--weights-dtype` (its matrices' types differ from the stored ones unless "auto"). */
export interface WeightsLoaded {
  readonly weightsDtype: WeightsDtype;
}

/** What `m`'s matrices were loaded as ("auto" for models that do not say: as stored). */
export function weightsDtypeOf(m: CausalLM | undefined): WeightsDtype {
  return (m as Partial<WeightsLoaded> | undefined)?.weightsDtype ?? "auto";
}

/** A model whose weights may be paged (the GPU backend); `paging` is undefined when all are resident. */
export interface Paged {
  readonly paging: PagingPlan | undefined;
  /** Cumulative counters since load (a copy), or undefined when resident. */
  pagingStats(): PagingStats | undefined;
  /** Resolves when no layer refill is in flight. */
  pagingIdle(): Promise<void>;
}

/** `m`'s paging, when it is a paged model (else undefined). */
export function pagedModel(m: CausalLM): (CausalLM & Paged) | undefined {
  const p = m as Partial<Paged>;
  return typeof p.pagingStats === "function" && p.paging ? m as CausalLM & Paged : undefined;
}

/** One sequence's new tokens in a batched forward ({@link MultiSequence.forwardBatch}). */
export interface SequenceInput {
  /** The sequence, in [0, sequences). */
  seq: number;
  /** Its tokens, positions, mask over its own cache (past = its cache's length) and logit rows. */
  input: ForwardInput;
}

/**
 * A model that holds `sequences` KV caches and runs several of them in one forward: each part appends
 * to its own sequence's cache and attends to it alone (a block-diagonal mask over the batch), and a
 * token's logits do not depend on which parts share the forward, so a stream's output is the same
 * batched or alone. Sequence 0's cache is the model's `kv`.
 */
export interface MultiSequence {
  /** Sequences the model holds caches for. */
  readonly sequences: number;
  /** Sequence `seq`'s cache. */
  cacheOf(seq: number): KvCache;
  /**
   * One forward over every part (at most one per sequence); logits per part, in order, rows as each
   * part's `logitRows`. Every part is checked before any runs: a refused batch changes no cache.
   */
  forwardBatch(parts: SequenceInput[]): Promise<Float32Array[]>;
}

/**
 * Throw unless `parts` is a valid batch for {@link MultiSequence.forwardBatch}: at least one part, each
 * sequence at most once (shared by backends; each checks its own sequences and inputs).
 */
export function checkSequenceParts(parts: readonly SequenceInput[]): void {
  if (parts.length === 0) throw new RangeError("forward: no sequences");
  const seen = new Set<number>();
  for (const { seq } of parts) {
    if (seen.has(seq)) throw new RangeError(`forward: sequence ${seq} appears twice in one batch`);
    seen.add(seq);
  }
}

/** True when `m` implements {@link MultiSequence} with more than one sequence. */
export function isMultiSequence(m: CausalLM): m is CausalLM & MultiSequence {
  const ms = m as Partial<MultiSequence>;
  return typeof ms.forwardBatch === "function" && (ms.sequences ?? 0) > 1;
}
