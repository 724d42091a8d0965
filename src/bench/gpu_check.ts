/**
 * The GPU check (`bash scripts/gpu_check.sh`): what only a real GPU shows, measured in one short run on a
 * lent machine. Six stages, each run in its own process under its own time limit by scripts/gpu_check.ts,
 * each writing what it has measured so far to `<out>/stages/<name>.json` after every figure (a stage
 * killed at its limit still leaves its figures):
 *
 *   adapter   adapter info, features, the limits that matter, which WebGPU implementation
 *   stream    GPU->CPU sync cost, streaming-read GB/s (the yardstick), host->GPU writeBuffer GB/s
 *   matvec    n = 1 matmul GB/s per weight dtype {@link GPU_MATRIX_DTYPES} on a 1B model's shapes
 *   forward1b t(n), n = 1 .. 256, and AR tok/s of a Llama-3.2-1B-shaped random F16 target
 *   smollm2   the same for a SmolLM2-135M-shaped random target, F16 and Q8_0 (GGUF)
 *   tiny      AR and Sequoia tok/s with the bundled tiny pair (real acceptance)
 *
 * This file holds the stage table and the first three stages; the model stages are in
 * gpu_check_models.ts, the JSON/Markdown summary in gpu_check_report.ts.
 *
 * @module
 */

import * as ops from "../gpu/ops.ts";
import { destroyMatrix, type GpuMatrix, uploadMatrix } from "../gpu/tensor.ts";
import { GPU_WEIGHT_TYPES, type GpuWeightType } from "../gpu/weight_layout.ts";
import { randomMatrixBytes, tiledRandom } from "./random_weights.ts";
import { sharedGpu } from "../runtime/backend.ts";
import { currentWebGpu, navigatorGpu } from "../gpu/webgpu_impl.ts";
import { syncCost } from "../runtime/hardware_profile.ts";
import { median } from "../util/stats.ts";
import { copyBandwidth } from "./offload_probe.ts";
import { opContext, type StageContext, timeRecorded } from "./gpu_check_context.ts";
import { stageForward1b, stageSmollm2, stageTiny } from "./gpu_check_models.ts";

export type { StageContext };

/** One stage of the check. */
export interface StageSpec {
  name: string;
  title: string;
  /** Default time limit in seconds, full and quick (the driver also stops at the overall limit). */
  limitS: { full: number; quick: number };
  run(ctx: StageContext): Promise<void>;
}

/**
 * The weight dtypes a {@link GpuMatrix} can hold (gpu/weight_layout.ts GPU_WEIGHT_TYPES, the list the
 * shaders' DTYPE codes cover): a type added there is measured without a change here.
 */
export const GPU_MATRIX_DTYPES: readonly GpuWeightType[] = GPU_WEIGHT_TYPES;

/** The limits that decide what fits and how kernels are tiled. */
export const KEY_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

/** The stages in the order they run. */
export const STAGES: readonly StageSpec[] = [
  { name: "adapter", title: "Adapter", limitS: { full: 20, quick: 15 }, run: stageAdapter },
  {
    name: "stream",
    title: "Sync cost and streaming read",
    limitS: { full: 30, quick: 15 },
    run: stageStream,
  },
  { name: "matvec", title: "Matvec GB/s per dtype", limitS: { full: 80, quick: 20 }, run: stageMatvec },
  {
    name: "forward1b",
    title: "1B-shaped target forward",
    limitS: { full: 150, quick: 30 },
    run: stageForward1b,
  },
  {
    name: "smollm2",
    title: "SmolLM2-shaped random target",
    limitS: { full: 60, quick: 30 },
    run: stageSmollm2,
  },
  { name: "tiny", title: "Tiny pair: AR and Sequoia", limitS: { full: 60, quick: 30 }, run: stageTiny },
];

// --- 1. adapter -------------------------------------------------------------------------------------

