/**
 * WebGPU device acquisition and error handling. Deno never throws WebGPU validation errors by itself:
 * every pipeline creation and submission here runs inside error scopes and turns what they catch into a
 * {@link GpuError} naming the shader or operation.
 *
 * @module
 */

import { currentWebGpu, dawnHelp, navigatorGpu, type WebGpuImpl } from "./webgpu_impl.ts";

/** A WebGPU validation, out-of-memory or internal error, or a missing adapter. */
/** A read staged by {@link Gpu.stageRead}: the staging buffer a recorded copy fills. */
export interface StagedRead {
  readonly buffer: GPUBuffer;
  readonly size: number;
  /** The staging pool's size class (0: not pooled). */
  readonly cls: number;
}

export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GpuError";
  }
}

/** The adapter facts the engine and the profiler key on. */
export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  /** The WebGPU implementation that reported it (absent: Deno's built-in one). */
  webgpu?: WebGpuImpl;
}

/** A device with the limits raised to what the adapter offers and the optional features it has. */
export class Gpu {
  /** Errors raised outside any scope (reported by the next {@link Gpu.check}). */
  private uncaptured: string[] = [];
  /**
   * Free readback staging buffers by size class (powers of two >= 256 bytes), reused across reads. A
   * buffer is here only while unmapped and idle: a read takes it out before its copy and puts it back
   * after unmap, so two reads in flight (two models, or a read and a readMany) never share one.
   */
  private readonly staging = new Map<number, GPUBuffer[]>();
  /** Bytes held by {@link staging}. */
  private stagingBytes = 0;
  /** Staging pool counters (tests and benchmarks). */
  readonly stagingStats = { created: 0, reused: 0 };
  /** Most free staging buffers kept per size class (more are destroyed). */
  static readonly STAGING_PER_CLASS = 4;
  /** Most bytes of free staging buffers kept in all (a 64 MiB logits readback is not kept twice). */
  static readonly STAGING_BYTES = 96 << 20;

  private constructor(
    /** The WebGPU implementation the device comes from. */
    readonly webgpu: WebGpuImpl,
    readonly device: GPUDevice,
    readonly adapter: AdapterDescription,
    /** shader-f16 is available (used only when present). */
    readonly hasF16: boolean,
    /** timestamp-query is available (used by benchmarks only). */
    readonly hasTimestamps: boolean,
  ) {
    device.addEventListener("uncapturederror", (e) => {
      this.uncaptured.push((e as GPUUncapturedErrorEvent).error.message);
    });
  }

  /**
   * Request the best adapter of `impl` (default: the process's, see gpu/webgpu_impl.ts) and a device with
   * raised limits; throws a GpuError saying what to install.
   */
  static async acquire(impl: WebGpuImpl = currentWebGpu()): Promise<Gpu> {
    let gpu: GPU;
    try {
      gpu = await navigatorGpu(impl);
    } catch (e) {
      throw new GpuError((e as Error).message);
    }
    const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) {
      throw new GpuError(
        impl === "dawn"
          ? `Dawn's WebGPU found no adapter. ${dawnHelp()}`
          : "no WebGPU adapter found: install a GPU driver, or Mesa's software Vulkan driver " +
            "(apt-get install -y mesa-vulkan-drivers) to run on the CPU",
      );
    }
    const want: (keyof GPUSupportedLimits)[] = [
      "maxBufferSize",
      "maxStorageBufferBindingSize",
      "maxStorageBuffersPerShaderStage",
      "maxComputeWorkgroupStorageSize",
      "maxComputeInvocationsPerWorkgroup",
      "maxComputeWorkgroupSizeX",
      "maxComputeWorkgroupsPerDimension",
      "maxBindGroups",
    ];
    const requiredLimits: Record<string, number> = {};
    for (const k of want) {
      const v = adapter.limits[k];
      if (typeof v === "number") requiredLimits[k] = v;
    }
    const features: GPUFeatureName[] = [];
    const hasF16 = adapter.features.has("shader-f16");
    const hasTimestamps = adapter.features.has("timestamp-query");
    if (hasF16) features.push("shader-f16");
    if (hasTimestamps) features.push("timestamp-query");
    let device: GPUDevice;
    try {
      device = await adapter.requestDevice({ requiredLimits, requiredFeatures: features });
    } catch (e) {
      throw new GpuError(`requestDevice failed: ${(e as Error).message}`);
    }
    const info = adapter.info;
    return new Gpu(
      impl,
      device,
      {
        vendor: info.vendor,
        architecture: info.architecture,
        device: info.device,
        description: info.description,
        isFallbackAdapter: (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
        webgpu: impl,
      },
      hasF16,
      hasTimestamps,
    );
  }

