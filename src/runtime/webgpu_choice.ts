/**
 * `--webgpu auto`: run on the WebGPU implementation (gpu/webgpu_impl.ts) where the target's steps are
 * faster here, Deno's built-in one or Dawn's, decided by measuring and cached.
 *
 * The measure is a step's cost as the engine pays it, submission, kernels and readback together: t(1),
 * a single-token forward reading back its picked id (an AR step), plus t(16), a 16-token forward reading
 * back its 16 ids (a speculative step's verification), each the median of a few after warm-ups. Their
 * sum weighs the two ways the implementations differ: Deno's sync costs >= ~11 ms per readback, Dawn's
 * ~0.1-0.3 ms, but Dawn's kernels ran ~3x slower on lavapipe; neither alone predicts every adapter.
 *
 * An implementation that cannot run (Dawn's addon or driver missing, no adapter) loses and says why; both
 * failing throws. Both devices stay acquired (sharedGpu): the winner's is the one the runtime loads on. The decision is cached in the target's profile.json (or `$SPECDEC_CACHE_DIR`'s), its
 * `webgpu` section, keyed by adapter, CPU, Deno version and target model.
 *
 * @module
 */

import { type Checkpoint, openCheckpoint } from "../model/folder.ts";
import type { CausalLM } from "../model/causal_lm.ts";
import { isDeviceSampler } from "../model/capabilities.ts";
import type { Gpu } from "../gpu/device.ts";
import { useWebGpu, type WebGpuChoice, type WebGpuImpl } from "../gpu/webgpu_impl.ts";
import { median } from "../util/stats.ts";
import { type LoadedModel, loadModel, sharedGpu } from "./backend.ts";
import { modelId } from "./acceptance_store.ts";
import { cacheFiles, InvalidCacheFile, readCacheJson } from "./cache_dir.ts";
import { adapterId, cpuName, writeProfileSection } from "./hardware_profile.ts";
import { type WeightsDtype, weightsSuffix } from "../model/weight_types.ts";

/** What a cached decision is valid for. */
export interface WebGpuChoiceKey {
  /** The adapter as Deno's WebGPU (else Dawn's) reports it. */
  adapter: string;
  cpu: string;
  deno: string;
  /** The target model's identity (see acceptance_store.ts), with its load type. */
  target: string;
}

/** The step costs of one implementation in ms (null: it cannot run here). */
export interface WebGpuCost {
  t1_ms: number;
  t16_ms: number;
}

/** Both implementations' costs. */
export type WebGpuCosts = Record<WebGpuImpl, WebGpuCost | null>;

/** One cached decision. */
interface WebGpuChoiceEntry {
  key: WebGpuChoiceKey;
  webgpu: WebGpuImpl;
  costs: WebGpuCosts;
  measured_at: string;
}

/** The implementation `--webgpu` resolved to, and why. */
export interface WebGpuDecision {
  webgpu: WebGpuImpl;
  basis: "named" | "measured" | "cached" | "only one runs";
  /** The figures compared (measured now or cached). */
  costs?: WebGpuCosts;
  /** Why an implementation could not run, by name. */
  errors?: Partial<Record<WebGpuImpl, string>>;
}

/** Options of {@link chooseWebGpu}. */
export interface WebGpuChooseOptions {
  weightsDtype?: WeightsDtype;
  /** Measure again instead of using the cached decision. */
  reprofile?: boolean;
  /** Unmeasured and measured steps of each figure (default 3 and 5). */
  measure?: { warmup?: number; reps?: number };
  /** Cache directory (default `$SPECDEC_CACHE_DIR`; null: beside the target). */
  cacheDir?: string | null;
  log?: (line: string) => void;
}

const IMPLS: readonly WebGpuImpl[] = ["deno", "dawn"];

/**
 * The median wall time (ms) of an n-token forward after a 16-token prefix that reads back its n picked
 * ids (the device's argmax; the host's readback of the logits on a model without one), after `warmup`
 * unmeasured ones. The cache is emptied after.
 */
