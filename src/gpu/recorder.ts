/**
 * Records many dispatches (a whole forward pass, later a whole speculative step) into ONE command
 * buffer and ONE queue submission. Each dispatch's small parameter block goes into a shared uniform
 * arena (256-byte slots) uploaded with a single writeBuffer just before the submit.
 *
 * Bind groups are cached: pipelines from {@link PipelineCache} share explicit layouts, so the bind group
 * of a (layout, parameter slot, storage buffers) triple is built once per arena buffer instead of once per
 * dispatch per submission (createBindGroup is a JS -> Rust call plus wgpu validation: tiny target, 32
 * decode steps = 1,632 dispatches: host 55 -> 16 ms per submission on llvmpipe). Repeated recordings (decode
 * steps, prefill chunks, tree steps of one shape) put the same dispatch in the same slot, so they hit. The
 * key names buffers by identity, so a destroyed buffer's groups are never hit again; they age out of the LRU.
 *
 * @module
 */

import type { Gpu } from "./device.ts";
import { type PipelineBinding, pipelineBinding } from "./pipelines.ts";

/** A storage binding: a whole buffer or a byte range of one. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** Bytes per dispatch parameter slot (WebGPU's minUniformBufferOffsetAlignment is at most 256). */
const SLOT = 256;

/** Bit pattern of an f32, for packing floats into a u32 parameter block. */
export function f32Bits(x: number): number {
  F32[0] = x;
  return U32[0];
}
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** Identity numbers of buffers, for bind group cache keys (weak: a dropped buffer drops its number). */
const bufferIds = new WeakMap<GPUBuffer, number>();
let nextBufferId = 0;

function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, id = nextBufferId++);
  return id;
}

/**
 * A whole buffer rather than a {@link GPUBufferBinding} range. Structural, not `instanceof GPUBuffer`:
 * Dawn's buffers are not instances of Deno's class.
 */
function isWholeBuffer(b: Binding): b is GPUBuffer {
  return !("buffer" in b);
}

/** Cache key part of one storage binding: the buffer's identity, plus the range when not whole. */
function bindingKey(b: Binding): string {
  if (isWholeBuffer(b)) return String(bufferId(b));
  return `${bufferId(b.buffer)}@${b.offset ?? 0}+${b.size ?? "*"}`;
}

/** Bind group cache counters (tests and benchmarks). */
export interface BindGroupStats {
  /** Bind groups created (cache misses, and every dispatch of a pipeline with an "auto" layout). */
  created: number;
  /** Dispatches that reused a cached group. */
  reused: number;
}

/**
 * The uniform buffer shared by a model's recorders, grown on demand, and the bind groups over it (valid
 * as long as the buffer is: growing clears them).
 */
export class UniformArena {
  buffer: GPUBuffer;
  capacity: number;
  /**
   * Most cached bind groups (least recently used dropped first). A recording needs one per dispatch (8
   * per layer per forward: SmolLM2-135M's 8-step decode ~1,950); reused weight slots of the pager keep theirs.
   */
  static readonly MAX_GROUPS = 8192;
  private readonly groups = new Map<string, GPUBindGroup>();
  readonly stats: BindGroupStats = { created: 0, reused: 0 };

  constructor(private readonly gpu: Gpu, slots = 512) {
    this.capacity = slots;
    this.buffer = this.alloc(slots);
  }