  /** The device's limits. */
  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /**
   * Run `fn` inside validation + out-of-memory + internal error scopes; throw a GpuError naming `what`
   * if any fired (or if an uncaptured error arrived meanwhile).
   */
  async scoped<T>(what: string, fn: () => T): Promise<T> {
    const d = this.device;
    d.pushErrorScope("internal");
    d.pushErrorScope("out-of-memory");
    d.pushErrorScope("validation");
    let value: T;
    let thrown: unknown;
    try {
      value = fn();
    } catch (e) {
      thrown = e;
    }
    const errs = [await d.popErrorScope(), await d.popErrorScope(), await d.popErrorScope()]
      .filter((e): e is GPUError => e !== null);
    if (thrown) throw thrown;
    this.check(what, errs.map((e) => e.message));
    return value!;
  }

  /** Throw a GpuError for `extra` messages or any uncaptured error since the last check. */
  check(what: string, extra: string[] = []): void {
    const all = [...extra, ...this.uncaptured];
    this.uncaptured = [];
    if (all.length) throw new GpuError(`${what}: ${all.join("; ")}`);
  }

  /** Create a storage buffer holding `data` (padded to a multiple of 4 bytes). */
  createBufferWith(label: string, data: ArrayBufferView, usage = 0): GPUBuffer {
    const size = Math.max(4, Math.ceil(data.byteLength / 4) * 4);
    const buf = this.device.createBuffer({
      label,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | usage,
      mappedAtCreation: true,
    });
    new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    buf.unmap();
    return buf;
  }

