/**
 * Loading a validated checkpoint into the CPU reference backend.
 *
 * @module
 */

import type { Checkpoint } from "../model/folder.ts";
import { loadWeightsF32 } from "../model/weights.ts";
import { CpuLlama } from "./llama.ts";

/**
 * Load a folder's weights (converted to f32) into a CPU reference model with `capacity` KV slots
 * (`sequences` caches, default 1; the ones after the first of `streamCapacity` slots).
 */
export async function loadCpuModel(
  folder: Checkpoint,
  capacity?: number,
  sequences?: number,
  streamCapacity?: number,
): Promise<CpuLlama> {
  const w = await loadWeightsF32(folder.checkpoint, folder.config);
  return new CpuLlama(folder.config, w, capacity, sequences, streamCapacity);
}
