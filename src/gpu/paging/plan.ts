/**
 * Planning paged weights (pure): how a model's bytes split between resident buffers and a ring of layer
 * slots under a GPU memory budget, and the sizes that plan is computed from.
 *
 * @module
 */

import type { ModelConfig } from "../../model/config.ts";
import type { TensorStore } from "../../model/tensor_store.ts";
import type { WeightsDtype } from "../../model/weight_types.ts";
import { gpuMatrices } from "../weight_layout.ts";
import { LAYER_MATRIX_ROLES, llamaTensorSpec } from "../../model/weights.ts";
import type { PagingPlan } from "../../model/capabilities.ts";

/** Most ring slots the planner gives a paged model (more only adds look-ahead, not fewer bytes). */
export const MAX_RING_SLOTS = 3;

/**
 * Split a model under `budget` bytes of GPU weight memory, or return undefined when every weight fits.
 * Keeps as many whole layers resident as the budget allows after a ring of min(maxRingSlots, what fits)
 * slots; throws a RangeError stating the bytes needed when not even two slots fit.
 */
export function planPaging(a: {
  nLayers: number;
  layerBytes: number;
  baseBytes: number;
  budget: number;
  maxRingSlots?: number;
  what?: string;
}): PagingPlan | undefined {
  const { nLayers, layerBytes, baseBytes, budget } = a;
  const maxSlots = Math.max(2, a.maxRingSlots ?? MAX_RING_SLOTS);
  if (!(budget >= 0)) throw new RangeError(`GPU memory budget must be a non-negative number, got ${budget}`);
  if (baseBytes + nLayers * layerBytes <= budget) return undefined;
  const fit = Math.floor((budget - baseBytes) / layerBytes);
  if (fit < 2) {
    const need = baseBytes + 2 * layerBytes;
    throw new RangeError(
      `GPU memory budget of ${budget} bytes is too small${a.what ? ` for ${a.what}` : ""}: the embeddings, ` +
        `LM head and norms need ${baseBytes} bytes resident and streaming needs at least 2 layer slots of ` +
        `${layerBytes} bytes, ${need} bytes in all`,
    );
  }
  const ringSlots = Math.min(maxSlots, fit, nLayers);
  // Whole resident layers beyond the ring, but never so many that the ring would cover every streamed layer.
  const residentLayers = Math.min(fit - ringSlots, nLayers - ringSlots - 1);
  return {
    residentLayers,
    ringSlots,
    layerBytes,
    baseBytes,
    gpuWeightBytes: baseBytes + (residentLayers + ringSlots) * layerBytes,
    bytesPerForward: (nLayers - residentLayers) * layerBytes,
  };
}

/** GPU bytes of every norm vector (two per layer and the final one), kept as f32. */
export function normBytes(c: ModelConfig): number {
  return (2 * c.nLayers + 1) * c.hiddenSize * 4;
}

/**
 * What paging needs to know about a checkpoint's GPU footprint: the largest decoder layer's seven
 * matrices (a slot's size) and the always-resident rest (embeddings, an untied LM head, the norms as f32).
 */
export function weightSizes(
  st: TensorStore,
  c: ModelConfig,
  want: WeightsDtype = "auto",
): { nLayers: number; layerBytes: number; baseBytes: number } {
  const spec = llamaTensorSpec(c);
  const typed = gpuMatrices(st, want);
  const bytesOf = (name: string) => typed.get(name).byteLength;
  const layerBytes = Math.max(
    ...spec.layers.map((s) => LAYER_MATRIX_ROLES.reduce((a, r) => a + bytesOf(s[r].name), 0)),
  );
  const { embed, lmHead } = spec.global;
  const baseBytes = bytesOf(embed.name) + (lmHead ? bytesOf(lmHead.name) : 0) + normBytes(c);
  return { nLayers: c.nLayers, layerBytes, baseBytes };
}

/** The smallest GPU memory budget under which `st` can run paged: the resident part plus two layer slots. */
export function minPagedBudget(st: TensorStore, c: ModelConfig, want: WeightsDtype = "auto"): number {
  const w = weightSizes(st, c, want);
  return w.baseBytes + 2 * w.layerBytes;
}
