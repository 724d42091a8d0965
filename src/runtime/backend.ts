/**
 * Choosing where a model runs: the WebGPU engine, the wasm SIMD backend or the CPU reference; "auto"
 * (what a user may also ask for) picks the faster of wasm and gpu by measurement, see backend_choice.ts.
 *
 * @module
 */

import type { CausalLM } from "../model/causal_lm.ts";
import { type Checkpoint } from "../model/folder.ts";
import { loadCpuModel } from "../cpu/load.ts";
import { Gpu } from "../gpu/device.ts";
import { currentWebGpu, type WebGpuImpl } from "../gpu/webgpu_impl.ts";
import { GpuLlama } from "../gpu/llama/model.ts";
import { loadWasmModel } from "../wasm/load.ts";
import { defaultThreads } from "../wasm/runtime.ts";
import { formatBytes } from "../util/bytes.ts";
import { withVocabMap } from "../model/vocab_map.ts";
import type { KvDtype } from "../gpu/ops.ts";
import { type WeightsDtype, withLoadedValues } from "../model/weight_types.ts";

/** The budgets a command passes to model loading (undefined: not given). */
export interface PagingBudgets {
  /** GPU bytes for the target's weights; below its size, decoder layers are streamed. */
  gpuMemoryBudget?: number;
  /** Host RAM for caching streamed layers. */
  hostMemoryBudget?: number;
}

/** Compute backends. */
export const BACKENDS = ["gpu", "cpu", "wasm"] as const;
/** A compute backend. */
export type Backend = typeof BACKENDS[number];

/** What a user may ask for: a backend, or "auto" (the faster of wasm and gpu here, measured once). */
export const BACKEND_CHOICES = [...BACKENDS, "auto"] as const;
/** A backend or "auto". */
export type BackendChoice = typeof BACKEND_CHOICES[number];

/** Most threads the wasm backend runs a forward on (its runtime's limit). */
export const MAX_THREADS = 64;

export { defaultThreads };

/** Options of {@link loadModel}. */
export interface LoadOptions extends PagingBudgets {
  /** Most tokens one forward must take; at least 256 on the GPU. */
  maxBatch?: number;
  /** wasm: threads per forward (default {@link defaultThreads}); ignored by the other backends. */
  threads?: number;
  /**
   * KV caches for batched streams (MultiSequence; default 1). wasm and cpu only: the gpu backend holds
   * one sequence and refuses more.
   */
  sequences?: number;
  /** KV slots of sequence 0, the model's own `kv` (default: the model's context length). */
  capacity?: number;
  /** KV slots of each further sequence (default: `capacity`). */
  streamCapacity?: number;
  /** gpu only: KV cache element type (default "f32"; "f16" halves the cache); other backends refuse f16. */
  kvDtype?: KvDtype;
  /**
   * What type each weight matrix is loaded as (`--weights-dtype`, model/weight_types.ts; the cpu
   * reference computes in f32 with the values that type holds).
   */
  weightsDtype?: WeightsDtype;
  /** gpu only: the WebGPU implementation (default: the process's, gpu/webgpu_impl.ts). */
  webgpu?: WebGpuImpl;
}

/** A loaded model and a one-line description of where it runs. */
export interface LoadedModel {
  model: CausalLM;
  backend: Backend;
  /** e.g. "gpu: llvmpipe (LLVM 15.0.6, 256 bits)", "wasm: 2 threads, SIMD128" or "cpu reference". */
  device: string;
  /** wasm: threads per forward. */
  threads?: number;
  /**
   * Bytes of weights the backend reads once per decoded token: f32 on the CPU reference, the blocks as
   * stored (plus the embeddings) on wasm.
   */
  weightBytes: number;
  /** Release the model and its device (the wasm backend's threads). */
  close(): void;
}

const shared = new Map<WebGpuImpl, Promise<Gpu>>();

/**
 * The process-wide GPU device of `impl` (default: the process's implementation, gpu/webgpu_impl.ts),
 * acquired once.
 */
export function sharedGpu(impl: WebGpuImpl = currentWebGpu()): Promise<Gpu> {
  let p = shared.get(impl);
  if (!p) {
    p = Gpu.acquire(impl);
    shared.set(impl, p);
  }
  return p;
}

