/**
 * The Llama forward pass on WebGPU: weights in their checkpoint dtype, f32 activations and KV cache,
 * a whole forward pass recorded into one submission, logits / argmax / samples computed on the GPU so
 * only what the caller needs is read back.
 *
 * @module
 */

import { type ModelConfig, ropeInvFreq } from "../../model/config.ts";
import type { Checkpoint } from "../../model/folder.ts";
import type { CausalLM, ForwardInput } from "../../model/causal_lm.ts";
import type { DeviceSampler, IdHead, Paged } from "../../model/capabilities.ts";
import { llamaTensorSpec } from "../../model/weights.ts";
import type { SamplingParams } from "../../model/sampling.ts";
import { type Gpu, GpuError } from "../device.ts";
import * as ops from "../ops.ts";
import { PipelineCache } from "../pipelines.ts";
import { Recorder, UniformArena } from "../recorder.ts";
import { destroyMatrix, type GpuMatrix, uploadMatrix } from "../tensor.ts";
import { GpuKvCache } from "./kv_cache.ts";
import {
  LAYER_MATRICES,
  LAYER_MATRIX_SPEC_INDEX,
  type LayerMatrices,
  layerMatrices,
  LayerPager,
  normBytes,
  type PagingPlan,
  type PagingStats,
  planPaging,
  weightSizes,
} from "../paging/pager.ts";

/** A layer's two norms (f32, always resident). */
interface LayerNorms {
  attnNorm: GPUBuffer;
  mlpNorm: GPUBuffer;
}

/** What a recorded forward pass produces for its logit rows. */
export type Head = { kind: "logits" } | IdHead;

/** Options of {@link GpuLlama.load}. */
export interface GpuLlamaOptions {
  /** KV slots (default: the model's context length). */
  capacity?: number;
  /** Most tokens in one forward pass; longer prompts are processed in chunks (default 256). */
  maxBatch?: number;
  /**
   * Bytes of GPU memory the weights may use (default: no limit). When the model does not fit, decoder
   * layers are streamed through a ring of layer slots (see gpu/pager.ts); KV cache and activations are
   * sized by `capacity` and `maxBatch` and not counted here.
   */
  gpuMemoryBudget?: number;
  /** Bytes of host RAM for caching streamed layers (default: all of them, up to half the free RAM). */
  hostMemoryBudget?: number;
  /** Most ring slots when paging (default {@link MAX_RING_SLOTS}, at least 2). */
  maxRingSlots?: number;
}

export { MAX_RING_SLOTS } from "../paging/pager.ts";
export type { PagingPlan, PagingStats } from "../paging/pager.ts";

/** Counters since load (for stats: every readback is a GPU->CPU sync costing >= ~11 ms in Deno). */
export interface GpuCounters {
  submissions: number;
  readbacks: number;
  forwards: number;
}

/** A Llama model resident on the GPU with its own KV cache (one sequence). */
export class GpuLlama implements CausalLM, DeviceSampler, Paged {
  readonly counters: GpuCounters = { submissions: 0, readbacks: 0, forwards: 0 };
  /** The options this model was loaded with (to load it again the same way, e.g. with a bigger batch). */
  options: GpuLlamaOptions = {};
  private readonly ctx: ops.OpContext;
  private readonly arena: UniformArena;
  /** This sequence's keys and values (commit/truncate live there). */
  readonly kv: GpuKvCache;

