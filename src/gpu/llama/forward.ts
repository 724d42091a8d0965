/**
 * Recording one Llama forward pass on the GPU — embedding, the decoder layers, the final norm and LM
 * head for the rows asked for — and the heads that turn logit rows into ids (argmax, sampling), into
 * the model's op context, so a caller can put several forwards and heads in one submission.
 *
 * @module
 */

import { type ModelConfig, ropeInvFreq } from "../../model/config.ts";
import type { IdHead } from "../../model/capabilities.ts";
import type { SamplingParams } from "../../model/sampling.ts";
import type { Gpu, StagedRead } from "../device.ts";
import * as ops from "../ops.ts";
import { PipelineCache } from "../pipelines.ts";
import type { MatmulUse } from "../matmul_choice.ts";
import { Recorder, UniformArena } from "../recorder.ts";
import { InputBuffers } from "./inputs.ts";
import { GpuKvCache } from "./kv_cache.ts";
import { isBlockType } from "../weight_layout.ts";
import type { GpuWeights } from "./weights.ts";

/** What a recorded forward pass produces for its logit rows. */
export type Head = { kind: "logits" } | IdHead;

/** Counters since load (for stats: every readback is a GPU->CPU sync costing >= ~11 ms in Deno). */
export interface GpuCounters {
  submissions: number;
  readbacks: number;
  /** Bytes of every readback (one step's logits, or a verified step's path). */
  readbackBytes: number;
  forwards: number;
}

/** One forward to record: n rows after `past` cached slots, inputs already staged. */
export interface RecordedForward {
  n: number;
  past: number;
  /** (>= tokOffset + n) u32 token ids read on the GPU: the staged tokens, decode ids, tree tokens. */
  tokens: GPUBuffer;
  tokOffset: number;
  /** First of the n positions in the positions buffer. */
  posOffset: number;
  causal: boolean;
  /** u32 words per mask row (ignored when causal). */
  maskWords: number;
  /** First mask word of row 0. */
  maskOffset?: number;
  /** Rows (new-token indices) whose logits are left in the logits buffer as (rows.length, vocab). */
  rows: number[];
}

/** The activations of one forward, (maxBatch, ...) f32 each. */
type Activations = Record<
  "x" | "xn" | "q" | "att" | "gate" | "up" | "sel" | "logits" | "scratch" | "kNew" | "rope",
  GPUBuffer
>;

/** Which attention kernel a forward records. */
export type AttentionKernel = "flash" | "classic";

/** Options of {@link GpuForward}. */
export interface GpuForwardOptions {
  /** KV cache element type (default "f32"). */
  kvDtype?: ops.KvDtype;
  /**
   * Attention kernel (default {@link defaultAttention}: "flash", shaders/flash_attention.wgsl, one pass,
   * no scratch). "classic" (shaders/attention.wgsl, three passes through a (maxBatch, nHeads, capacity)
   * scores scratch) stays for comparison and tests. On llvmpipe (2 cores, SmolLM2-135M's 9/3 heads, head_dim 64) flash was
   * 1.7-2.6x faster at n = 1 and 3-5.6x at n = 4..256 for contexts 64..2048 (src/bench/attention.ts),
   * so no per-n rule is needed there.
   */
  attention?: AttentionKernel;
}

/** One model's forward machinery: op context, activations, inputs, KV cache, weights. */
export class GpuForward {
  /** The op context whose recorder every forward, head and KV commit of this model records into. */
  readonly ctx: ops.OpContext;
  readonly inputs: InputBuffers;
  readonly kv: GpuKvCache;
  private readonly act: Activations;
  /** The parameter slots and cached bind groups of this model's recorder. */
  private readonly arena: UniformArena;

  constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly capacity: number,
    readonly maxBatch: number,
    readonly weights: GpuWeights,
    readonly counters: GpuCounters,
    opts: GpuForwardOptions = {},
  ) {
    const c = config, B = maxBatch, f = 4;
    this.kvDtype = opts.kvDtype ?? "f32";
    this.attentionKernel = opts.attention ?? defaultAttention(c);
    const classic = this.attentionKernel === "classic";
    const f16 = this.kvDtype === "f16";
    const b = (name: string, bytes: number) => gpu.createBuffer(name, bytes);
    this.act = {
      x: b("x", B * c.hiddenSize * f), // (B, d) residual stream
      xn: b("xn", B * c.hiddenSize * f), // (B, d) normed
      q: b("q", B * c.qDim * f), // (B, qDim)
      att: b("att", B * c.qDim * f), // (B, qDim) attention output
      gate: b("gate", B * c.intermediateSize * f), // (B, hidden)
      up: b("up", B * c.intermediateSize * f), // (B, hidden)
      sel: b("selected rows", B * c.hiddenSize * f), // (rows, d) the logit rows gathered
      logits: b("logits", B * c.vocabSize * f), // (rows, vocab)
      // (B, nHeads, capacity) scores of the classic kernel (flash needs none)
      scratch: b("attention scratch", classic ? B * c.nHeads * capacity * f : 4),
      // (B, kvDim) unfused k projection with an f16 cache (rope packs it into the cache); else unused
      kNew: b("k projection", f16 ? B * c.kvDim * f : 4),
      rope: gpu.createBufferWith("rope table", ropeTable(c, capacity)), // (capacity, headDim / 2, 2)
    };
    this.inputs = new InputBuffers(gpu, { vocabSize: c.vocabSize, capacity, maxBatch });
    this.arena = new UniformArena(gpu);
    // PipelineCache is per device: a draft + target pair and a reloaded model share the compiled variants.
    this.ctx = { rec: new Recorder(gpu, this.arena), pipelines: new PipelineCache(gpu) };
    this.kv = new GpuKvCache(gpu, config, capacity, maxBatch, async (label, record) => {
      await record(this.ctx);
      await this.submit(label);
    }, this.kvDtype);
  }

  /** KV cache element type. */
  readonly kvDtype: ops.KvDtype;
  /** The attention kernel forwards record. */
  readonly attentionKernel: AttentionKernel;

  /**
   * The matrices a forward multiplies through ops.matmul (the fused q/k and gate/up kernels keep their
   * own row-walking tiles) with their counts per forward: layer 0's as every layer's, and the LM head.
   * Undefined when the layers are streamed (their forward is bound by the streaming, not the kernel).
   */
  async matmulUses(): Promise<MatmulUse[] | undefined> {
    if (this.weights.streamed(0)) return undefined;
    const c = this.config, L = await this.weights.layer(0), count = c.nLayers;
    const uses: MatmulUse[] = [];
    if (!ops.qkRopeFusable(L.wq, L.wk, c.headDim)) uses.push({ w: L.wq, count }, { w: L.wk, count });
    uses.push({ w: L.wv, count }, { w: L.wo, count });
    if (!ops.gateUpFusable(L.wGate, L.wUp)) uses.push({ w: L.wGate, count }, { w: L.wUp, count });
    uses.push({ w: L.wDown, count }, { w: this.weights.lmHead, count: 1 });
    // The tiled GEMM reads F32 / F16 / BF16 only: block-type matrices always take matmul.wgsl.
    const plain = uses.filter((u) => !isBlockType(u.w.dtype));
    return plain.length ? plain : undefined;
  }

  /** (rows, vocab) f32 logits of the last recorded forward. */
  get logits(): GPUBuffer {
    return this.act.logits;
  }

  /**
   * Record one forward pass (paged layers are submitted as they go). Nothing half-recorded reaches the
   * next submission: on failure (a paged layer that could not be read, a validation error) the recording
   * is dropped and the error rethrown.
   */
  async record(a: RecordedForward): Promise<void> {
    try {
      await this.recordLayers(a);
    } catch (e) {
      this.ctx.rec.discard();
      throw e;
    }
  }

  private async recordLayers(a: RecordedForward): Promise<void> {
    const c = this.config, b = this.act, ctx = this.ctx, pos = this.inputs.positions;
    const { n, past } = a;
    const d = c.hiddenSize;
    await ops.embedding(ctx, {
      table: this.weights.embed,
      tokens: a.tokens,
      tokOffset: a.tokOffset,
      out: b.x,
      n,
    });
    for (let l = 0; l < c.nLayers; l++) {
      const streamed = this.weights.streamed(l);
      const L = await this.weights.layer(l);
      const k = this.kv.k[l], v = this.kv.v[l];
      await ops.rmsNorm(ctx, { x: b.x, w: L.attnNorm, out: b.xn, n, d, eps: c.rmsNormEps });
      // New keys/values go straight into the cache at slots past .. past + n - 1.
      const r = { n, headDim: c.headDim, positions: pos, posOffset: a.posOffset, table: b.rope };
      const kvDtype = this.kvDtype, kOffset = past * c.kvDim;
      if (ops.qkRopeFusable(L.wq, L.wk, c.headDim, kvDtype)) {
        // One launch for q, k and their rotation (a dispatch is ~0.05-0.1 ms of fixed cost on llvmpipe).
        await ops.qkRope(ctx, { ...r, wq: L.wq, wk: L.wk, x: b.xn, q: b.q, k, kOffset, kDtype: kvDtype });
      } else {
        await ops.matmul(ctx, { w: L.wq, x: b.xn, y: b.q, n });
        await ops.rope(ctx, { ...r, x: b.q, offset: 0, stride: c.qDim, nHeads: c.nHeads });
        if (kvDtype === "f16") {
          // f16 cache: project k in f32, then rope reads it and packs the rotated rows into the cache.
          await ops.matmul(ctx, { w: L.wk, x: b.xn, y: b.kNew, n });
          const kr = { ...r, x: b.kNew, offset: kOffset, stride: c.kvDim, nHeads: c.nKvHeads, f16Out: k };
          await ops.rope(ctx, kr);
        } else {
          await ops.matmul(ctx, { w: L.wk, x: b.xn, y: k, n, yOffset: kOffset });
          await ops.rope(ctx, { ...r, x: k, offset: kOffset, stride: c.kvDim, nHeads: c.nKvHeads });
        }
      }
      await ops.matmul(ctx, { w: L.wv, x: b.xn, y: v, n, yOffset: kOffset, yDtype: kvDtype });
      const att = {
        q: b.q,
        k,
        v,
        mask: this.inputs.mask,
        out: b.att,
        n,
        past,
        nHeads: c.nHeads,
        nKvHeads: c.nKvHeads,
        headDim: c.headDim,
        maskWords: a.maskWords,
        maskOffset: a.maskOffset,
        causal: a.causal,
        kvDtype,
      };
      if (this.attentionKernel === "flash") await ops.flashAttention(ctx, att);
      else await ops.attention(ctx, { ...att, scratch: b.scratch, cap: this.capacity });
      await ops.matmul(ctx, { w: L.wo, x: b.att, y: b.x, n, acc: true });
      await ops.rmsNorm(ctx, { x: b.x, w: L.mlpNorm, out: b.xn, n, d, eps: c.rmsNormEps });
      if (ops.gateUpFusable(L.wGate, L.wUp)) {
        await ops.gateUp(ctx, { wGate: L.wGate, wUp: L.wUp, x: b.xn, out: b.gate, n });
      } else {
        await ops.matmul(ctx, { w: L.wGate, x: b.xn, y: b.gate, n });
        await ops.matmul(ctx, { w: L.wUp, x: b.xn, y: b.up, n });
        await ops.swiGlu(ctx, { gate: b.gate, up: b.up, count: n * c.intermediateSize });
      }
      await ops.matmul(ctx, { w: L.wDown, x: b.gate, y: b.x, n, acc: true });
      if (streamed) {
        // Submit now so the slot can be refilled (queue order) while the GPU runs this layer.
        await this.submit(`layer ${l}`);
        this.weights.release(l);
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
    await ops.rmsNorm(ctx, { x: src, w: this.weights.finalNorm, out: b.xn, n: m, d, eps: c.rmsNormEps });
    await ops.matmul(ctx, { w: this.weights.lmHead, x: b.xn, y: b.logits, n: m });
    this.counters.forwards++;
  }

  /**
   * Record an id head over logit rows [0, m): argmax (or sampling at temperature 0) or sampling with
   * uniforms[uOffset ..], writing out[outOffset ..] (default: the ids input buffer; pipelined decode
   * batches alternate between two). The uniforms must already be staged.
   */
  async recordIds(
    head: IdHead,
    m: number,
    outOffset: number,
    uOffset: number,
    out: GPUBuffer = this.inputs.ids,
  ): Promise<void> {
    const logits = this.act.logits, V = this.config.vocabSize;
    if (isGreedy(head)) {
      await ops.argmax(this.ctx, { logits, out, outOffset, n: m, vocab: V });
      return;
    }
    const s = (head as { sampling: SamplingParams }).sampling;
    await ops.sample(this.ctx, {
      logits,
      uniforms: this.inputs.uniforms,
      uOffset,
      out,
      outOffset,
      n: m,
      vocab: V,
      temperature: s.temperature,
      topK: s.topK,
      topP: s.topP,
    });
  }

  /** Submit what was recorded. */
  async submit(label: string): Promise<void> {
    await this.ctx.rec.submit(label);
    this.counters.submissions++;
  }

  /** Read `bytes` of `src` back (one sync, counted). */
  async readback(src: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    this.counters.readbacks++;
    this.counters.readbackBytes += bytes;
    return await this.gpu.read(src, bytes);
  }

  /**
   * Record (into this model's recorder, for its next submission) a copy of `size` bytes of `src` at
   * `offset` to a staging buffer; {@link finishRead} reads it once that submission ran, whatever was
   * submitted after it.
   */
  readLater(src: GPUBuffer, offset: number, size: number): StagedRead {
    const r = this.gpu.stageRead(size);
    this.ctx.rec.copy(src, offset, r.buffer, 0, Math.ceil(size / 4) * 4);
    return r;
  }

  /** The bytes of a {@link readLater} (one sync, counted). */
  async finishRead(r: StagedRead): Promise<ArrayBuffer> {
    this.counters.readbacks++;
    this.counters.readbackBytes += r.size;
    return await this.gpu.finishRead(r);
  }

  /** Read several buffer ranges back with ONE sync (counted once). */
  async readMany(parts: { buffer: GPUBuffer; size: number }[]): Promise<ArrayBuffer[]> {
    this.counters.readbacks++;
    for (const p of parts) this.counters.readbackBytes += p.size;
    return await this.gpu.readMany(parts);
  }

  /**
   * Run `fn` so that a failure leaves the cache as it was: a chunked prefill whose later chunk fails
   * (e.g. a paged layer that cannot be read) does not keep its earlier chunks, and nothing recorded stays
   * queued for the next submission.
   */
  async atomically<T>(fn: () => Promise<T>): Promise<T> {
    const past = this.kv.length;
    try {
      return await fn();
    } catch (e) {
      this.kv.restore(past);
      this.ctx.rec.discard();
      throw e;
    }
  }

  /** Free activations, inputs, the KV cache and the uniform arena (the weights are the model's). */
  destroy(): void {
    for (const b of Object.values(this.act)) b.destroy();
    this.arena.destroy();
    this.inputs.destroy();
    this.kv.destroy();
  }
}

/** The kernel a forward uses unless told: flash wherever it runs (head_dim % 4 == 0), else classic. */
export function defaultAttention(c: ModelConfig): AttentionKernel {
  return c.headDim % 4 === 0 ? "flash" : "classic";
}

/** True when `head` picks the argmax (argmax itself, or sampling at temperature 0). */
export function isGreedy(head: IdHead): boolean {
  return head.kind === "argmax" || head.sampling.temperature === 0;
}

/** RoPE cos/sin table (capacity, headDim / 2, 2) computed in f64, like the CPU reference. */
function ropeTable(c: ModelConfig, capacity: number): Float32Array {
  const inv = ropeInvFreq(c);
  const half = c.headDim / 2;
  const table = new Float32Array(capacity * half * 2);
  for (let pos = 0; pos < capacity; pos++) {
    for (let i = 0; i < half; i++) {
      table[(pos * half + i) * 2] = Math.cos(pos * inv[i]);
      table[(pos * half + i) * 2 + 1] = Math.sin(pos * inv[i]);
    }
  }
  return table;
}