async function stageAdapter(c: StageContext): Promise<void> {
  await c.put("implementation", {
    name: currentWebGpu() === "dawn" ? "Dawn (npm:webgpu@0.6.2)" : "Deno's built-in WebGPU (wgpu)",
    webgpu: currentWebGpu(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    os: `${Deno.build.os} ${Deno.build.arch}`,
    env: Object.fromEntries(
      ["DENO_WEBGPU_BACKEND", "VK_DRIVER_FILES", "VK_ICD_FILENAMES"].map((k) => [k, Deno.env.get(k) ?? null]),
    ),
  });
  const adapter = await (await navigatorGpu()).requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error(`no WebGPU adapter (${currentWebGpu()}: requestAdapter returned null)`);
  const i = adapter.info;
  await c.put("info", {
    vendor: i.vendor,
    architecture: i.architecture,
    device: i.device,
    description: i.description,
    isFallbackAdapter: (i as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
  });
  c.log(`${i.description || i.vendor} (${i.vendor}, ${i.architecture || "no architecture"})`);
  await c.put("features", [...adapter.features].sort());
  const limits: Record<string, number> = {};
  // GPUSupportedLimits' fields are getters on its prototype: walk the prototype for their names.
  for (const k of Object.getOwnPropertyNames(Object.getPrototypeOf(adapter.limits))) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === "number") limits[k] = v;
  }
  await c.put("limits", limits);
  await c.put("keyLimits", Object.fromEntries(KEY_LIMITS.map((k) => [k, limits[k] ?? null])));
  c.log(
    `binding ${limits.maxStorageBufferBindingSize} B, buffer ${limits.maxBufferSize} B, workgroup storage ${limits.maxComputeWorkgroupStorageSize} B, ${limits.maxComputeInvocationsPerWorkgroup} invocations`,
  );
  // What the engine's device got (Gpu.acquire raises the limits to the adapter's and asks for these).
  const gpu = await sharedGpu();
  await c.put("engineDevice", { shaderF16: gpu.hasF16, timestampQuery: gpu.hasTimestamps });
  await c.put("nvidiaSmi", await nvidiaSmi());
}

