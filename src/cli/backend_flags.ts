/**
 * The backend flags every model-loading subcommand takes (serve, generate, profile, bench):
 * `--backend gpu|cpu|wasm|auto` (default auto), `--threads N` (the wasm backend's threads per
 * forward, default: this machine's cores) and `--weights-dtype auto|f16|q8_0|q4_0` (the target's
 * matrices as stored or converted on load, model/weight_types.ts) and `--webgpu deno|dawn|auto` (the WebGPU
 * implementation, gpu/webgpu_impl.ts; default `$SPECDEC_WEBGPU`, else deno).
 *
 * @module
 */

import {
  BACKEND_CHOICES,
  type BackendChoice,
  defaultThreads,
  MAX_THREADS,
  type PagingBudgets,
} from "../runtime/backend.ts";
import { UsageError } from "./usage.ts";
import type { KvDtype } from "../gpu/ops.ts";
import { WEIGHTS_DTYPES, type WeightsDtype } from "../model/weight_types.ts";
import { parseWebGpuChoice, type WebGpuChoice, webGpuFromEnv } from "../gpu/webgpu_impl.ts";

/** node:util parseArgs definitions of the two flags (spread into a command's options). */
export const BACKEND_FLAGS = {
  backend: { type: "string", default: "auto" },
  threads: { type: "string" },
  "kv-dtype": { type: "string", default: "f32" },
  "weights-dtype": { type: "string", default: "auto" },
  webgpu: { type: "string" },
} as const;

/** The flags' usage lines: two-space indent, descriptions from column `col` (a command's own layout). */
export function backendUsage(col: number): string {
  const lines: [string, string[]][] = [
    ["--backend B", [
      "auto (default: the faster of wasm and gpu for this adapter and model, by t(1)",
      "measured once and cached; gpu with a GPU memory budget; wasm with no WebGPU",
      "adapter), gpu (WebGPU), wasm (WebAssembly SIMD on the CPU) or cpu (the reference)",
    ]],
    ["--threads N", [
      `wasm: threads per forward, 1..${MAX_THREADS} (default ${defaultThreads()}: this machine's cores)`,
    ]],
    ["--kv-dtype T", [
      "gpu: KV cache element type, f32 (default) or f16 (half the cache memory; keys and",
      "values rounded once to f16); f16 needs --backend gpu",
    ]],
    ["--weights-dtype T", [
      "the target's matrices: auto (default: as stored, GGUF blocks kept), f16, q8_0 or",
      "q4_0 (quantized on load with llama.cpp's layouts; rows not whole 32-element blocks",
      "stay as stored; the cpu reference computes in f32 with those values)",
    ]],
    ["--webgpu W", [
      "gpu: deno (Deno's built-in WebGPU; the default, or $SPECDEC_WEBGPU), dawn (Dawn, from",
      "npm:webgpu; ~0.3 ms readbacks instead of ~11 ms; needs Mesa >= 24 on CPU-only machines)",
      "or auto (the faster for this adapter and model by t(1) + t(16), measured once, cached)",
    ]],
  ];
  return lines.map(([flag, text]) =>
    text.map((t, i) => (i === 0 ? `  ${flag}`.padEnd(col) : " ".repeat(col)) + t + "\n").join("")
  ).join("");
}

/** The backend, thread count and weight types the flags ask for. */
export interface BackendFlags {
  backend: BackendChoice;
  threads: number;
  kvDtype: KvDtype;
  weightsDtype: WeightsDtype;
  /** The WebGPU implementation of the gpu backend (auto: measured, runtime/webgpu_choice.ts). */
  webgpu: WebGpuChoice;
}

/** Parse the flags' values; throws a UsageError naming the flag. */
export function backendFlags(
  values: {
    backend?: string;
    threads?: string;
    "kv-dtype"?: string;
    "weights-dtype"?: string;
    webgpu?: string;
  },
): BackendFlags {
  const backend = values.backend ?? "auto";
  if (!BACKEND_CHOICES.includes(backend as BackendChoice)) {
    throw new UsageError(
      `--backend must be one of ${BACKEND_CHOICES.join(", ")}, got ${JSON.stringify(backend)}`,
    );
  }
  let threads = defaultThreads();
  if (values.threads !== undefined) {
    threads = Number(values.threads);
    if (!/^\s*\d+\s*$/.test(values.threads) || !(threads >= 1 && threads <= MAX_THREADS)) {
      throw new UsageError(`--threads must be an integer 1..${MAX_THREADS}, got ${values.threads}`);
    }
  }
  const kvDtype = values["kv-dtype"] ?? "f32";
  if (kvDtype !== "f32" && kvDtype !== "f16") {
    throw new UsageError(`--kv-dtype must be f32 or f16, got ${JSON.stringify(kvDtype)}`);
  }
  if (kvDtype === "f16" && backend !== "gpu") {
    throw new UsageError(`--kv-dtype f16 needs --backend gpu (the ${backend} backend keeps an f32 cache)`);
  }
  const weightsDtype = values["weights-dtype"] ?? "auto";
  if (!(WEIGHTS_DTYPES as readonly string[]).includes(weightsDtype)) {
    throw new UsageError(
      `--weights-dtype must be one of ${WEIGHTS_DTYPES.join(", ")}, got ${JSON.stringify(weightsDtype)}`,
    );
  }
  let webgpu: WebGpuChoice;
  try {
    webgpu = values.webgpu === undefined
      ? webGpuFromEnv() ?? "deno"
      : parseWebGpuChoice(values.webgpu, "--webgpu");
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.webgpu !== undefined && values.webgpu !== "deno" && (backend === "wasm" || backend === "cpu")) {
    throw new UsageError(
      `--webgpu ${values.webgpu} needs --backend gpu or auto (${backend} does not use WebGPU)`,
    );
  }
  return {
    backend: backend as BackendChoice,
    threads,
    kvDtype,
    weightsDtype: weightsDtype as WeightsDtype,
    webgpu,
  };
}

/** Throws a UsageError when a GPU memory budget is given with a backend that cannot page (cpu, wasm). */
export function checkPagingBackend(backend: BackendChoice, paging: PagingBudgets): void {
  if (paging.gpuMemoryBudget !== undefined && backend !== "gpu" && backend !== "auto") {
    throw new UsageError(`--gpu-memory-budget (paged weights) needs --backend gpu (or auto), not ${backend}`);
  }
}