export async function stepMs(model: CausalLM, n: number, o: { warmup?: number; reps?: number } = {}) {
  const warmup = o.warmup ?? 3, reps = o.reps ?? 5, past = 16;
  if (model.kv.capacity < past + n) throw new RangeError(`a ${n}-token step needs ${past + n} KV slots`);
  const samples: number[] = [];
  for (let i = 0; i < warmup + reps; i++) {
    model.kv.truncate(0);
    await model.forward({
      tokens: new Int32Array(past).fill(5),
      positions: Int32Array.from({ length: past }, (_, k) => k),
      logitRows: [past - 1],
    });
    const input = {
      tokens: new Int32Array(n).fill(7),
      positions: Int32Array.from({ length: n }, (_, k) => past + k),
    };
    const t0 = performance.now();
    if (isDeviceSampler(model)) await model.forwardIds(input, { kind: "argmax" });
    else await model.forward({ ...input, logitRows: Array.from({ length: n }, (_, k) => k) });
    if (i >= warmup) samples.push(performance.now() - t0);
  }
  model.kv.truncate(0);
  return median(samples);
}

const sameKey = (a: WebGpuChoiceKey, b: WebGpuChoiceKey) =>
  a.adapter === b.adapter && a.cpu === b.cpu && a.deno === b.deno && a.target === b.target;

/** One file's decisions ([] when it has none); throws {@link InvalidCacheFile} naming it. */
async function readDecisions(path: string): Promise<WebGpuChoiceEntry[]> {
  const j = await readCacheJson(path) as { webgpu?: unknown } | undefined;
  if (j === undefined || (j && typeof j === "object" && j.webgpu === undefined)) return [];
  const list = j && typeof j === "object" ? j.webgpu : undefined;
  const valid = (e: Partial<WebGpuChoiceEntry> | null) =>
    !!e && typeof e === "object" && !!e.key && (e.webgpu === "deno" || e.webgpu === "dawn") &&
    !!e.costs && typeof e.costs === "object";
  if (!Array.isArray(list) || !list.every(valid)) {
    throw new InvalidCacheFile(path, "not a valid profile file (webgpu: entries of key, webgpu, costs)");
  }
  return list;
}

/** The score the decision minimises: an AR step plus a 16-token verification step. */
export const webGpuScore = (c: WebGpuCost) => c.t1_ms + c.t16_ms;

/** The faster of the implementations that ran (deno on a tie); undefined when none did. */
export function fasterWebGpu(costs: WebGpuCosts): WebGpuImpl | undefined {
  const ran = IMPLS.filter((i) => costs[i] !== null);
  if (!ran.length) return undefined;
  return ran.reduce((a, b) => webGpuScore(costs[b]!) < webGpuScore(costs[a]!) ? b : a);
}

/**
 * Measure (or read the cached decision for) both implementations on `folder`'s target; see the module
 * docs. Loads the target once per implementation and releases both.
 */
