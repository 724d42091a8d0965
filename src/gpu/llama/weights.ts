/**
 * A Llama checkpoint's weights on the GPU: matrices in their checkpoint type (a GGUF's Q8_0 / Q4_* /
 * Q6_K blocks as stored) or the one `weightsDtype` asks for (one seek + read per tensor), norms as f32;
 * decoder layers either resident or, under a GPU memory budget, streamed through the layer ring of
 * gpu/paging/pager.ts. Forwards ask for a layer by index and never see which it is.
 *
 * @module
 */

import type { Checkpoint } from "../../model/folder.ts";
import {
  LAYER_MATRIX_ROLES,
  LAYER_NORM_ROLES,
  type LayerNormRole,
  llamaTensorSpec,
} from "../../model/weights.ts";
import type { ModelConfig } from "../../model/config.ts";
import type { Gpu } from "../device.ts";
import { destroyMatrix, type GpuMatrix, uploadMatrix } from "../tensor.ts";
import { destroyLayer, type LayerMatrices, layerMatrices, LayerPager } from "../paging/pager.ts";
import type { PagingPlan, PagingStats } from "../../model/capabilities.ts";
import { normBytes, planPaging, weightSizes } from "../paging/plan.ts";
import type { WeightsDtype } from "../../model/weight_types.ts";
import { gpuMatrices } from "../weight_layout.ts";

/** A layer's two norms: (d) f32 each, always resident. */
export type LayerNorms = Record<LayerNormRole, GPUBuffer>;

/** Everything one decoder layer's recording needs. */
export type LayerWeights = LayerMatrices & LayerNorms;

/** How the weights may be placed (the paging part of GpuLlamaOptions). */
export interface WeightPlacement {
  /** Bytes of GPU memory the weights may use (default: no limit; over it, layers are streamed). */
  gpuMemoryBudget?: number;
  /** Bytes of host RAM for caching streamed layers (default: up to half the free RAM). */
  hostMemoryBudget?: number;
  /** Most ring slots when paging. */
  maxRingSlots?: number;
  /** What type each matrix is loaded as (model/weight_types.ts; default "auto": as stored). */
  weightsDtype?: WeightsDtype;
}

/** The uploaded weights of one model. */
export class GpuWeights {
  private constructor(
    private readonly config: ModelConfig,
    /** (vocab, d) token embeddings. */
    readonly embed: GpuMatrix,
    /** (vocab, d) LM head: the embeddings themselves when tied. */
    readonly lmHead: GpuMatrix,
    /** (d) f32 final norm. */
    readonly finalNorm: GPUBuffer,
    private readonly norms: LayerNorms[],
    /** Matrices of the resident layers 0 .. resident.length - 1; the rest come from the pager. */
    private readonly resident: LayerMatrices[],
    private readonly pager?: LayerPager,
  ) {}

  /** Upload `folder`'s tensors (planning the paging first, so a too-small budget fails before any upload). */
  static async upload(gpu: Gpu, folder: Checkpoint, opts: WeightPlacement = {}): Promise<GpuWeights> {
    const c = folder.config, st = folder.checkpoint;
    const spec = llamaTensorSpec(c);
    const typed = gpuMatrices(st, opts.weightsDtype);
    const matrix = async (t: { name: string; shape: number[] }) =>
      uploadMatrix(gpu, t.name, await typed.read(t.name), [t.shape[0], t.shape[1]], typed.get(t.name).type);
    const vector = async (t: { name: string }) => gpu.createBufferWith(t.name, await st.readF32(t.name));
    // Paging plan: resident bytes besides layers are the embeddings, an untied LM head and the f32 norms.
    let plan: PagingPlan | undefined;
    if (opts.gpuMemoryBudget !== undefined) {
      plan = planPaging({
        ...weightSizes(st, c, opts.weightsDtype),
        budget: opts.gpuMemoryBudget,
        maxRingSlots: opts.maxRingSlots,
        what: folder.path,
      });
    }
    const embed = await matrix(spec.global.embed);
    const lmHead = spec.global.lmHead ? await matrix(spec.global.lmHead) : embed;
    const finalNorm = await vector(spec.global.finalNorm);
    const norms: LayerNorms[] = [];
    const resident: LayerMatrices[] = [];
    for (let l = 0; l < c.nLayers; l++) {
      const s = spec.layers[l];
      norms.push({ attnNorm: await vector(s.attnNorm), mlpNorm: await vector(s.mlpNorm) });
      if (plan && l >= plan.residentLayers) continue;
      const mats: Partial<LayerMatrices> = {};
      for (const r of LAYER_MATRIX_ROLES) mats[r] = await matrix(s[r]);
      resident.push(layerMatrices((r) => mats[r]!));
    }
    const pager = plan
      ? await LayerPager.create(
        gpu,
        c,
        typed,
        plan,
        opts.hostMemoryBudget ?? Math.floor(Math.max(0, Deno.systemMemoryInfo().available) / 2),
      )
      : undefined;
    return new GpuWeights(c, embed, lmHead, finalNorm, norms, resident, pager);
  }

  /** True when layer `l` comes through the ring (its slot must be released once its commands are submitted). */
  streamed(l: number): boolean {
    return l >= this.resident.length;
  }

  /** Layer `l`'s matrices and norms, waiting for its ring slot when streamed. */
  async layer(l: number): Promise<LayerWeights> {
    const mats = this.streamed(l) ? await this.pager!.acquire(l) : this.resident[l];
    return { ...mats, ...this.norms[l] };
  }

  /** After the commands using streamed layer `l` were submitted: let its slot refill. */
  release(l: number): void {
    this.pager!.release(l);
  }

  /** Bytes of weights on the GPU: resident layers, ring slots, embeddings, LM head, f32 norms. */
  get bytes(): number {
    const mats = this.resident.flatMap((l) => LAYER_MATRIX_ROLES.map((r) => l[r]));
    const head = this.lmHead === this.embed ? 0 : this.lmHead.bytes;
    const ring = this.pager ? this.pager.plan.ringSlots * this.pager.plan.layerBytes : 0;
    return mats.reduce((a, m) => a + m.bytes, 0) + this.embed.bytes + head + ring + normBytes(this.config);
  }

  /** The paging plan, or undefined when every layer is resident. */
  get paging(): PagingPlan | undefined {
    return this.pager?.plan;
  }

  /** Cumulative paging counters (a copy), or undefined when every layer is resident. */
  pagingStats(): PagingStats | undefined {
    return this.pager ? { ...this.pager.stats } : undefined;
  }

  /** Resolves when no layer refill is in flight. */
  async idle(): Promise<void> {
    await this.pager?.idle();
  }

  /** Free every weight buffer and the ring. */
  destroy(): void {
    for (const l of this.resident) destroyLayer(l);
    for (const n of this.norms) for (const r of LAYER_NORM_ROLES) n[r].destroy();
    this.pager?.dispose();
    destroyMatrix(this.embed);
    if (this.lmHead !== this.embed) destroyMatrix(this.lmHead);
    this.finalNorm.destroy();
  }
}
