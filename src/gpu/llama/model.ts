/**
 * The Llama model on WebGPU as a {@link CausalLM} with the device capabilities ({@link DeviceSampler},
 * {@link Paged}, {@link FusedTreeStep}): a thin facade over the parts of gpu/llama/ — weights.ts (the
 * uploaded checkpoint and paging), inputs.ts (checking and staging a forward's inputs), forward.ts
 * (recording forwards and heads), kv_cache.ts (the cache) and tree_step.ts (the fused step). Weights keep
 * their checkpoint type (or `weightsDtype`'s), activations are f32, the KV cache f32 or f16 (load option
 * kvDtype), attention the one-pass flash kernel (or the classic one, load option attention), a whole
 * forward is one submission, and logits / argmax / samples are computed on the GPU so only what the caller needs is read back.
 *
 * @module
 */

import type { MatmulUse } from "../matmul_choice.ts";
import type { MatmulChoice } from "../matmul_tiled.ts";
import type { ModelConfig } from "../../model/config.ts";
import type { Checkpoint } from "../../model/folder.ts";
import { type CausalLM, ForwardCancelled, type ForwardInput } from "../../model/causal_lm.ts";
import type {
  ChainedStepsPlan,
  ChainedTreeSteps,
  DeviceSampler,
  DeviceVerifiedStep,
  DeviceVerifyPlan,
  FusedTreeLimits,
  FusedTreeStep,
  FusedTreeStepPlan,
  FusedTreeStepResult,
  HostTreeVerifyPlan,
  IdHead,
  Paged,
  PagingPlan,
  PagingStats,
  PendingIds,
  TreeForwardInput,
  TreeVerifier,
  WeightsLoaded,
} from "../../model/capabilities.ts";
import { type Gpu, GpuError } from "../device.ts";
import { type AttentionKernel, defaultAttention, type GpuCounters, GpuForward, isGreedy } from "./forward.ts";
import type { KvDtype } from "../ops.ts";
import { KV_BYTES } from "./kv_cache.ts";
import { checkInput, checkTokens } from "./inputs.ts";
import type { GpuKvCache } from "./kv_cache.ts";
import { fusedLimits, FusedStepBuffers, runFusedTreeStep, runFusedVerifiedStep } from "./tree_step.ts";
import { runFusedVerifiedSteps } from "./multi_step.ts";
import { GpuWeights } from "./weights.ts";
import { runVerifiedForward, VerifyBuffers } from "./verify_step.ts";
import type { WeightsDtype } from "../../model/weight_types.ts";

export type { GpuCounters, Head } from "./forward.ts";

/** Options of {@link GpuLlama.load}. */
export interface GpuLlamaOptions {
  /** KV slots (default: the model's context length). */
  capacity?: number;
  /** Most tokens in one forward pass; longer prompts are processed in chunks (default 256). */
  maxBatch?: number;
  /**
   * Bytes of GPU memory the weights may use (default: no limit). When the model does not fit, decoder
   * layers are streamed through a ring of layer slots (see gpu/paging/pager.ts); KV cache and activations
   * are sized by `capacity` and `maxBatch` and not counted here.
   */
  gpuMemoryBudget?: number;
  /** Bytes of host RAM for caching streamed layers (default: all of them, up to half the free RAM). */
  hostMemoryBudget?: number;
  /** Most ring slots when paging (default MAX_RING_SLOTS of gpu/paging/plan.ts, at least 2). */
  maxRingSlots?: number;
  /** KV cache element type (default "f32"; "f16" halves the cache, rounding keys and values once). */
  kvDtype?: KvDtype;
  /** Attention kernel (default: flash where head_dim % 4 == 0; see GpuForwardOptions.attention). */
  attention?: AttentionKernel;
  /** What type each matrix is loaded as (model/weight_types.ts; default "auto": as stored). */
  weightsDtype?: WeightsDtype;
}

/** A {@link GpuLlama}'s counters: its forwards', and decode batches submitted during one of its readbacks. */
export interface GpuLlamaCounters extends GpuCounters {
  /** Decode batches submitted while a readback of this model was in flight (pipelined decoding). */
  overlapped: number;
}

/** One of this model's {@link PendingIds}: where its ids sit on the GPU. */
interface GpuPending extends PendingIds {
  readonly owner: GpuLlama;
  readonly buffer: GPUBuffer;
  /** Index of the first id in `buffer` (1 for a decode batch, whose input token sits at 0). */
  readonly offset: number;
  /** Which begin this was: a buffer holds the ids of the latest batch written into it. */
  readonly seq: number;
}

