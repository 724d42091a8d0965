/**
 * `--backend auto`: run the target where one decode step is faster, wasm or gpu, decided by measuring
 * and cached. The measure is t(1), the wall time of a single-token forward after a short prefix, as a
 * decode step pays it (on the GPU: the submission, compute and the readback of the picked id; on wasm:
 * the forward returning its logits), median of a few after two warm-ups. Without a WebGPU adapter auto
 * is wasm; with paged weights (a GPU memory budget) it is gpu; neither is measured.
 *
 * The decision is cached in the profile.json of the target's folder (or of `$SPECDEC_CACHE_DIR`), in
 * its `backends` section, keyed by GPU adapter, CPU, wasm thread count, Deno version and target model,
 * with both figures. A measured decision hands back the winner's loaded model, so the target is not
 * loaded a third time.
 *
 * @module
 */

import type { CausalLM } from "../model/causal_lm.ts";
import { type Checkpoint, openCheckpoint } from "../model/folder.ts";
import type { AdapterDescription } from "../gpu/device.ts";
import { currentWebGpu, navigatorGpu } from "../gpu/webgpu_impl.ts";
import { median } from "../util/stats.ts";
import {
  type Backend,
  type BackendChoice,
  type LoadedModel,
  loadModel,
  type LoadOptions,
  type PagingBudgets,
} from "./backend.ts";
import { modelId } from "./acceptance_store.ts";
import { cacheFiles, InvalidCacheFile, readCacheJson } from "./cache_dir.ts";
import { adapterId, cpuName, verifyForward, writeProfileSection } from "./hardware_profile.ts";
import { kernelId } from "../wasm/runtime.ts";
import { type WeightsDtype, weightsSuffix } from "../model/weight_types.ts";

/** The backends auto chooses between. */
export type AutoBackend = Extract<Backend, "gpu" | "wasm">;

/** What a cached decision is valid for. */
export interface BackendChoiceKey {
  /** The GPU adapter (vendor|architecture|device|description). */
  adapter: string;
  /** This CPU's name and cores. */
  cpu: string;
  /** The wasm backend's threads per forward. */
  threads: number;
  deno: string;
  /** The target model's identity (see acceptance_store.ts). */
  target: string;
}

/** t(1) in ms on each backend; null where the model could not run. */
export interface T1 {
  wasm: number | null;
  gpu: number | null;
}

/** One cached decision. */
interface BackendChoiceEntry {
  key: BackendChoiceKey;
  backend: AutoBackend;
  t1_ms: T1;
  measured_at: string;
}

/** How auto decided. */
export type ChoiceBasis = "measured" | "cached" | "no WebGPU adapter" | "paged weights";

/** The backend auto picked, and why. */
export interface BackendDecision {
  backend: AutoBackend;
  basis: ChoiceBasis;
  /** The wasm thread count the decision holds for. */
  threads: number;
  /** Both figures (measured now or cached); absent when nothing was compared. */
  t1?: T1;
  /** The GPU adapter's description, when there is one. */
  adapter?: string;
  /** A measured decision: the winner's model, loaded with the caller's options (the caller's to close). */
  loaded?: LoadedModel;
}

/** Options of {@link chooseBackend}. */
export interface ChooseOptions {
  /** wasm threads per forward. */
  threads: number;
  /** Paged weights imply gpu. */
  paging?: PagingBudgets;
  /** Load options of the model the caller will keep (the measured winner is loaded with them). */
  maxBatch?: number;
  /** What type the target's matrices load as (part of the cached decision's key when not "auto"). */
  weightsDtype?: WeightsDtype;
  /** Measure again instead of using the cached decision. */
  reprofile?: boolean;
  /** Cache directory (default `$SPECDEC_CACHE_DIR`; null: beside the target). */
  cacheDir?: string | null;
  /** Measurement progress and warnings. */
  log?: (line: string) => void;
}

