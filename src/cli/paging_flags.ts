/**
 * The paging flags every model-loading subcommand takes (generate, serve, profile):
 * `--gpu-memory-budget B` and `--host-memory-budget B`, as byte sizes (see bytes.ts).
 *
 * @module
 */

import { parseBytes } from "./bytes.ts";

/** node:util parseArgs definitions of the two flags (spread into a command's options). */
export const PAGING_FLAGS = {
  "gpu-memory-budget": { type: "string" },
  "host-memory-budget": { type: "string" },
} as const;

/** The budgets a command passes to model loading (undefined: not given). */
export interface PagingBudgets {
  /** GPU bytes for the target's weights; below its size, decoder layers are streamed. */
  gpuMemoryBudget?: number;
  /** Host RAM for caching streamed layers. */
  hostMemoryBudget?: number;
}

/** Parse the flags' values; throws a UsageError naming the flag. */
export function pagingBudgets(
  values: { "gpu-memory-budget"?: string; "host-memory-budget"?: string },
): PagingBudgets {
  const bytes = (flag: string, v: string | undefined) =>
    v === undefined ? undefined : parseBytes(`--${flag}`, v);
  return {
    gpuMemoryBudget: bytes("gpu-memory-budget", values["gpu-memory-budget"]),
    hostMemoryBudget: bytes("host-memory-budget", values["host-memory-budget"]),
  };
}