/** A Llama model resident on the GPU with its own KV cache (one sequence). */
export class GpuLlama
  implements CausalLM, DeviceSampler, Paged, FusedTreeStep, ChainedTreeSteps, TreeVerifier, WeightsLoaded {
  readonly counters: GpuLlamaCounters = {
    submissions: 0,
    readbacks: 0,
    readbackBytes: 0,
    forwards: 0,
    overlapped: 0,
  };
  /** The options this model was loaded with (to load it again the same way, e.g. with a bigger batch). */
  options: GpuLlamaOptions = {};
  /** This sequence's keys and values (commit/truncate live there). */
  readonly kv: GpuKvCache;
  private readonly fp: GpuForward;
  /** Buffers of fused steps in which this model is the draft (allocated on the first). */
  private fused?: FusedStepBuffers;
  /** Buffers of trees this model verifies on the device (allocated on the first). */
  private verifyBufs?: VerifyBuffers;
  /**
   * The ids buffer decode batches alternate with inputs.ids (allocated on the first): a batch chained from
   * a pending one copies that one's last id on the GPU, and a copy within one buffer is not allowed.
   */
  private idsAlt?: GPUBuffer;
  /** Per ids buffer, the seq of the batch whose ids it holds (a later batch overwrites them). */
  private readonly idsHolder = new Map<GPUBuffer, number>();
  /** The buffer of the latest batch begun (a host-fed batch avoids it: it may not have been read). */
  private lastIds?: GPUBuffer;
  private batchSeq = 0;
  private readsInFlight = 0;

  private constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly capacity: number,
    readonly maxBatch: number,
    private readonly w: GpuWeights,
    opts: GpuLlamaOptions,
  ) {
    this.fp = new GpuForward(gpu, config, capacity, maxBatch, w, this.counters, {
      kvDtype: opts.kvDtype,
      attention: opts.attention,
    });
    this.kv = this.fp.kv;
  }

  /** This model's matrices as its forward multiplies them (see GpuForward.matmulUses). */
  matmulUses(): Promise<MatmulUse[] | undefined> {
    return this.fp.matmulUses();
  }

  /** Use `choice` for this model's matmuls from the next recorded forward on (undefined: row-walking). */
  useMatmulChoice(choice: MatmulChoice | undefined): void {
    this.fp.ctx.kernels = choice ? { matmul: choice } : undefined;
  }

  /** The matmul choice in use (undefined: the row-walking kernel everywhere). */
  get matmulChoice(): MatmulChoice | undefined {
    return this.fp.ctx.kernels?.matmul;
  }

  /** Upload a model folder's weights and allocate the KV cache and activations. */
  static async load(gpu: Gpu, folder: Checkpoint, opts: GpuLlamaOptions = {}): Promise<GpuLlama> {
    const c = folder.config;
    const capacity = opts.capacity ?? c.maxPositions;
    const maxBinding = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
    let maxBatch = Math.min(opts.maxBatch ?? 256, capacity);
    const kvDtype = opts.kvDtype ?? "f32";
    if (kvDtype !== "f32" && kvDtype !== "f16") {
      throw new RangeError(`kvDtype must be f32 or f16, got ${kvDtype}`);
    }
    if ((opts.attention ?? defaultAttention(c)) === "classic") {
      // The classic kernel's scores scratch: (maxBatch, nHeads, capacity) f32 must fit one binding.
      while (maxBatch > 1 && maxBatch * c.nHeads * capacity * 4 > maxBinding) maxBatch >>= 1;
      if (c.nHeads * capacity * 4 > maxBinding) {
        throw new GpuError(
          `KV capacity ${capacity} needs ${
            c.nHeads * capacity * 4
          } bytes of attention scratch per token; binding limit ${maxBinding}`,
        );
      }
    }
    const kvBytes = capacity * c.kvDim * KV_BYTES[kvDtype];
    if (kvBytes > maxBinding) {
      throw new GpuError(
        `KV cache of ${capacity} slots x ${c.kvDim} needs ${kvBytes} bytes per layer; binding limit ${maxBinding}`,
      );
    }
    const w = await GpuWeights.upload(gpu, folder, opts);
    const model = new GpuLlama(gpu, c, capacity, maxBatch, w, opts);
    model.options = { ...opts, capacity, maxBatch };
    gpu.check(`loading ${folder.path}`);
    return model;
  }

  /**
   * Check a whole input, then (causal inputs longer than maxBatch only) run all but the last
   * maxBatch-sized chunk without logits; returns what is left to run.
   */
  private async prefillChunks(input: ForwardInput): Promise<ForwardInput> {
    const n = input.tokens.length, B = this.maxBatch;
    if (n <= B) return input; // staged and checked as one forward
    if (input.mask) throw new RangeError(`forward: a masked forward of ${n} tokens exceeds maxBatch ${B}`);
    // The whole input, before any chunk runs (each chunk is checked again as it is staged).
    checkInput("forward", input, this.kv.length, this.fp.inputs.lim, Infinity);
    const first = n - B;
    if (!input.logitRows || Array.from(input.logitRows).some((r) => r < first)) {
      throw new RangeError(
        `forward: a ${n}-token prefill runs in chunks of ${B}; ask logitRows among its last ${B} rows`,
      );
    }
    // Chunk sizes r, B, B, ... so the last chunk holds the last B rows (the ones that may want logits).
    let s = 0, chunk = 0;
    const total = Math.ceil(n / B), signal = input.signal;
    // With a signal, at most one chunk waits queued behind the running one: the host submits a chunk in
    // a few ms and the GPU runs it for far longer, so unpaced every chunk would be queued (and past
    // stopping) long before a cancel came. The wait overlaps the queued chunk: it costs the GPU nothing.
    const done: Promise<void>[] = [];
    const pace = async () => {
      if (!signal) return;
      if (chunk >= 2) await done[chunk - 2];
      // Between chunks: the caller's fp.atomically drops the chunks already run from the cache.
      if (signal.aborted) throw new ForwardCancelled(chunk, total);
    };
    while (n - s > B) {
      await pace();
      const size = (n - s) % B || B;
      const st = this.fp.inputs.stage("forward", {
        tokens: input.tokens.subarray(s, s + size),
        positions: input.positions.subarray(s, s + size),
        logitRows: [size - 1],
      }, this.kv.length);
      await this.fp.record({ ...st, tokens: this.fp.inputs.tokens, tokOffset: 0 });
      await this.fp.submit("prefill chunk");
      // A lost device shows in the next submission or read: the pacing wait need not reject.
      if (signal) done.push(this.gpu.device.queue.onSubmittedWorkDone().catch(() => {}));
      this.kv.append(st.n);
      s += size;
      chunk++;
    }
    await pace(); // the last chunk is the caller's to record
    return {
      tokens: input.tokens.subarray(s),
      positions: input.positions.subarray(s),
      logitRows: Array.from(input.logitRows, (r) => r - s),
    };
  }

  /**
   * Record `input` (earlier chunks of a long one already run), its logit rows left in the logits buffer;
   * returns the last chunk's rows (to append once submitted) and the logit row count.
   */
  private async recordInput(input: ForwardInput): Promise<{ n: number; m: number }> {
    const last = await this.prefillChunks(input);
    const st = this.fp.inputs.stage("forward", last, this.kv.length);
    await this.fp.record({ ...st, tokens: this.fp.inputs.tokens, tokOffset: 0 });
    return { n: st.n, m: st.rows.length };
  }

  /** See {@link CausalLM.forward}: one submission, one readback of (rows, vocab) logits. */
  async forward(input: ForwardInput): Promise<Float32Array> {
    return await this.fp.atomically(async () => {
      const { n, m } = await this.recordInput(input);
      await this.fp.submit("forward");
      this.kv.append(n);
      return new Float32Array(await this.fp.readback(this.fp.logits, m * this.config.vocabSize * 4));
    });
  }

  /** Forward, then argmax or sample each logit row on the GPU: one submission, reads back only ids. */
  async forwardIds(input: ForwardInput, head: IdHead): Promise<Uint32Array> {
    return await this.fp.atomically(async () =>
      await this.finishIds(await this.beginForwardIds(input, head))
    );
  }

  /** See {@link DeviceSampler.beginForwardIds}: the ids land in inputs.ids, read by nothing yet. */
  async beginForwardIds(input: ForwardInput, head: IdHead): Promise<PendingIds> {
    return await this.fp.atomically(async () => {
      const past = this.kv.length;
      const { n, m } = await this.recordInput(input);
      if (!isGreedy(head) && head.kind === "sample") this.fp.inputs.stageUniforms("sample", head.uniforms, m);
      await this.fp.recordIds(head, m, 0, 0);
      await this.fp.submit("forward+head");
      this.kv.append(n);
      return this.pending(this.fp.inputs.ids, 0, m, past);
    });
  }

  /**
   * Autoregressive decoding of `steps` tokens in ONE submission and ONE readback: step s embeds the
   * token the head of step s-1 wrote on the GPU. `first` is the token to feed at position kv.length.
   * Returns the `steps` tokens produced (the caller stops at EOS and truncates the cache).
   */
  async decodeSteps(first: number, steps: number, head: IdHead): Promise<Uint32Array> {
    return await this.fp.atomically(async () =>
      await this.finishIds(await this.beginDecodeSteps(first, steps, head))
    );
  }

  /**
   * See {@link DeviceSampler.beginDecodeSteps}. The batch's ids buffer holds [input, step 0's id, ...,
   * step (steps - 1)'s id]: step s embeds entry s and its head writes entry s + 1. A chained batch's
   * input is one 4-byte GPU copy of the previous batch's last entry, recorded before its steps; its
   * positions and uniforms are written with queue.writeBuffer, which the queue orders after the batches
   * already submitted, so the shared input buffers need no second copy.
   */
  async beginDecodeSteps(first: number | PendingIds, steps: number, head: IdHead): Promise<PendingIds> {
    return await this.fp.atomically(async () => {
      const past = this.kv.length, inputs = this.fp.inputs;
      if (!(Number.isInteger(steps) && steps >= 1 && steps <= this.maxBatch)) {
        throw new RangeError(`decodeSteps: steps ${steps} outside [1, ${this.maxBatch}]`);
      }
      const src = typeof first === "number" ? undefined : this.own(first, "decodeSteps");
      if (src && src.end !== past) {
        throw new RangeError(
          `decodeSteps: the cache holds ${past} slots; the batch chained from ended at ${src.end}`,
        );
      }
      if (typeof first === "number") checkTokens("decodeSteps", [first], this.config.vocabSize);
      const alt = this.idsAlt ??= this.gpu.createBuffer("ids (alternate)", (this.maxBatch + 1) * 4);
      // Not the buffer of the source, nor (host-fed) of the latest batch: it may not have been read yet.
      const out = (src?.buffer ?? this.lastIds) === inputs.ids ? alt : inputs.ids;
      const st = inputs.stage("decodeSteps", {
        positions: Int32Array.from({ length: steps }, (_, s) => past + s),
      }, past);
      if (!isGreedy(head) && head.kind === "sample") {
        inputs.stageUniforms("decodeSteps", head.uniforms, steps);
      }
      if (src) this.fp.ctx.rec.copy(src.buffer, (src.offset + src.count - 1) * 4, out, 0, 4);
      else this.gpu.device.queue.writeBuffer(out, 0, Uint32Array.of(first as number));
      for (let s = 0; s < steps; s++) {
        await this.fp.record({
          n: 1,
          past: past + s,
          tokens: out,
          tokOffset: s,
          posOffset: st.posOffset + s,
          causal: true,
          maskWords: 0,
          rows: [0],
        });
        await this.fp.recordIds(head, 1, s + 1, s, out);
      }
      if (this.readsInFlight > 0) this.counters.overlapped++;
      await this.fp.submit("decode steps");
      this.kv.append(steps);
      return this.pending(out, 1, steps, past);
    });
  }

  /**
   * See {@link DeviceSampler.finishIds}. gpu.read queues its copy before its first await, so the copy is
   * in the queue when this returns its promise (before any later submission).
   */
  async finishIds(batch: PendingIds, withInput = false): Promise<Uint32Array> {
    const p = this.own(batch, "finishIds");
    if (withInput && p.offset === 0) throw new RangeError("finishIds: a forward's ids have no input token");
    this.readsInFlight++;
    try {
      const ids = new Uint32Array(await this.fp.readback(p.buffer, (p.offset + p.count) * 4));
      return ids.subarray(withInput ? p.offset - 1 : p.offset);
    } finally {
      this.readsInFlight--;
    }
  }

  /** Record that `buffer` now holds a new batch's ids. */
  private pending(buffer: GPUBuffer, offset: number, count: number, past: number): GpuPending {
    const seq = ++this.batchSeq;
    this.idsHolder.set(buffer, seq);
    this.lastIds = buffer;
    return { owner: this, buffer, offset, count, past, end: this.kv.length, seq };
  }

  /** `batch` as this model's, its ids still in its buffer (else `what` throws). */
  private own(batch: PendingIds, what: string): GpuPending {
    const p = batch as GpuPending;
    if (p.owner !== this) throw new TypeError(`${what}: the pending batch is another model's`);
    if (this.idsHolder.get(p.buffer) !== p.seq) {
      throw new RangeError(
        `${what}: batch ${p.seq}'s ids were overwritten (two id buffers: read a batch before beginning the second after it)`,
      );
    }
    return p;
  }

  /**
   * A fused step needs a draft GpuLlama on the same device (it reads the draft's token buffer), another
   * model than this one (two caches), with the same vocabulary (drawn ids feed this model's embedding).
   */
  fusedTreeLimits(draft: CausalLM): FusedTreeLimits | undefined {
    if (!(draft instanceof GpuLlama) || draft === this || draft.gpu !== this.gpu) return undefined;
    if (draft.config.vocabSize !== this.config.vocabSize) return undefined;
    return fusedLimits(this, draft);
  }

  /** The draft of a fused step (checked as {@link fusedTreeLimits} does), its limits and its step buffers. */
  private fusedPair(
    draft: CausalLM,
    what: string,
  ): { lim: FusedTreeLimits; d: GpuLlama; bufs: FusedStepBuffers } {
    const lim = this.fusedTreeLimits(draft);
    if (!lim) throw new TypeError(`${what}: the draft is not another GpuLlama on this device and vocabulary`);
    const d = draft as GpuLlama;
    d.fused ??= new FusedStepBuffers(d.gpu, d.maxBatch, d.config.vocabSize);
    return { lim, d, bufs: d.fused };
  }

  /** See {@link FusedTreeStep.fusedTreeStep} and gpu/llama/tree_step.ts. */
  async fusedTreeStep(draft: CausalLM, plan: FusedTreeStepPlan): Promise<FusedTreeStepResult> {
    const { lim, d, bufs } = this.fusedPair(draft, "fusedTreeStep");
    return await runFusedTreeStep(this.fp, d.fp, bufs, plan, lim);
  }

  /** See {@link FusedTreeStep.fusedVerifiedStep} and gpu/llama/tree_step.ts. */
  async fusedVerifiedStep(
    draft: CausalLM,
    plan: FusedTreeStepPlan,
    verify: DeviceVerifyPlan,
  ): Promise<DeviceVerifiedStep> {
    const { lim, d, bufs } = this.fusedPair(draft, "fusedVerifiedStep");
    return await runFusedVerifiedStep(this.fp, d.fp, bufs, plan, lim, verify);
  }

  /** See {@link ChainedTreeSteps.fusedVerifiedSteps} and gpu/llama/multi_step.ts. */
  async *fusedVerifiedSteps(
    draft: CausalLM,
    plan: ChainedStepsPlan,
    overlap = false,
  ): AsyncGenerator<DeviceVerifiedStep> {
    const { lim, d, bufs } = this.fusedPair(draft, "fusedVerifiedSteps");
    yield* runFusedVerifiedSteps(this.fp, d.fp, bufs, plan, lim, overlap);
  }

  /** See {@link TreeVerifier.verifiedForward} and gpu/llama/verify_step.ts. */
  async verifiedForward(input: TreeForwardInput, plan: HostTreeVerifyPlan): Promise<DeviceVerifiedStep> {
    this.verifyBufs ??= new VerifyBuffers(this.gpu, this.maxBatch, this.config.vocabSize);
    return await runVerifiedForward(this.fp, this.verifyBufs, input, plan);
  }

  /** What `--weights-dtype` the matrices were loaded with ("auto": as stored). */
  get weightsDtype(): WeightsDtype {
    return this.options.weightsDtype ?? "auto";
  }

  /** Bytes of weights on the GPU: resident layers, ring slots, embeddings, LM head, f32 norms. */
  get weightBytes(): number {
    return this.w.bytes;
  }

  /** The paging plan, or undefined when every layer is resident. */
  get paging(): PagingPlan | undefined {
    return this.w.paging;
  }

  /** Cumulative paging counters since load (a copy), or undefined when every layer is resident. */
  pagingStats(): PagingStats | undefined {
    return this.w.pagingStats();
  }

  /** Wait until no layer refill is in flight (paged models; resolves at once otherwise). */
  async pagingIdle(): Promise<void> {
    await this.w.idle();
  }

  dispose(): void {
    this.w.destroy();
    this.fp.destroy();
    this.fused?.destroy();
    this.verifyBufs?.destroy();
    this.idsAlt?.destroy();
  }
}