  private alloc(slots: number): GPUBuffer {
    return this.gpu.device.createBuffer({
      label: "uniform arena",
      size: slots * SLOT,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
  }

  /** Make room for `slots` slots (a new buffer; the old one is destroyed after pending work). */
  ensure(slots: number): void {
    if (slots <= this.capacity) return;
    let cap = this.capacity;
    while (cap < slots) cap *= 2;
    this.buffer.destroy();
    this.groups.clear(); // they bind the old buffer
    this.buffer = this.alloc(cap);
    this.capacity = cap;
  }

  /** Cached bind groups now. */
  get cachedGroups(): number {
    return this.groups.size;
  }

  /**
   * The bind group of `info`'s layout over parameter slot `slot` of this arena (binding 0) and
   * `bindings`; keys of groups created are appended to `created`.
   */
  group(
    info: PipelineBinding,
    slot: number,
    bindings: Binding[],
    label: string,
    created: string[],
  ): GPUBindGroup {
    let key = `${info.layoutId}:${slot}`;
    for (const b of bindings) key += "," + bindingKey(b);
    const hit = this.groups.get(key);
    if (hit) {
      // Most recently used last (Map keeps insertion order).
      this.groups.delete(key);
      this.groups.set(key, hit);
      this.stats.reused++;
      return hit;
    }
    const entries: GPUBindGroupEntry[] = [{
      binding: 0,
      resource: { buffer: this.buffer, offset: slot * SLOT, size: SLOT },
    }];
    bindings.forEach((b, i) => {
      entries.push({ binding: i + 1, resource: isWholeBuffer(b) ? { buffer: b } : b });
    });
    const bg = this.gpu.device.createBindGroup({ label, layout: info.layout, entries });
    this.stats.created++;
    if (this.groups.size >= UniformArena.MAX_GROUPS) this.groups.delete(this.groups.keys().next().value!);
    this.groups.set(key, bg);
    created.push(key);
    return bg;
  }

  /** Drop the groups of `keys` (created by a submission that failed: one of them may be invalid). */
  forget(keys: string[]): void {
    for (const k of keys) this.groups.delete(k);
  }

  /** Free the buffer and the groups. */
  destroy(): void {
    this.groups.clear();
    this.buffer.destroy();
  }
}

/** "auto" layouts of pipelines built elsewhere (getBindGroupLayout makes a new object per call). */
const autoLayouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();

interface PendingDispatch {
  pipeline: GPUComputePipeline;
  /** The pipeline's shared layout (undefined: bound the "auto" way, a fresh group each time). */
  info: PipelineBinding | undefined;
  bindings: Binding[];
  slot: number;
  groups: [number, number, number];
  label: string;
}

type Command = { kind: "dispatch"; d: PendingDispatch } | {
  kind: "copy";
  src: GPUBuffer;
  srcOffset: number;
  dst: GPUBuffer;
  dstOffset: number;
  size: number;
};

/** Collects dispatches and copies; {@link Recorder.submit} encodes and submits them at once. */
export class Recorder {
  private readonly commands: Command[] = [];
  private params: Uint32Array<ArrayBuffer> = new Uint32Array(64 * (SLOT / 4));
  private slots = 0;
  /** Number of dispatches recorded (for stats and tests). */
  dispatches = 0;
  /** When set, dispatches recorded are counted here by label too (tests and benchmarks). */
  tally?: Map<string, number>;

  /** The adapter's workgroups-per-dimension limit (read once: the limits getter costs ~0.6 us a call). */
  private readonly maxGroups: number;

  constructor(private readonly gpu: Gpu, private readonly arena: UniformArena) {
    this.maxGroups = gpu.limits.maxComputeWorkgroupsPerDimension;
  }

  /** Bind groups created and reused by the recorders of this recorder's arena (live counters). */
  get groupStats(): Readonly<BindGroupStats> {
    return this.arena.stats;
  }

  /**
   * Record one dispatch. Binding 0 of the shader is the uniform parameter block (`params`, up to 64
   * u32 words); bindings 1.. are the storage `bindings` in order.
   */
  dispatch(
    label: string,
    pipeline: GPUComputePipeline,
    params: ArrayLike<number>,
    bindings: Binding[],
    groups: [number, number?, number?],
  ): void {
    if (params.length > SLOT / 4) {
      throw new RangeError(`${label}: ${params.length} params exceed ${SLOT / 4}`);
    }
    const max = this.maxGroups;
    const g: [number, number, number] = [groups[0], groups[1] ?? 1, groups[2] ?? 1];
    if (g.some((x) => x > max)) throw new RangeError(`${label}: workgroups [${g}] exceed the limit ${max}`);
    if (g.some((x) => x === 0)) return; // nothing to do
    const info = pipelineBinding(pipeline);
    if (info && bindings.length !== info.storage) {
      throw new RangeError(
        `${label}: ${bindings.length} storage bindings given, the shader has ${info.storage}`,
      );
    }
    if ((this.slots + 1) * (SLOT / 4) > this.params.length) {
      const bigger = new Uint32Array(this.params.length * 2);
      bigger.set(this.params);
      this.params = bigger;
    }
    this.params.set(params, this.slots * (SLOT / 4));
    this.commands.push({
      kind: "dispatch",
      d: { pipeline, info, bindings, slot: this.slots, groups: g, label },
    });
    this.slots++;
    this.dispatches++;
    if (this.tally) this.tally.set(label, (this.tally.get(label) ?? 0) + 1);
  }

  /** Record a buffer-to-buffer copy (byte offsets and size multiples of 4). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    if (size > 0) this.commands.push({ kind: "copy", src, srcOffset, dst, dstOffset, size });
  }

  /** Drop everything recorded since the last submit (after a failure half-way through a recording). */
  discard(): void {
    this.commands.length = 0;
    this.slots = 0;
  }

  /** Encode everything into one command buffer and submit it (one queue submission). */
  async submit(label = "step"): Promise<void> {
    const { device } = this.gpu;
    this.arena.ensure(Math.max(1, this.slots));
    const arena = this.arena, ub = arena.buffer;
    const created: string[] = [];
    await this.gpu.scoped(label, () => {
      device.queue.writeBuffer(ub, 0, this.params, 0, this.slots * (SLOT / 4));
      const enc = device.createCommandEncoder({ label });
      let pass: GPUComputePassEncoder | null = null;
      for (const c of this.commands) {
        if (c.kind === "copy") {
          pass?.end();
          pass = null;
          enc.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
          continue;
        }
        const d = c.d;
        pass ??= enc.beginComputePass({ label });
        pass.setPipeline(d.pipeline);
        if (d.info) {
          pass.setBindGroup(0, arena.group(d.info, d.slot, d.bindings, d.label, created));
        } else {
          pass.setBindGroup(0, this.autoGroup(d, ub));
        }
        pass.dispatchWorkgroups(d.groups[0], d.groups[1], d.groups[2]);
      }
      pass?.end();
      device.queue.submit([enc.finish()]);
    }).catch((e) => {
      arena.forget(created);
      throw e;
    }).finally(() => {
      // Submitted or failed, these commands must never run again with the next submission.
      this.commands.length = 0;
      this.slots = 0;
    });
  }

  /** A one-off bind group for a pipeline with an "auto" layout (its slot at a static offset). */
  private autoGroup(d: PendingDispatch, ub: GPUBuffer): GPUBindGroup {
    let layout = autoLayouts.get(d.pipeline);
    if (!layout) autoLayouts.set(d.pipeline, layout = d.pipeline.getBindGroupLayout(0));
    const entries: GPUBindGroupEntry[] = [{
      binding: 0,
      resource: { buffer: ub, offset: d.slot * SLOT, size: SLOT },
    }];
    d.bindings.forEach((b, i) => {
      entries.push({ binding: i + 1, resource: isWholeBuffer(b) ? { buffer: b } : b });
    });
    this.arena.stats.created++;
    return this.gpu.device.createBindGroup({ label: d.label, layout, entries });
  }
}
