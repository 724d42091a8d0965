/**
 * The paging flags every model-loading subcommand takes (generate, serve, profile):
 * `--gpu-memory-budget B` and `--host-memory-budget B`, as byte sizes (see bytes.ts).
 *
 * @module
 */

import { parseBytes } from "../util/bytes.ts";
import type { PagingBudgets } from "../runtime/backend.ts";
import { UsageError } from "./usage.ts";

/** node:util parseArgs definitions of the two flags (spread into a command's options). */
export const PAGING_FLAGS = {
  "gpu-memory-budget": { type: "string" },
  "host-memory-budget": { type: "string" },
} as const;

/** Parse the flags' values; throws a UsageError naming the flag. */
export function pagingBudgets(
  values: { "gpu-memory-budget"?: string; "host-memory-budget"?: string },
): PagingBudgets {
  const bytes = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    try {
      return parseBytes(`--${flag}`, v);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  };
  return {
    gpuMemoryBudget: bytes("gpu-memory-budget", values["gpu-memory-budget"]),
    hostMemoryBudget: bytes("host-memory-budget", values["host-memory-budget"]),
  };
}