/** Throws a RangeError naming the budget when `backend` cannot page weights (only gpu can). */
function checkPaging(backend: Backend, opts: PagingBudgets): void {
  if (backend !== "gpu" && opts.gpuMemoryBudget !== undefined) {
    throw new RangeError(
      `a GPU memory budget (paged weights) needs the gpu backend, not ${backend}`,
    );
  }
}

/**
 * Load `folder`'s weights on `backend`. A pruned-vocabulary draft (config.json `vocab_map`) comes back
 * wrapped over the outer vocabulary (model/vocab_map.ts), on every backend; its weight bytes are the
 * inner model's.
 */
export async function loadModel(
  folder: Checkpoint,
  backend: Backend,
  opts: LoadOptions = {},
): Promise<LoadedModel> {
  const loaded = await loadUnmapped(folder, backend, opts);
  // close() still disposes the inner model: all the wrapper holds.
  return folder.config.vocabMap ? { ...loaded, model: withVocabMap(loaded.model) } : loaded;
}

/** ", weights q8_0" for a model loaded with a `--weights-dtype` other than auto (startup lines, stats). */
function loadedAs(opts: LoadOptions): string {
  return opts.weightsDtype && opts.weightsDtype !== "auto" ? `, weights ${opts.weightsDtype}` : "";
}

/** {@link loadModel} on the checkpoint's own rows. */
async function loadUnmapped(folder: Checkpoint, backend: Backend, opts: LoadOptions): Promise<LoadedModel> {
  checkPaging(backend, opts);
  if (backend !== "gpu" && (opts.kvDtype ?? "f32") !== "f32") {
    throw new RangeError(`an ${opts.kvDtype} KV cache needs the gpu backend, not ${backend}`);
  }
  if (backend === "cpu") {
    // The reference computes in f32 with the values the other backends would load (weight_types.ts).
    const values = {
      ...folder,
      checkpoint: withLoadedValues(folder.checkpoint, opts.weightsDtype ?? "auto"),
    };
    const model = await loadCpuModel(values, opts.capacity, opts.sequences, opts.streamCapacity);
    const st = folder.checkpoint;
    const weightBytes = st.names().reduce((a, n) => a + 4 * st.get(n)!.shape.reduce((x, y) => x * y, 1), 0);
    return {
      model,
      backend,
      device: `cpu reference${loadedAs(opts)}`,
      weightBytes,
      close: () => model.dispose(),
    };
  }
  if (backend === "wasm") {
    const model = await loadWasmModel(folder, {
      threads: opts.threads ?? defaultThreads(),
      capacity: opts.capacity,
      sequences: opts.sequences,
      streamCapacity: opts.streamCapacity,
      weightsDtype: opts.weightsDtype,
    });
    const threads = model.threads;
    return {
      model,
      backend,
      device: `wasm: ${threads} thread${threads === 1 ? "" : "s"}, SIMD128${loadedAs(opts)}`,
      threads,
      weightBytes: model.w.bytes,
      close: () => model.dispose(),
    };
  }
  if ((opts.sequences ?? 1) > 1) {
    throw new RangeError(
      `the gpu backend decodes one sequence at a time: --max-batch ${opts.sequences} needs --backend wasm or cpu`,
    );
  }
  const gpu = await sharedGpu(opts.webgpu);
  const model = await GpuLlama.load(gpu, folder, {
    maxBatch: Math.max(256, opts.maxBatch ?? 0),
    gpuMemoryBudget: opts.gpuMemoryBudget,
    hostMemoryBudget: opts.hostMemoryBudget,
    kvDtype: opts.kvDtype,
    weightsDtype: opts.weightsDtype,
  });
  const p = model.paging;
  const paging = p
    ? `, paged: ${p.residentLayers} resident layers + ${p.ringSlots}-slot ring of ${
      formatBytes(p.layerBytes)
    }`
    : "";
  return {
    model,
    backend,
    device: `gpu: ${gpu.adapter.description || gpu.adapter.vendor}${
      gpu.webgpu === "dawn" ? " (Dawn)" : ""
    }${paging}${loadedAs(opts)}`,
    weightBytes: model.weightBytes,
    close: () => model.dispose(),
  };
}