  private constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly capacity: number,
    readonly maxBatch: number,
    private readonly w: {
      embed: GpuMatrix;
      lmHead: GpuMatrix;
      finalNorm: GPUBuffer;
      norms: LayerNorms[];
      /** Matrices of the resident layers 0 .. layers.length - 1; the rest come from the pager. */
      layers: LayerMatrices[];
    },
    private readonly buf: Record<
      | "x"
      | "xn"
      | "q"
      | "att"
      | "gate"
      | "up"
      | "sel"
      | "logits"
      | "scratch"
      | "tokens"
      | "positions"
      | "mask"
      | "ids"
      | "uniforms"
      | "rope",
      GPUBuffer
    >,
    pipelines: PipelineCache,
    private readonly pager?: LayerPager,
  ) {
    this.arena = new UniformArena(gpu);
    this.ctx = { rec: new Recorder(gpu, this.arena), pipelines };
    this.kv = new GpuKvCache(gpu, config, capacity, maxBatch, async (label, record) => {
      await record(this.ctx);
      await this.submit(label);
    });
  }

  /** Upload a model folder's weights and allocate the KV cache and activations. */
  static async load(gpu: Gpu, folder: Checkpoint, opts: GpuLlamaOptions = {}): Promise<GpuLlama> {
    const c = folder.config;
    const capacity = opts.capacity ?? c.maxPositions;
    const maxBinding = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
    let maxBatch = Math.min(opts.maxBatch ?? 256, capacity);
    // Attention scores scratch: (maxBatch, nHeads, capacity) f32 must fit one binding.
    while (maxBatch > 1 && maxBatch * c.nHeads * capacity * 4 > maxBinding) maxBatch >>= 1;
    if (c.nHeads * capacity * 4 > maxBinding) {
      throw new GpuError(
        `KV capacity ${capacity} needs ${
          c.nHeads * capacity * 4
        } bytes of attention scratch per token; binding limit ${maxBinding}`,
      );
    }
    const kvBytes = capacity * c.kvDim * 4;
    if (kvBytes > maxBinding) {
      throw new GpuError(
        `KV cache of ${capacity} slots x ${c.kvDim} needs ${kvBytes} bytes per layer; binding limit ${maxBinding}`,
      );
    }
    const st = folder.checkpoint;
    const spec = llamaTensorSpec(c);
    // Weights keep their checkpoint dtype on the GPU (one seek + read per tensor); norms become f32.
    const m = async (name: string, shape: number[]) =>
      uploadMatrix(gpu, name, await st.readRaw(name), [shape[0], shape[1]], st.get(name)!.dtype);
    const vector = async (name: string) => gpu.createBufferWith(name, await st.readF32(name));
    // Paging plan: resident bytes besides layers are the embeddings, an untied LM head and the f32 norms.
    let plan: PagingPlan | undefined;
    if (opts.gpuMemoryBudget !== undefined) {
      plan = planPaging({
        ...weightSizes(st, c),
        budget: opts.gpuMemoryBudget,
        maxRingSlots: opts.maxRingSlots,
        what: folder.dir,
      });
    }
    const embed = await m(spec.global[0].name, spec.global[0].shape);
    const lmHead = c.tieWordEmbeddings ? embed : await m("lm_head.weight", [c.vocabSize, c.hiddenSize]);
    const finalNorm = await vector("model.norm.weight");
    const norms: LayerNorms[] = [];
    const layers: LayerMatrices[] = [];
    for (let l = 0; l < c.nLayers; l++) {
      const s = spec.layers[l];
      norms.push({ attnNorm: await vector(s[0].name), mlpNorm: await vector(s[5].name) });
      if (plan && l >= plan.residentLayers) continue;
      const mats: GpuMatrix[] = [];
      for (const i of LAYER_MATRIX_SPEC_INDEX) mats.push(await m(s[i].name, s[i].shape));
      layers.push(layerMatrices(mats));
    }
    const pager = plan
      ? await LayerPager.create(
        gpu,
        c,
        st,
        plan,
        opts.hostMemoryBudget ?? Math.floor(Math.max(0, Deno.systemMemoryInfo().available) / 2),
      )
      : undefined;
    // RoPE cos/sin table (capacity, headDim/2) computed in f64, like the CPU reference.
    const inv = ropeInvFreq(c);
    const half = c.headDim / 2;
    const table = new Float32Array(capacity * half * 2);
    for (let pos = 0; pos < capacity; pos++) {
      for (let i = 0; i < half; i++) {
        table[(pos * half + i) * 2] = Math.cos(pos * inv[i]);
        table[(pos * half + i) * 2 + 1] = Math.sin(pos * inv[i]);
      }
    }
    const B = maxBatch;
    const f = 4;
    const b = (name: string, bytes: number) => gpu.createBuffer(name, bytes);
    const buf = {
      x: b("x", B * c.hiddenSize * f),
      xn: b("xn", B * c.hiddenSize * f),
      q: b("q", B * c.qDim * f),
      att: b("att", B * c.qDim * f),
      gate: b("gate", B * c.intermediateSize * f),
      up: b("up", B * c.intermediateSize * f),
      sel: b("selected rows", B * c.hiddenSize * f),
      logits: b("logits", B * c.vocabSize * f),
      scratch: b("attention scratch", B * c.nHeads * capacity * f),
      tokens: b("tokens", (B + 1) * 4),
      positions: b("positions", B * 4),
      mask: b("mask", B * Math.ceil(capacity / 32) * 4),
      ids: b("ids", (B + 1) * 4),
      uniforms: b("uniforms", B * 4),
      rope: gpu.createBufferWith("rope table", table),
    };
    const model = new GpuLlama(
      gpu,
      c,
      capacity,
      maxBatch,
      { embed, lmHead, finalNorm, norms, layers },
      buf,
      new PipelineCache(gpu),
      pager,
    );
    model.options = { ...opts, capacity, maxBatch };
    gpu.check(`loading ${folder.dir}`);
    return model;
  }

  /**
   * Record one forward pass of n tokens (already in the tokens buffer at tokOffset; positions at
   * posOffset) after `past` cached slots, with logits for `rows` (new-token indices) left in the logits
   * buffer as (rows.length, vocab).
   */
  private async recordForward(a: Parameters<GpuLlama["recordLayers"]>[0]): Promise<void> {
    try {
      await this.recordLayers(a);
    } catch (e) {
      // Nothing half-recorded may reach the next submission (a paged layer that could not be read, a
      // validation error): drop it; the caller sees the error.
      this.ctx.rec.discard();
      throw e;
    }
  }

  private async recordLayers(
    a: {
      n: number;
      past: number;
      tokens?: GPUBuffer;
      tokOffset: number;
      posOffset: number;
      causal: boolean;
      maskWords: number;
      maskOffset?: number;
      rows: number[];
    },
  ): Promise<void> {
    const c = this.config, b = this.buf, ctx = this.ctx;
    const { n, past } = a;
    const d = c.hiddenSize;
    const tokens = a.tokens ?? b.tokens;
    await ops.embedding(ctx, { table: this.w.embed, tokens, tokOffset: a.tokOffset, out: b.x, n });
    for (let l = 0; l < c.nLayers; l++) {
      const streamed = l >= this.w.layers.length;
      const mats = streamed ? await this.pager!.acquire(l) : this.w.layers[l];
      const L = { ...mats, ...this.w.norms[l] };
      const k = this.kv.k[l], v = this.kv.v[l];
      await ops.rmsNorm(ctx, { x: b.x, w: L.attnNorm, out: b.xn, n, d, eps: c.rmsNormEps });
      await ops.matmul(ctx, { w: L.wq, x: b.xn, y: b.q, n });
      // New keys/values go straight into the cache at slots past .. past + n - 1.
      await ops.matmul(ctx, { w: L.wk, x: b.xn, y: k, n, yOffset: past * c.kvDim });
      await ops.matmul(ctx, { w: L.wv, x: b.xn, y: v, n, yOffset: past * c.kvDim });
      const r = { n, headDim: c.headDim, positions: b.positions, posOffset: a.posOffset, table: b.rope };
      await ops.rope(ctx, { ...r, x: b.q, offset: 0, stride: c.qDim, nHeads: c.nHeads });
      await ops.rope(ctx, { ...r, x: k, offset: past * c.kvDim, stride: c.kvDim, nHeads: c.nKvHeads });
      await ops.attention(ctx, {
        q: b.q,
        k,
        v,
        mask: b.mask,
        scratch: b.scratch,
        out: b.att,
        n,
        past,
        nHeads: c.nHeads,
        nKvHeads: c.nKvHeads,
        headDim: c.headDim,
        maskWords: a.maskWords,
        maskOffset: a.maskOffset,
        causal: a.causal,
        cap: this.capacity,
      });
      await ops.matmul(ctx, { w: L.wo, x: b.att, y: b.x, n, acc: true });
      await ops.rmsNorm(ctx, { x: b.x, w: L.mlpNorm, out: b.xn, n, d, eps: c.rmsNormEps });
      await ops.matmul(ctx, { w: L.wGate, x: b.xn, y: b.gate, n });
      await ops.matmul(ctx, { w: L.wUp, x: b.xn, y: b.up, n });
      await ops.swiGlu(ctx, { gate: b.gate, up: b.up, count: n * c.intermediateSize });
      await ops.matmul(ctx, { w: L.wDown, x: b.gate, y: b.x, n, acc: true });
      if (streamed) {
        // Submit now so the slot can be refilled (queue order) while the GPU runs this layer.
        await this.submit(`layer ${l}`);
        this.pager!.release(l);
      }
    }
    // Final norm + LM head only for the rows asked for (prefill: just the last one).
    let src = b.x;
    const all = a.rows.length === n && a.rows.every((r, i) => r === i);
    if (!all) {
      a.rows.forEach((r, i) => ctx.rec.copy(b.x, r * d * 4, b.sel, i * d * 4, d * 4));
      src = b.sel;
    }
    const m = a.rows.length;
    await ops.rmsNorm(ctx, { x: src, w: this.w.finalNorm, out: b.xn, n: m, d, eps: c.rmsNormEps });
    await ops.matmul(ctx, { w: this.w.lmHead, x: b.xn, y: b.logits, n: m });
    this.counters.forwards++;
  }

  /** Upload inputs, check sizes, return the forward's shape. */
  private stage(
    input: ForwardInput,
  ): { n: number; past: number; causal: boolean; maskWords: number; rows: number[] } {
    const c = this.config;
    const n = input.tokens.length;
    const past = this.kv.length;
    if (n === 0) throw new RangeError("forward: no tokens");
    if (n > this.maxBatch) throw new RangeError(`forward: ${n} tokens exceed maxBatch ${this.maxBatch}`);
    if (input.positions.length !== n) {
      throw new RangeError(`forward: ${n} tokens but ${input.positions.length} positions`);
    }
    if (past + n > this.capacity) {
      throw new RangeError(
        `forward: ${past} cached + ${n} new tokens exceed the KV capacity ${this.capacity}`,
      );
    }
    for (let i = 0; i < n; i++) {
      if (input.tokens[i] < 0 || input.tokens[i] >= c.vocabSize) {
        throw new RangeError(
          `forward: token ${input.tokens[i]} at row ${i} outside vocabulary [0, ${c.vocabSize})`,
        );
      }
      if (input.positions[i] < 0 || input.positions[i] >= this.capacity) {
        throw new RangeError(`forward: position ${input.positions[i]} outside [0, ${this.capacity})`);
      }
    }
    const q = this.gpu.device.queue;
    q.writeBuffer(this.buf.tokens, 0, Uint32Array.from(input.tokens));
    q.writeBuffer(this.buf.positions, 0, Uint32Array.from(input.positions));
    const w = past + n;
    const maskWords = Math.ceil(w / 32);
    if (input.mask) {
      if (input.mask.length !== n * w) {
        throw new RangeError(`forward: mask has ${input.mask.length} entries, expected ${n} x ${w}`);
      }
      const bits = new Uint32Array(n * maskWords);
      for (let i = 0; i < n; i++) {
        let any = false;
        for (let j = 0; j < w; j++) {
          if (input.mask[i * w + j]) {
            bits[i * maskWords + (j >>> 5)] |= 1 << (j & 31);
            any = true;
          }
        }
        if (!any) throw new RangeError(`forward: mask row ${i} attends to nothing`);
      }
      q.writeBuffer(this.buf.mask, 0, bits);
    }
    const rows = input.logitRows ? Array.from(input.logitRows) : Array.from({ length: n }, (_, i) => i);
    for (const r of rows) {
      if (r < 0 || r >= n) throw new RangeError(`forward: logit row ${r} outside [0, ${n})`);
    }
    return { n, past, causal: !input.mask, maskWords, rows };
  }

  /** Record the head (argmax/sample into ids) for m logit rows. */
  private async recordHead(head: Head, m: number): Promise<void> {
    const b = this.buf, V = this.config.vocabSize;
    if (head.kind === "argmax" || (head.kind === "sample" && head.sampling.temperature === 0)) {
      await ops.argmax(this.ctx, { logits: b.logits, out: b.ids, outOffset: 0, n: m, vocab: V });
    } else if (head.kind === "sample") {
      if (head.uniforms.length < m) throw new RangeError(`sample: ${m} rows need ${m} uniforms`);
      this.gpu.device.queue.writeBuffer(b.uniforms, 0, Float32Array.from(head.uniforms));
      const s = head.sampling;
      await ops.sample(this.ctx, {
        logits: b.logits,
        uniforms: b.uniforms,
        uOffset: 0,
        out: b.ids,
        outOffset: 0,
        n: m,
        vocab: V,
        temperature: s.temperature,
        topK: s.topK,
        topP: s.topP,
      });
    }
  }

  private async submit(label: string): Promise<void> {
    await this.ctx.rec.submit(label);
    this.counters.submissions++;
  }

  private async readback(src: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    this.counters.readbacks++;
    return await this.gpu.read(src, bytes);
  }

  /**
   * Validate a whole input, then (causal inputs longer than maxBatch only) run all but the last
   * maxBatch-sized chunk without logits; returns what is left to run.
   */
  private async prefillChunks(input: ForwardInput): Promise<ForwardInput> {
    const n = input.tokens.length;
    const past = this.kv.length;
    if (past + n > this.capacity) {
      throw new RangeError(
        `forward: ${past} cached + ${n} new tokens exceed the KV capacity ${this.capacity}`,
      );
    }
    if (n <= this.maxBatch) return input;
    if (input.mask) {
      throw new RangeError(`forward: a masked forward of ${n} tokens exceeds maxBatch ${this.maxBatch}`);
    }
    const first = n - this.maxBatch;
    if (!input.logitRows || Array.from(input.logitRows).some((r) => r < first)) {
      throw new RangeError(
        `forward: a ${n}-token prefill runs in chunks of ${this.maxBatch}; ask logitRows among its last ${this.maxBatch} rows`,
      );
    }
    for (let i = 0; i < n; i++) {
      const t = input.tokens[i], p = input.positions[i];
      if (t < 0 || t >= this.config.vocabSize) {
        throw new RangeError(`forward: token ${t} at row ${i} outside vocabulary`);
      }
      if (p < 0 || p >= this.capacity) {
        throw new RangeError(`forward: position ${p} outside [0, ${this.capacity})`);
      }
    }
    // Chunk sizes r, B, B, ... so the last chunk holds the last B rows (the ones that may want logits).
    let s = 0;
    while (n - s > this.maxBatch) {
      const size = (n - s) % this.maxBatch || this.maxBatch;
      const st = this.stage({
        tokens: input.tokens.subarray(s, s + size),
        positions: input.positions.subarray(s, s + size),
        logitRows: [size - 1],
      });
      await this.recordForward({ ...st, tokOffset: 0, posOffset: 0 });
      await this.submit("prefill chunk");
      this.kv.append(st.n);
      s += size;
    }
    return {
      tokens: input.tokens.subarray(s),
      positions: input.positions.subarray(s),
      logitRows: Array.from(input.logitRows, (r) => r - s),
    };
  }

  /** See {@link CausalLM.forward}: one submission, one readback of (rows, vocab) logits. */
  async forward(input: ForwardInput): Promise<Float32Array> {
    return await this.atomically(async () => {
      const last = await this.prefillChunks(input);
      const st = this.stage(last);
      await this.recordForward({ ...st, tokOffset: 0, posOffset: 0 });
      await this.submit("forward");
      this.kv.append(st.n);
      return new Float32Array(
        await this.readback(this.buf.logits, st.rows.length * this.config.vocabSize * 4),
      );
    });
  }

  /**
   * Run `fn` so that a failure leaves the cache as it was: a chunked prefill whose later chunk fails
   * (e.g. a paged layer that cannot be read) does not keep its earlier chunks, and nothing recorded stays
   * queued for the next submission.
   */
  private async atomically<T>(fn: () => Promise<T>): Promise<T> {
    const past = this.kv.length;
    try {
      return await fn();
    } catch (e) {
      this.kv.restore(past);
      this.ctx.rec.discard();
      throw e;
    }
  }

  /** Forward, then argmax or sample each logit row on the GPU: one submission, reads back only ids. */
  async forwardIds(input: ForwardInput, head: IdHead): Promise<Uint32Array> {
    return await this.atomically(async () => {
      const last = await this.prefillChunks(input);
      const st = this.stage(last);
      await this.recordForward({ ...st, tokOffset: 0, posOffset: 0 });
      await this.recordHead(head, st.rows.length);
      await this.submit("forward+head");
      this.kv.append(st.n);
      return new Uint32Array(await this.readback(this.buf.ids, st.rows.length * 4));
    });
  }

  /**
   * Autoregressive decoding of `steps` tokens in ONE submission and ONE readback: step s embeds the
   * token the head of step s-1 wrote on the GPU. `first` is the token to feed at position cacheLength.
   * Returns the `steps` tokens produced (the caller stops at EOS and truncates the cache).
   */
  async decodeSteps(
    first: number,
    steps: number,
    head: IdHead,
  ): Promise<Uint32Array> {
    const past = this.kv.length;
    if (steps < 1 || steps > this.maxBatch) {
      throw new RangeError(`decodeSteps: steps ${steps} outside [1, ${this.maxBatch}]`);
    }
    if (past + steps > this.capacity) {
      throw new RangeError(`decodeSteps: ${past} + ${steps} exceed KV capacity ${this.capacity}`);
    }
    if (first < 0 || first >= this.config.vocabSize) {
      throw new RangeError(`decodeSteps: token ${first} outside vocabulary`);
    }
    const q = this.gpu.device.queue;
    q.writeBuffer(this.buf.ids, 0, Uint32Array.of(first));
    q.writeBuffer(this.buf.positions, 0, Uint32Array.from({ length: steps }, (_, s) => past + s));
    const greedy = head.kind === "argmax" || head.sampling.temperature === 0;
    if (!greedy) {
      if (head.uniforms.length < steps) {
        throw new RangeError(`decodeSteps: ${steps} steps need ${steps} uniforms`);
      }
      q.writeBuffer(this.buf.uniforms, 0, Float32Array.from(head.uniforms).subarray(0, steps));
    }
    const V = this.config.vocabSize;
    for (let s = 0; s < steps; s++) {
      // ids[s] holds this step's input token (written by the previous step's head); its head writes ids[s + 1].
      await this.recordForward({
        n: 1,
        past: past + s,
        tokens: this.buf.ids,
        tokOffset: s,
        posOffset: s,
        causal: true,
        maskWords: 0,
        rows: [0],
      });
      if (greedy) {
        await ops.argmax(this.ctx, {
          logits: this.buf.logits,
          out: this.buf.ids,
          outOffset: s + 1,
          n: 1,
          vocab: V,
        });
      } else {
        const p = (head as { sampling: SamplingParams }).sampling;
        await ops.sample(this.ctx, {
          logits: this.buf.logits,
          uniforms: this.buf.uniforms,
          uOffset: s,
          out: this.buf.ids,
          outOffset: s + 1,
          n: 1,
          vocab: V,
          temperature: p.temperature,
          topK: p.topK,
          topP: p.topP,
        });
      }
    }
    await this.submit("decode steps");
    this.kv.append(steps);
    const ids = new Uint32Array(await this.readback(this.buf.ids, (steps + 1) * 4));
    return ids.subarray(1);
  }

  /** Draft-side buffers of a device-drafted tree: token ids (u32) and q rows (f32, maxBatch x vocab). */
  treeBuffers(): { tokens: GPUBuffer; q: GPUBuffer } {
    this.tree ??= {
      tokens: this.gpu.createBuffer("tree tokens", (2 * this.maxBatch + 8) * 4),
      q: this.gpu.createBuffer("tree q", this.maxBatch * this.config.vocabSize * 4),
    };
    return this.tree;
  }
  private tree?: { tokens: GPUBuffer; q: GPUBuffer };

  /** The op context whose recorder this model submits (to add kernels to the same submission). */
  get opContext(): ops.OpContext {
    return this.ctx;
  }

  /** The logits buffer: (rows, vocab) of the last recorded forward. */
  get logitsBuffer(): GPUBuffer {
    return this.buf.logits;
  }

  /**
   * Record (not submit) a forward over n tokens read on the GPU from `tokens` at `tokOffset`, appended
   * after the cache; positions and the optional (n, past + n) mask are uploaded at `posOffset` /
   * `maskOffset` (words) so several forwards can share one submission. Logits of all n rows.
   * Returns the mask words used.
   */
  async recordTreeForward(a: {
    tokens: GPUBuffer;
    tokOffset: number;
    positions: Int32Array;
    posOffset: number;
    mask?: Uint8Array;
    maskOffset: number;
  }): Promise<number> {
    const n = a.positions.length, past = this.kv.length, w = past + n;
    if (n < 1 || n > this.maxBatch) {
      throw new RangeError(`tree forward: ${n} rows outside [1, ${this.maxBatch}]`);
    }
    if (w > this.capacity) {
      throw new RangeError(`tree forward: ${past} + ${n} exceed the KV capacity ${this.capacity}`);
    }
    if (a.posOffset + n > this.maxBatch) {
      throw new RangeError(`tree forward: positions past maxBatch ${this.maxBatch}`);
    }
    const q = this.gpu.device.queue;
    q.writeBuffer(this.buf.positions, a.posOffset * 4, Uint32Array.from(a.positions));
    const maskWords = Math.ceil(w / 32);
    if (a.mask) {
      if (a.mask.length !== n * w) {
        throw new RangeError(`tree forward: mask has ${a.mask.length} entries, expected ${n} x ${w}`);
      }
      if (a.maskOffset + n * maskWords > this.maxBatch * Math.ceil(this.capacity / 32)) {
        throw new RangeError("tree forward: mask buffer full");
      }
      const bits = new Uint32Array(n * maskWords);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < w; j++) if (a.mask[i * w + j]) bits[i * maskWords + (j >>> 5)] |= 1 << (j & 31);
      }
      q.writeBuffer(this.buf.mask, a.maskOffset * 4, bits);
    }
    await this.recordForward({
      n,
      past,
      tokens: a.tokens,
      tokOffset: a.tokOffset,
      posOffset: a.posOffset,
      causal: !a.mask,
      maskWords,
      maskOffset: a.maskOffset,
      rows: Array.from({ length: n }, (_, i) => i),
    });
    this.kv.append(n);
    return a.mask ? n * maskWords : 0;
  }

  /** Submit what was recorded (no readback). */
  async submitRecorded(label: string): Promise<void> {
    await this.submit(label);
  }

  /** Read several buffer ranges back with ONE GPU->CPU sync (counted on this model). */
  async readMany(parts: { buffer: GPUBuffer; size: number }[]): Promise<ArrayBuffer[]> {
    this.counters.readbacks++;
    return await this.gpu.readMany(parts);
  }

  /** Bytes of weights on the GPU: resident layers, ring slots, embeddings, LM head, f32 norms. */
  get weightBytes(): number {
    const mats = this.w.layers.flatMap((l) => LAYER_MATRICES.map((k) => l[k]));
    const head = this.w.lmHead === this.w.embed ? 0 : this.w.lmHead.bytes;
    const ring = this.pager ? this.pager.plan.ringSlots * this.pager.plan.layerBytes : 0;
    return mats.reduce((a, m) => a + m.bytes, 0) + this.w.embed.bytes + head + ring + normBytes(this.config);
  }

  /** The paging plan, or undefined when every layer is resident. */
  get paging(): PagingPlan | undefined {
    return this.pager?.plan;
  }

  /** Cumulative paging counters since load (a copy), or undefined when every layer is resident. */
  pagingStats(): PagingStats | undefined {
    return this.pager ? { ...this.pager.stats } : undefined;
  }

  /** Wait until no layer refill is in flight (paged models; resolves at once otherwise). */
  async pagingIdle(): Promise<void> {
    await this.pager?.idle();
  }

  dispose(): void {
    for (const l of this.w.layers) for (const k of LAYER_MATRICES) destroyMatrix(l[k]);
    for (const n of this.w.norms) {
      n.attnNorm.destroy();
      n.mlpNorm.destroy();
    }
    this.pager?.dispose();
    destroyMatrix(this.w.embed);
    if (this.w.lmHead !== this.w.embed) destroyMatrix(this.w.lmHead);
    this.w.finalNorm.destroy();
    for (const b of Object.values(this.buf)) b.destroy();
    this.kv.destroy();
    this.tree?.tokens.destroy();
    this.tree?.q.destroy();
  }
}