/** The WebGPU adapter this process would get, or undefined when there is none (or no WebGPU at all). */
export async function probeAdapter(): Promise<AdapterDescription | undefined> {
  try {
    const a = await (await navigatorGpu()).requestAdapter({ powerPreference: "high-performance" });
    if (!a) return undefined;
    const i = a.info;
    return {
      vendor: i.vendor,
      architecture: i.architecture,
      device: i.device,
      description: i.description,
      isFallbackAdapter: (i as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
      webgpu: currentWebGpu(),
    };
  } catch {
    return undefined;
  }
}

/**
 * t(1): median wall time (ms) of a single-token forward after a `past`-token prefix, after `warmup`
 * unmeasured ones (12: the wasm kernels start in V8's baseline compiler and run optimized code only after
 * a few forwards, 3-5 ms against 0.9 ms for the tiny target); each appends one slot, the cache is emptied
 * after.
 */
export async function decodeStepMs(
  model: CausalLM,
  o: { past?: number; warmup?: number; reps?: number } = {},
): Promise<number> {
  const warmup = o.warmup ?? 12, reps = o.reps ?? 5;
  const past = Math.max(1, Math.min(o.past ?? 16, model.kv.capacity - warmup - reps));
  model.kv.truncate(0);
  await model.forward({
    tokens: new Int32Array(past).fill(5),
    positions: Int32Array.from({ length: past }, (_, i) => i),
    logitRows: [past - 1],
  });
  const samples: number[] = [];
  for (let i = 0; i < warmup + reps; i++) {
    const t0 = performance.now();
    await verifyForward(model, { tokens: new Int32Array([7]), positions: new Int32Array([past + i]) });
    if (i >= warmup) samples.push(performance.now() - t0);
  }
  model.kv.truncate(0);
  return median(samples);
}

/** The file decisions for `folder` are read from and written to (the target's profile.json). */
function choiceFiles(folder: Checkpoint, cacheDir?: string | null) {
  return cacheFiles(folder.dir, "profile.json", cacheDir);
}

const sameKey = (a: BackendChoiceKey, b: BackendChoiceKey) =>
  a.adapter === b.adapter && a.cpu === b.cpu && a.threads === b.threads && a.deno === b.deno &&
  a.target === b.target;

/** One file's decisions ([] when it does not exist); throws {@link InvalidCacheFile} naming it. */
async function readChoices(path: string): Promise<BackendChoiceEntry[]> {
  const j = await readCacheJson(path) as { backends?: unknown } | undefined;
  if (j === undefined || (j && typeof j === "object" && j.backends === undefined)) return [];
  const list = j && typeof j === "object" ? j.backends : undefined;
  const valid = (e: Partial<BackendChoiceEntry> | null) =>
    !!e && typeof e === "object" && !!e.key && (e.backend === "gpu" || e.backend === "wasm") &&
    !!e.t1_ms && typeof e.t1_ms === "object";
  if (!Array.isArray(list) || !list.every(valid)) {
    throw new InvalidCacheFile(path, "not a valid profile file (backends of key, backend, t1_ms)");
  }
  return list;
}

/**
 * Pick gpu or wasm for `folder`'s target: paged weights -> gpu; no WebGPU adapter -> wasm; else the
 * cached decision for this adapter, CPU, thread count, Deno and model, or a measurement of t(1) on both
 * (cached). A backend the model cannot load on loses (its t(1) null); both failing throws.
 */
export async function chooseBackend(folder: Checkpoint, o: ChooseOptions): Promise<BackendDecision> {
  const threads = o.threads;
  if (o.paging?.gpuMemoryBudget !== undefined || o.paging?.hostMemoryBudget !== undefined) {
    return { backend: "gpu", basis: "paged weights", threads };
  }
  const adapter = await probeAdapter();
  if (!adapter) return { backend: "wasm", basis: "no WebGPU adapter", threads };
  const description = adapter.description || adapter.vendor;
  const key: BackendChoiceKey = {
    adapter: adapterId(adapter),
    // The wasm kernels' build too: rebuilt kernels are measured again.
    cpu: `${cpuName()}, ${navigator.hardwareConcurrency || 1} cores, kernels ${kernelId()}`,
    threads,
    deno: Deno.version.deno,
    target: await modelId(folder) + weightsSuffix(o.weightsDtype),
  };
  const files = choiceFiles(folder, o.cacheDir);
  const read = async (path: string) => {
    try {
      return await readChoices(path);
    } catch (e) {
      if (!(e instanceof InvalidCacheFile)) throw e;
      o.log?.(`warning: ${e.message}; ignoring its backend choices`);
      return [];
    }
  };
  if (!o.reprofile) {
    for (const path of files.read) {
      const hit = (await read(path)).find((e) => sameKey(e.key, key));
      if (hit) return { backend: hit.backend, basis: "cached", threads, t1: hit.t1_ms, adapter: description };
    }
  }
  o.log?.(`backend auto: measuring t(1) on wasm (${plural(threads, "thread")}) and gpu (${description}) ...`);
  const opts: LoadOptions = { threads, maxBatch: o.maxBatch, weightsDtype: o.weightsDtype };
  const t1: T1 = { wasm: null, gpu: null };
  const loaded: Partial<Record<AutoBackend, LoadedModel>> = {};
  const errors: string[] = [];
  for (const b of ["wasm", "gpu"] as const) {
    try {
      const m = loaded[b] = await loadModel(folder, b, opts);
      t1[b] = await decodeStepMs(m.model);
    } catch (e) {
      errors.push(`${b}: ${(e as Error).message}`);
      o.log?.(`backend auto: ${b} cannot run ${folder.path}: ${(e as Error).message}`);
    }
  }
  if (t1.wasm === null && t1.gpu === null) {
    for (const m of Object.values(loaded)) m.close();
    throw new Error(`backend auto: ${folder.path} runs on neither backend (${errors.join("; ")})`);
  }
  const backend: AutoBackend = t1.gpu === null || (t1.wasm !== null && t1.wasm <= t1.gpu) ? "wasm" : "gpu";
  for (const [b, m] of Object.entries(loaded)) if (b !== backend) m.close();
  const kept = (await read(files.write)).filter((e) => !sameKey(e.key, key));
  const round = (v: number | null) => v === null ? null : Math.round(v * 1000) / 1000;
  kept.push({
    key,
    backend,
    t1_ms: { wasm: round(t1.wasm), gpu: round(t1.gpu) },
    measured_at: new Date().toISOString(),
  });
  try {
    await writeProfileSection(files.write, "backends", kept);
  } catch (e) {
    o.log?.(`backend choice not cached: cannot write ${files.write}: ${(e as Error).message}`);
  }
  return { backend, basis: "measured", threads, t1, adapter: description, loaded: loaded[backend] };
}

/**
 * `choice` as a backend, for a caller that loads its models itself (the benchmarks): a named backend
 * as it is; "auto" decided for the target at `model` (see {@link chooseBackend}), nothing kept loaded.
 */
export async function resolveBackend(
  choice: BackendChoice,
  model: string,
  o: ChooseOptions,
): Promise<{ backend: Backend; decision?: BackendDecision }> {
  if (choice !== "auto") return { backend: choice };
  // Config and tensor table only: the choice needs the model's identity and weights, not its tokenizer.
  const folder = await openCheckpoint(model);
  try {
    const decision = await chooseBackend(folder, o);
    decision.loaded?.close();
    return { backend: decision.backend, decision: { ...decision, loaded: undefined } };
  } finally {
    folder.checkpoint.close();
  }
}

/** One line for the startup log, e.g. "wasm: t(1) wasm 1.1 ms on 2 threads vs gpu 18.0 ms on llvmpipe; cached". */
export function describeDecision(d: BackendDecision): string {
  if (!d.t1) return `${d.backend} (${d.basis})`;
  const ms = (v: number | null) => v === null ? "cannot run" : `${v.toFixed(1)} ms`;
  const wasm = `wasm ${ms(d.t1.wasm)} on ${plural(d.threads, "thread")}`;
  const gpu = `gpu ${ms(d.t1.gpu)} on ${d.adapter}`;
  const [first, second] = d.backend === "wasm" ? [wasm, gpu] : [gpu, wasm];
  return `${d.backend}: t(1) ${first} vs ${second}; ${d.basis}`;
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
