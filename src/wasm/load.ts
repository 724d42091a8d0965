/**
 * Loading a validated checkpoint into the wasm backend.
 *
 * @module
 */

import type { Checkpoint } from "../model/folder.ts";
import { WasmLlama } from "./llama.ts";
import { defaultThreads, WasmRuntime } from "./runtime.ts";
import { loadWasmWeights, wasmWeightsDtype } from "./weights.ts";
import type { WeightsDtype } from "../model/weight_types.ts";

/** Options of {@link loadWasmModel}. */
export interface WasmLoadOptions {
  /** Threads per forward (default: the cores of this machine). */
  threads?: number;
  /** KV slots of sequence 0 (default: the model's context length). */
  capacity?: number;
  /** KV caches for batched streams (default 1). */
  sequences?: number;
  /** KV slots of each further sequence (default: `capacity`). */
  streamCapacity?: number;
  /** What type each matrix is loaded as (default: the config's `load_as`, else as stored). */
  weightsDtype?: WeightsDtype;
}

/** Load a folder's weights (GGUF blocks as stored) into a wasm model. */
export async function loadWasmModel(folder: Checkpoint, opts: WasmLoadOptions = {}): Promise<WasmLlama> {
  // Target and draft share the process's runtime for this thread count: one set of worker threads.
  const rt = await WasmRuntime.shared(opts.threads ?? defaultThreads());
  try {
    const want = wasmWeightsDtype(folder.config.loadAs, opts.weightsDtype);
    const w = await loadWasmWeights(rt, folder.checkpoint, folder.config, want);
    // The threads start while the weights load (and while a second model loads); the first forward waits
    // for any still missing (WasmRuntime.ensureThreads).
    const capacity = opts.capacity ?? folder.config.maxPositions;
    const model = new WasmLlama(
      folder.config,
      rt,
      w,
      capacity,
      128,
      opts.sequences,
      opts.streamCapacity ?? capacity,
    );
    model.weightsDtype = opts.weightsDtype ?? "auto";
    return model;
  } catch (e) {
    rt.release();
    throw e;
  }
}