  /** Create an uninitialised (zeroed) storage buffer of `size` bytes. */
  createBuffer(label: string, size: number, usage = 0): GPUBuffer {
    if (size > this.limits.maxBufferSize) {
      throw new GpuError(
        `buffer "${label}" needs ${size} bytes; the adapter's maxBufferSize is ${this.limits.maxBufferSize}`,
      );
    }
    return this.device.createBuffer({
      label,
      size: Math.max(4, Math.ceil(size / 4) * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | usage,
    });
  }

  /**
   * A MAP_READ buffer of at least `bytes` from the pool (or a new one) and its size class; class 0 (not
   * pooled) when the power of two would pass maxBufferSize.
   */
  private takeStaging(bytes: number): { buf: GPUBuffer; cls: number } {
    let cls = Math.max(256, 2 ** Math.ceil(Math.log2(Math.max(1, bytes))));
    const buf = this.staging.get(cls)?.pop();
    if (buf) {
      this.stagingBytes -= cls;
      this.stagingStats.reused++;
      return { buf, cls };
    }
    if (cls > this.limits.maxBufferSize) cls = 0;
    this.stagingStats.created++;
    const created = this.device.createBuffer({
      label: `staging ${cls || bytes}`,
      size: cls || bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    return { buf: created, cls };
  }

  /** Back to the pool after unmap (or destroyed when the pool is full). */
  private returnStaging(buf: GPUBuffer, cls: number): void {
    const free = this.staging.get(cls) ?? [];
    if (!cls || free.length >= Gpu.STAGING_PER_CLASS || this.stagingBytes + cls > Gpu.STAGING_BYTES) {
      buf.destroy();
      return;
    }
    free.push(buf);
    this.staging.set(cls, free);
    this.stagingBytes += cls;
  }

  /**
   * Copy the ranges into one pooled staging buffer, map it once, slice the results out. A failed copy or
   * map destroys the buffer (its state is unknown) instead of pooling it.
   */
  private async readRanges(
    ranges: { buffer: GPUBuffer; offset: number; size: number }[],
  ): Promise<ArrayBuffer[]> {
    const sizes = ranges.map((r) => Math.ceil(r.size / 4) * 4);
    const total = Math.max(4, sizes.reduce((a, b) => a + b, 0));
    const { buf, cls } = this.takeStaging(total);
    let out: ArrayBuffer[];
    try {
      const enc = this.device.createCommandEncoder();
      let off = 0;
      ranges.forEach((r, i) => {
        if (sizes[i]) enc.copyBufferToBuffer(r.buffer, r.offset, buf, off, sizes[i]);
        off += sizes[i];
      });
      this.device.queue.submit([enc.finish()]);
      await buf.mapAsync(GPUMapMode.READ, 0, total);
      try {
        const all = buf.getMappedRange(0, total);
        off = 0;
        out = ranges.map((r, i) => {
          const part = all.slice(off, off + r.size);
          off += sizes[i];
          return part;
        });
      } finally {
        buf.unmap();
      }
    } catch (e) {
      buf.destroy();
      throw e;
    }
    this.returnStaging(buf, cls);
    this.check("readback");
    return out;
  }

  /** Copy `size` bytes of `src` back to the CPU (one GPU->CPU sync, >= ~11 ms in Deno). */
  async read(src: GPUBuffer, size: number, offset = 0): Promise<ArrayBuffer> {
    return (await this.readRanges([{ buffer: src, offset, size }]))[0];
  }

  /** Copy several buffer ranges (from offset 0) into one staging buffer and map it once: one sync. */
  async readMany(parts: { buffer: GPUBuffer; size: number }[]): Promise<ArrayBuffer[]> {
    return await this.readRanges(parts.map((p) => ({ buffer: p.buffer, offset: 0, size: p.size })));
  }

  /**
   * A staging buffer of `size` bytes for a read whose copy the caller records into a submission of its
   * own ({@link Recorder.copy} to `buffer`); {@link finishRead} maps it later. The sync then waits only
   * for that submission, not for work submitted after it (a chained step's read while the next step runs).
   */
  stageRead(size: number): StagedRead {
    const bytes = Math.max(4, Math.ceil(size / 4) * 4);
    const { buf, cls } = this.takeStaging(bytes);
    return { buffer: buf, size, cls };
  }

  /** Map a {@link stageRead} buffer once its copy ran and return its bytes (one GPU->CPU sync). */
  async finishRead(r: StagedRead): Promise<ArrayBuffer> {
    const bytes = Math.max(4, Math.ceil(r.size / 4) * 4);
    let out: ArrayBuffer;
    try {
      await r.buffer.mapAsync(GPUMapMode.READ, 0, bytes);
      try {
        out = r.buffer.getMappedRange(0, bytes).slice(0, r.size);
      } finally {
        r.buffer.unmap();
      }
    } catch (e) {
      r.buffer.destroy();
      throw e;
    }
    this.returnStaging(r.buffer, r.cls);
    this.check("readback");
    return out;
  }

  /** Give back a {@link stageRead} buffer that will not be read (its copy may still be queued). */
  dropRead(r: StagedRead): void {
    this.returnStaging(r.buffer, r.cls);
  }

  /** Release the device. */
  destroy(): void {
    for (const free of this.staging.values()) for (const b of free) b.destroy();
    this.staging.clear();
    this.stagingBytes = 0;
    this.device.destroy();
  }
}