export async function chooseWebGpu(folder: Checkpoint, o: WebGpuChooseOptions = {}): Promise<WebGpuDecision> {
  const gpus: Partial<Record<WebGpuImpl, Gpu>> = {};
  const errors: Partial<Record<WebGpuImpl, string>> = {};
  const acquire = async (impl: WebGpuImpl) => {
    try {
      gpus[impl] = await sharedGpu(impl); // the device the measured model loads on
    } catch (e) {
      errors[impl] = (e as Error).message;
    }
  };
  const keyOf = async (gpu: Gpu): Promise<WebGpuChoiceKey> => ({
    adapter: adapterId({ ...gpu.adapter, webgpu: undefined }),
    cpu: `${cpuName()}, ${navigator.hardwareConcurrency || 1} cores`,
    deno: Deno.version.deno,
    target: await modelId(folder) + weightsSuffix(o.weightsDtype),
  });
  const files = cacheFiles(folder.dir, "profile.json", o.cacheDir);
  const read = async (path: string) => {
    try {
      return await readDecisions(path);
    } catch (e) {
      if (!(e instanceof InvalidCacheFile)) throw e;
      o.log?.(`warning: ${e.message}; ignoring its WebGPU choices`);
      return [];
    }
  };
  const cached = async (key: WebGpuChoiceKey): Promise<WebGpuDecision | undefined> => {
    if (o.reprofile) return undefined;
    for (const path of files.read) {
      const hit = (await read(path)).find((e) => sameKey(e.key, key));
      if (hit) return { webgpu: hit.webgpu, basis: "cached", costs: hit.costs };
    }
    return undefined;
  };
  // Deno's first: a cached "deno" never loads Dawn's addon or creates its instance.
  await acquire("deno");
  if (gpus.deno) {
    const hit = await cached(await keyOf(gpus.deno));
    if (hit?.webgpu === "deno") return hit;
  }
  await acquire("dawn");
  const ran = IMPLS.filter((i) => gpus[i]);
  if (ran.length === 0) {
    throw new Error(`--webgpu auto: no WebGPU implementation has an adapter (${describeErrors(errors)})`);
  }
  if (ran.length === 1) {
    o.log?.(`webgpu auto: only ${ran[0]} runs here (${describeErrors(errors)})`);
    return { webgpu: ran[0], basis: "only one runs", errors };
  }
  const key = await keyOf((gpus.deno ?? gpus.dawn)!);
  const hit = await cached(key);
  if (hit) return hit;
  o.log?.(`webgpu auto: measuring t(1) and t(16) of ${folder.path} on Deno's WebGPU and on Dawn ...`);
  const costs: WebGpuCosts = { deno: null, dawn: null };
  for (const impl of IMPLS) {
    let m: LoadedModel | undefined;
    try {
      m = await loadModel(folder, "gpu", { weightsDtype: o.weightsDtype, webgpu: impl });
      costs[impl] = {
        t1_ms: await stepMs(m.model, 1, o.measure),
        t16_ms: await stepMs(m.model, 16, o.measure),
      };
    } catch (e) {
      errors[impl] = (e as Error).message;
      o.log?.(`webgpu auto: ${impl} cannot run ${folder.path}: ${(e as Error).message}`);
    } finally {
      m?.close();
    }
  }
  const webgpu = fasterWebGpu(costs);
  if (!webgpu) throw new Error(`--webgpu auto: ${folder.path} runs on neither (${describeErrors(errors)})`);
  const kept = (await read(files.write)).filter((e) => !sameKey(e.key, key));
  const round = (c: WebGpuCost | null) =>
    c && { t1_ms: Math.round(c.t1_ms * 1000) / 1000, t16_ms: Math.round(c.t16_ms * 1000) / 1000 };
  kept.push({
    key,
    webgpu,
    costs: { deno: round(costs.deno), dawn: round(costs.dawn) },
    measured_at: new Date().toISOString(),
  });
  try {
    await writeProfileSection(files.write, "webgpu", kept);
  } catch (e) {
    o.log?.(`WebGPU choice not cached: cannot write ${files.write}: ${(e as Error).message}`);
  }
  return { webgpu, basis: "measured", costs, errors };
}

const describeErrors = (errors: Partial<Record<WebGpuImpl, string>>) =>
  Object.entries(errors).map(([i, m]) => `${i}: ${m}`).join("; ") || "no errors";

/**
 * Resolve `choice` for the target at `model` and make it this process's implementation
 * ({@link useWebGpu}): a named one as it is; auto measured or cached (see {@link chooseWebGpu}).
 */
export async function resolveWebGpu(
  choice: WebGpuChoice,
  model: string,
  o: WebGpuChooseOptions = {},
): Promise<WebGpuDecision> {
  if (choice !== "auto") {
    useWebGpu(choice);
    return { webgpu: choice, basis: "named" };
  }
  const folder = await openCheckpoint(model);
  try {
    const d = await chooseWebGpu(folder, o);
    useWebGpu(d.webgpu);
    return d;
  } finally {
    folder.checkpoint.close();
  }
}

/** One line for the startup log, e.g. "dawn: t(1)+t(16) dawn 4.1 ms vs deno 30.2 ms; measured". */
export function describeWebGpu(d: WebGpuDecision): string {
  if (!d.costs) return `${d.webgpu} (${d.basis})`;
  const ms = (c: WebGpuCost | null) => c === null ? "cannot run" : `${webGpuScore(c).toFixed(1)} ms`;
  const other: WebGpuImpl = d.webgpu === "deno" ? "dawn" : "deno";
  return `${d.webgpu}: t(1)+t(16) ${d.webgpu} ${ms(d.costs[d.webgpu])} vs ${other} ${
    ms(d.costs[other])
  }; ${d.basis}`;
}