/** `nvidia-smi`'s one-line description of the card, or null where there is none. */
async function nvidiaSmi(): Promise<string | null> {
  try {
    const out = await new Deno.Command("nvidia-smi", {
      args: ["--query-gpu=name,memory.total,driver_version,clocks.max.memory", "--format=csv,noheader"],
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}

// --- 2. sync cost and streaming read ------------------------------------------------------------------

async function stageStream(c: StageContext): Promise<void> {
  const { gpu, ctx } = await opContext();
  const sync = await syncCost(gpu);
  await c.put("sync", sync);
  c.log(`empty submit ${sync.submitMs.toFixed(3)} ms, 4-byte readback ${sync.readbackMs.toFixed(3)} ms`);
  const maxBinding = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  const MiB = 1 << 20;
  const sizes = (c.quick ? [16 * MiB] : [64 * MiB, 256 * MiB, 1024 * MiB])
    .map((b) => Math.min(b, Math.floor(maxBinding / 16) * 16));
  const groupsList = c.quick ? [256] : [256, 1024, 4096];
  const rows: { bytes: number; groups: number; ms: number; gbps: number }[] = [];
  let best = 0;
  for (const bytes of [...new Set(sizes)]) {
    const data = gpu.createBuffer("stream", bytes);
    try {
      for (const groups of groupsList) {
        const partial = gpu.createBuffer("partials", groups * 256 * 4);
        const ms = await timeRecorded(
          gpu,
          ctx,
          () => ops.streamRead(ctx, { data, count: bytes / 16, out: partial, groups }),
          sync.submitMs,
        );
        partial.destroy();
        const gbps = bytes / (ms / 1000) / 1e9;
        rows.push({ bytes, groups, ms, gbps });
        best = Math.max(best, gbps);
        await c.put("streamRead", rows);
        await c.put("streamGbps", best);
        c.log(
          `stream_read ${bytes / MiB} MiB, ${groups} workgroups: ${ms.toFixed(3)} ms, ${
            gbps.toFixed(1)
          } GB/s`,
        );
      }
    } finally {
      data.destroy();
    }
  }
  const copy = await copyBandwidth(gpu, c.quick ? 16 * MiB : 256 * MiB);
  // copyBandwidth's figures are bytes / ms / 1e6, i.e. GB/s.
  await c.put("copy", { memcpyGBps: copy.memcpy, writeBufferGBps: copy.write });
  c.log(`host memcpy ${copy.memcpy.toFixed(1)} GB/s, writeBuffer ${copy.write.toFixed(1)} GB/s`);
}

// --- 3. matvec per dtype --------------------------------------------------------------------------------

/** The (rows, cols) matrices of a 1B model's decode step: down, gate/up, LM head (full) or small stand-ins. */
export function matvecShapes(quick: boolean): { name: string; rows: number; cols: number }[] {
  return quick
    ? [
      { name: "down-like", rows: 256, cols: 1024 },
      { name: "gate/up-like", rows: 1024, cols: 256 },
      { name: "LM head-like (parts)", rows: 4099, cols: 256 },
    ]
    : [
      { name: "down", rows: 2048, cols: 8192 },
      { name: "gate/up", rows: 8192, cols: 2048 },
      { name: "LM head", rows: 128256, cols: 2048 },
    ];
}

/** Bytes of matrix copies a matvec timing cycles through (beyond any L2; see stageMatvec). */
const WORKING_SET = 256 << 20;

async function stageMatvec(c: StageContext): Promise<void> {
  const { gpu, ctx } = await opContext();
  const sync = await syncCost(gpu);
  const shapes = matvecShapes(c.quick);
  const widest = Math.max(...shapes.map((s) => Math.max(s.rows, s.cols)));
  const x = gpu.createBufferWith("x", tiledRandom(widest, 2));
  const y = gpu.createBuffer("y", widest * 4);
  const streamGbps = c.previous.stream?.streamGbps as number | undefined;
  const rows: Record<string, unknown>[] = [];
  const skipped: { dtype: string; shape: string; reason: string }[] = [];
  await c.put("dtypes", GPU_MATRIX_DTYPES);
  for (const dtype of GPU_MATRIX_DTYPES) {
    for (const s of shapes) {
      const shape = `${s.rows}x${s.cols}`;
      const mats: GpuMatrix[] = [];
      try {
        const bytes = randomMatrixBytes(dtype, s.rows, s.cols, 7);
        // Quick: 1 MiB parts, so the split-by-rows path runs even at tiny sizes.
        const maxPart = c.quick && s.rows > 4096 ? 1 << 20 : undefined;
        // Copies read in turn, together at least WORKING_SET bytes: a 32 MB matrix read again and again
        // would be served from a big GPU's L2 cache (H100/H200: 50 MB) and overstate HBM bandwidth.
        const copies = Math.max(1, Math.ceil((c.quick ? 0 : WORKING_SET) / bytes.byteLength));
        for (let k = 0; k < copies; k++) {
          mats.push(
            await gpu.scoped(
              `upload ${dtype} ${shape}`,
              () => uploadMatrix(gpu, `${s.name} ${dtype}`, bytes, [s.rows, s.cols], dtype, maxPart),
            ),
          );
        }
        let turn = 0;
        const ms = await timeRecorded(
          gpu,
          ctx,
          () => ops.matmul(ctx, { w: mats[turn++ % copies], x, y, n: 1 }),
          sync.submitMs,
        );
        const w = mats[0];
        const gbps = w.bytes / (ms / 1000) / 1e9;
        rows.push({
          dtype,
          name: s.name,
          shape,
          parts: w.parts.length,
          copies,
          bytes: w.bytes,
          ms,
          gbps,
          ofStream: streamGbps ? gbps / streamGbps : null,
        });
        await c.put("rows", rows);
        c.log(
          `${dtype} ${s.name} ${shape} (${w.parts.length} part(s), ${copies} copies): ${ms.toFixed(3)} ms, ${
            gbps.toFixed(1)
          } GB/s`,
        );
      } catch (e) {
        const reason = (e as Error).message;
        skipped.push({ dtype, shape, reason });
        await c.put("skipped", skipped);
        c.log(`skip ${dtype} ${shape}: ${reason}`);
      } finally {
        for (const m of mats) destroyMatrix(m);
      }
    }
  }
  x.destroy();
  y.destroy();
  if (skipped.length === 0) await c.put("skipped", []);
  // Per dtype, the median over shapes: one figure to compare dtypes by.
  await c.put(
    "byDtype",
    Object.fromEntries(
      GPU_MATRIX_DTYPES.map((d) => {
        const g = rows.filter((r) => r.dtype === d).map((r) => r.gbps as number);
        return [d, g.length ? median(g) : null];
      }),
    ),
  );
}
