/**
 * Records many dispatches (a whole forward pass, later a whole speculative step) into ONE command
 * buffer and ONE queue submission. Each dispatch's small parameter block goes into a shared uniform
 * arena (256-byte slots) uploaded with a single writeBuffer just before the submit.
 *
 * @module
 */

import type { Gpu } from "./device.ts";

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

/** The uniform buffer shared by a model's recorders, grown on demand. */
export class UniformArena {
  buffer: GPUBuffer;
  capacity: number;

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
    this.buffer = this.alloc(cap);
    this.capacity = cap;
  }
}

interface PendingDispatch {
  pipeline: GPUComputePipeline;
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

  constructor(private readonly gpu: Gpu, private readonly arena: UniformArena) {}

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
    const max = this.gpu.limits.maxComputeWorkgroupsPerDimension;
    const g: [number, number, number] = [groups[0], groups[1] ?? 1, groups[2] ?? 1];
    if (g.some((x) => x > max)) throw new RangeError(`${label}: workgroups [${g}] exceed the limit ${max}`);
    if (g.some((x) => x === 0)) return; // nothing to do
    if ((this.slots + 1) * (SLOT / 4) > this.params.length) {
      const bigger = new Uint32Array(this.params.length * 2);
      bigger.set(this.params);
      this.params = bigger;
    }
    this.params.set(Array.from(params), this.slots * (SLOT / 4));
    this.commands.push({ kind: "dispatch", d: { pipeline, bindings, slot: this.slots, groups: g, label } });
    this.slots++;
    this.dispatches++;
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
    const ub = this.arena.buffer;
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
        const entries: GPUBindGroupEntry[] = [{
          binding: 0,
          resource: { buffer: ub, offset: d.slot * SLOT, size: SLOT },
        }];
        d.bindings.forEach((b, i) => {
          entries.push({ binding: i + 1, resource: b instanceof GPUBuffer ? { buffer: b } : b });
        });
        const bg = device.createBindGroup({
          label: d.label,
          layout: d.pipeline.getBindGroupLayout(0),
          entries,
        });
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, bg);
        pass.dispatchWorkgroups(d.groups[0], d.groups[1], d.groups[2]);
      }
      pass?.end();
      device.queue.submit([enc.finish()]);
    }).finally(() => {
      // Submitted or failed, these commands must never run again with the next submission.
      this.commands.length = 0;
      this.slots = 0;
    });
  }
}
