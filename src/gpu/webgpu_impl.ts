/**
 * Which implementation of WebGPU the engine runs on: Deno's built-in one (wgpu, `navigator.gpu` under
 * `--unstable-webgpu`) or Dawn's, loaded from the npm package `webgpu` (0.6.2: Dawn's Node-API addon
 * `dist/<platform>-<arch>/dawn.node`, ~21 MB, imported only when asked for).
 *
 * Why two: Deno's readback (`mapAsync`, `onSubmittedWorkDone`) polls the device and then sleeps ~10 ms, so
 * every GPU->CPU sync costs >= ~11 ms and blocks the JS thread; Dawn's resolves in ~0.1-0.3 ms (its addon
 * processes events from `setImmediate` ticks). But Dawn's kernels ran ~3x slower on lavapipe, so which one
 * wins depends on the adapter: `auto` (runtime/webgpu_choice.ts) measures both.
 *
 * The choice is process-wide ({@link useWebGpu}), defaulting to `$SPECDEC_WEBGPU` (deno|dawn), else deno:
 * the CLI sets it from `--webgpu`, the engine worker from its open request; the test suite runs its GPU
 * tests once per implementation by setting the variable.
 *
 * @module
 */

/** A WebGPU implementation. */
export type WebGpuImpl = "deno" | "dawn";
/** What `--webgpu` takes: an implementation, or `auto` (measured per adapter, cached). */
export type WebGpuChoice = WebGpuImpl | "auto";
/** The values `--webgpu` and `$SPECDEC_WEBGPU` take. */
export const WEBGPU_CHOICES: readonly WebGpuChoice[] = ["deno", "dawn", "auto"];

/** The environment variable that sets the default implementation (deno|dawn). */
export const WEBGPU_ENV = "SPECDEC_WEBGPU";
/**
 * The environment variable naming a Vulkan driver manifest (ICD JSON) for Dawn alone: Dawn needs a
 * newer lavapipe than Debian 12's, which keeps compiling Deno's shaders faster, so CI installs Mesa 25's
 * beside the system's and points Dawn at it (.ci/run, scripts/dawn_mesa.sh).
 */
export const DAWN_ICD_ENV = "SPECDEC_DAWN_ICD";

/** The npm package Dawn comes from. */
export const DAWN_PACKAGE = "npm:webgpu@0.6.2";

/** Dawn's package as the engine imports it. */
interface DawnModule {
  create(flags: string[]): GPU;
}

let current: WebGpuImpl | undefined;
const gpus = new Map<WebGpuImpl, Promise<GPU>>();

/** Throws a RangeError naming `what` unless `v` is one of {@link WEBGPU_CHOICES}. */
export function parseWebGpuChoice(v: string, what: string): WebGpuChoice {
  if (!(WEBGPU_CHOICES as readonly string[]).includes(v)) {
    throw new RangeError(`${what} must be one of ${WEBGPU_CHOICES.join(", ")}, got ${JSON.stringify(v)}`);
  }
  return v as WebGpuChoice;
}

/** `$SPECDEC_WEBGPU` (validated), or undefined when unset or not readable. */
export function webGpuFromEnv(): WebGpuChoice | undefined {
  const v = envOrUndefined(WEBGPU_ENV); // no --allow-env: the default
  return v ? parseWebGpuChoice(v, `$${WEBGPU_ENV}`) : undefined;
}

/**
 * The implementation {@link navigatorGpu} returns by default: the one {@link useWebGpu} set, else
 * `$SPECDEC_WEBGPU` (auto there means deno until something measures), else deno.
 */
export function currentWebGpu(): WebGpuImpl {
  if (current) return current;
  const env = webGpuFromEnv();
  return env === "dawn" ? "dawn" : "deno";
}

/** Make `impl` this process's (this worker's) default implementation. */
export function useWebGpu(impl: WebGpuImpl): void {
  current = impl;
}

/** How to get Dawn running, appended to its load and adapter errors. */
const DAWN_HELP = "Dawn needs the npm package webgpu@0.6.2 (Deno downloads it on first use; offline, " +
  "run `deno cache npm:webgpu@0.6.2` once) and a Vulkan driver with descriptor indexing. Debian 12's " +
  "Mesa 22.3 lavapipe is too old: run `bash scripts/dawn_mesa.sh` (Mesa 25 from bookworm-backports, " +
  `unpacked beside the system's) and export ${DAWN_ICD_ENV}=<the manifest it prints>, or use --webgpu deno`;

/**
 * The `GPU` object of `impl` (default {@link currentWebGpu}): Deno's `navigator.gpu`, or Dawn's, created
 * once per process. Throws an Error saying what to install or which flag is missing.
 */
export function navigatorGpu(impl: WebGpuImpl = currentWebGpu()): Promise<GPU> {
  let p = gpus.get(impl);
  if (!p) {
    p = impl === "deno" ? denoGpu() : dawnGpu();
    gpus.set(impl, p);
    // A failed load is not cached: the next call tries again (and says the same thing).
    p.catch(() => gpus.delete(impl));
  }
  return p;
}

function denoGpu(): Promise<GPU> {
  if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
    return Promise.reject(
      new Error("Deno's WebGPU is not available: run Deno with --unstable-webgpu (deno.json sets it)"),
    );
  }
  return Promise.resolve(navigator.gpu);
}

async function dawnGpu(): Promise<GPU> {
  let mod: DawnModule;
  try {
    // A full npm specifier (works from any working directory, not only under deno.json); a variable keeps
    // `deno compile` and the type checker from pulling the addon in where it is never used.
    const spec = DAWN_PACKAGE;
    mod = await import(spec) as DawnModule;
  } catch (e) {
    if (import.meta.url.includes("/deno-compile-")) {
      // deno compile embeds the static module graph only, and a compiled binary resolves no npm package
      // at run time; the compile task leaves Dawn out (its package holds 5 platforms' addons, ~100 MB).
      throw new Error(
        `this compiled binary has Deno's WebGPU only (Dawn's npm package is not embedded: ${
          (e as Error).message
        }); run from source for Dawn (deno task start --webgpu dawn), or use --webgpu deno`,
      );
    }
    throw new Error(`could not load Dawn's WebGPU (${(e as Error).message}). ${DAWN_HELP}`);
  }
  const icd = envOrUndefined(DAWN_ICD_ENV);
  if (!icd) return mod.create([]);
  try {
    Deno.statSync(icd);
  } catch (e) {
    throw new Error(
      `$${DAWN_ICD_ENV}: cannot read the Vulkan driver manifest ${icd}: ${(e as Error).message}`,
    );
  }
  // The Vulkan loader reads its driver list when an instance is created (Dawn's: at its first adapter
  // request), so the variables hold only across that; Deno's WebGPU keeps the system's drivers.
  const saved = VK_DRIVER_VARS.map((k) => [k, Deno.env.get(k)] as const);
  try {
    for (const k of VK_DRIVER_VARS) Deno.env.set(k, icd);
    const gpu = mod.create([]);
    await gpu.requestAdapter();
    return gpu;
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

/** The loader's variables naming the driver manifests (VK_ICD_FILENAMES: loaders before 1.3.207). */
const VK_DRIVER_VARS = ["VK_DRIVER_FILES", "VK_ICD_FILENAMES"];

function envOrUndefined(k: string): string | undefined {
  try {
    return Deno.env.get(k) || undefined;
  } catch {
    return undefined;
  }
}

/** The help text for Dawn's failures (tests and the error of a missing adapter). */
export function dawnHelp(): string {
  return DAWN_HELP;
}
