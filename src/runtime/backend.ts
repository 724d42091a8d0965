/**
 * Choosing where a model runs: the WebGPU engine (default) or the CPU reference.
 *
 * @module
 */

import type { CausalLM } from "../model/causal_lm.ts";
import { type Checkpoint } from "../model/folder.ts";
import { loadCpuModel } from "../cpu/load.ts";
import { Gpu } from "../gpu/device.ts";
import { GpuLlama } from "../gpu/llama/model.ts";
import { formatBytes } from "../util/bytes.ts";

/** The budgets a command passes to model loading (undefined: not given). */
export interface PagingBudgets {
  /** GPU bytes for the target's weights; below its size, decoder layers are streamed. */
  gpuMemoryBudget?: number;
  /** Host RAM for caching streamed layers. */
  hostMemoryBudget?: number;
}

/** Compute backends. */
export const BACKENDS = ["gpu", "cpu"] as const;
/** A compute backend. */
export type Backend = typeof BACKENDS[number];

/** A loaded model and a one-line description of where it runs. */
export interface LoadedModel {
  model: CausalLM;
  /** e.g. "gpu: llvmpipe (LLVM 15.0.6, 256 bits)" or "cpu reference". */
  device: string;
  /** Bytes of weights the backend holds (and reads once per decoded token): f32 on the CPU reference. */
  weightBytes: number;
  /** Release the model and its device. */
  close(): void;
}

let shared: Promise<Gpu> | undefined;

/** The process-wide GPU device (acquired once). */
export function sharedGpu(): Promise<Gpu> {
  shared ??= Gpu.acquire();
  return shared;
}

/** Load `folder`'s weights on `backend`. */
export async function loadModel(
  folder: Checkpoint,
  backend: Backend,
  opts: { maxBatch?: number } & PagingBudgets = {},
): Promise<LoadedModel> {
  if (backend === "cpu") {
    if (opts.gpuMemoryBudget !== undefined) {
      throw new RangeError("a GPU memory budget (paged weights) needs the gpu backend");
    }
    const model = await loadCpuModel(folder);
    const st = folder.checkpoint;
    const weightBytes = st.names().reduce((a, n) => a + 4 * st.get(n)!.shape.reduce((x, y) => x * y, 1), 0);
    return { model, device: "cpu reference", weightBytes, close: () => model.dispose() };
  }
  const gpu = await sharedGpu();
  const model = await GpuLlama.load(gpu, folder, {
    maxBatch: Math.max(256, opts.maxBatch ?? 0),
    gpuMemoryBudget: opts.gpuMemoryBudget,
    hostMemoryBudget: opts.hostMemoryBudget,
  });
  const p = model.paging;
  const paging = p
    ? `, paged: ${p.residentLayers} resident layers + ${p.ringSlots}-slot ring of ${
      formatBytes(p.layerBytes)
    }`
    : "";
  return {
    model,
    device: `gpu: ${gpu.adapter.description || gpu.adapter.vendor}${paging}`,
    weightBytes: model.weightBytes,
    close: () => model.dispose(),
  };
}
