/**
 * Compute pipelines built from shaders/<name>.wgsl with a few compile-time defines, cached by
 * name + defines. Defines become WGSL `const` declarations prepended to the source; lines between
 * `//#if NAME` (or `//#if NAME >= 3`: ==, !=, <, <=, >, >= against an integer), `//#else` and `//#endif`
 * are kept or dropped by NAME's truthiness or the comparison (for the few places
 * where the binding *types* differ, e.g. vec4 vs scalar weight loads); lines between
 * `//#unroll V COUNT` and `//#end` are repeated COUNT times (a number or a define) with `$V` replaced
 * by 0, 1, ... — register-resident accumulators instead of private arrays, which some compilers
 * (Mesa llvmpipe) keep in memory; `//#include NAME K=v` inlines shaders/NAME.wgsl (shared helpers) with
 * `$K` replaced by `v`. `enable ...;` directives kept by the `//#if` blocks are hoisted above the consts
 * (WGSL wants them before any declaration).
 *
 * @module
 */

import type { Gpu } from "./device.ts";

/** Define values: numbers become `const NAME: u32`, unless written as {f32: x} or {i32: x}; booleans u32 0/1. */
export type Defines = Record<string, number | boolean | { f32: number } | { i32: number }>;

const sourceCache = new Map<string, string>();

/** Text of shaders/<name>.wgsl (read once). */
export function shaderSource(name: string): string {
  let s = sourceCache.get(name);
  if (s === undefined) {
    s = Deno.readTextFileSync(new URL(`../../shaders/${name}.wgsl`, import.meta.url));
    sourceCache.set(name, s);
  }
  return s;
}

/** Expand `//#unroll V COUNT` ... `//#end` blocks (nestable). */
function unroll(name: string, lines: string[], defines: Defines): string[] {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const t = lines[i].trim();
    if (!t.startsWith("//#unroll ")) {
      if (t === "//#end") throw new Error(`shader ${name}: //#end without //#unroll`);
      out.push(lines[i]);
      continue;
    }
    const [, v, countSrc] = t.split(/\s+/);
    const count = /^\d+$/.test(countSrc) ? Number(countSrc) : defines[countSrc];
    if (typeof count !== "number") {
      throw new Error(`shader ${name}: //#unroll count ${countSrc} is not a number define`);
    }
    let depth = 1, j = i + 1;
    for (; j < lines.length; j++) {
      const u = lines[j].trim();
      if (u.startsWith("//#unroll ")) depth++;
      else if (u === "//#end" && --depth === 0) break;
    }
    if (j >= lines.length) throw new Error(`shader ${name}: unterminated //#unroll ${v}`);
    const body = unroll(name, lines.slice(i + 1, j), defines);
    for (let k = 0; k < count; k++) for (const b of body) out.push(b.replaceAll(`$${v}`, String(k)));
    i = j;
  }
  return out;
}

/** Apply defines to WGSL source: `//#if` blocks, `//#unroll` blocks, then const declarations. */
export function preprocess(name: string, src: string, defines: Defines): string {
  const out: string[] = [];
  const stack: { keep: boolean; parentKeep: boolean }[] = [];
  let keep = true;
  const value = (k: string) => {
    if (!(k in defines)) throw new Error(`shader ${name}: //#if ${k} but ${k} is not defined`);
    const v = defines[k];
    return typeof v === "object" ? ("f32" in v ? v.f32 : v.i32) : Number(v);
  };
  // `//#if NAME` (truthy) or `//#if NAME OP N` (OP one of == != < <= > >=; N an integer): code for other
  // values never reaches the compiler (a const-false `if` still costs compile time on some drivers).
  const truthy = (cond: string) => {
    const m = /^([A-Za-z_]\w*)(?:\s*(==|!=|<=|>=|<|>)\s*(-?\d+))?$/.exec(cond);
    if (!m) throw new Error(`shader ${name}: bad //#if ${cond} (want NAME or NAME OP integer)`);
    const v = value(m[1]);
    if (m[2] === undefined) return v !== 0;
    const n = Number(m[3]);
    switch (m[2]) {
      case "==":
        return v === n;
      case "!=":
        return v !== n;
      case "<":
        return v < n;
      case "<=":
        return v <= n;
      case ">":
        return v > n;
      default:
        return v >= n;
    }
  };
  const included = src.split("\n").flatMap((line) => {
    const t = line.trim();
    if (!t.startsWith("//#include ")) return [line];
    // `//#include NAME K=v ...`: $K in the included text becomes v (one helper per binding name).
    const [inc, ...args] = t.slice(11).trim().split(/\s+/);
    if (!/^[a-z0-9_]+$/.test(inc)) throw new Error(`shader ${name}: bad //#include ${inc}`);
    let text = shaderSource(inc);
    for (const arg of args) {
      const m = /^([A-Z][A-Z0-9_]*)=([A-Za-z_][A-Za-z0-9_]*)$/.exec(arg);
      if (!m) throw new Error(`shader ${name}: bad //#include argument ${arg} (want KEY=identifier)`);
      text = text.replaceAll(`$${m[1]}`, m[2]);
    }
    return text.split("\n");
  });
  for (const line of included) {
    const t = line.trim();
    if (t.startsWith("//#if ")) {
      stack.push({ keep: truthy(t.slice(6).trim()), parentKeep: keep });
      keep = keep && stack[stack.length - 1].keep;
    } else if (t === "//#else") {
      const top = stack[stack.length - 1];
      if (!top) throw new Error(`shader ${name}: //#else without //#if`);
      keep = top.parentKeep && !top.keep;
    } else if (t === "//#endif") {
      const top = stack.pop();
      if (!top) throw new Error(`shader ${name}: //#endif without //#if`);
      keep = top.parentKeep;
    } else if (keep) {
      out.push(line);
    }
  }
  if (stack.length) throw new Error(`shader ${name}: unterminated //#if`);
  // Global directives (`enable f16;`) must precede every declaration, the consts included: hoisted.
  const isDirective = (l: string) => /^\s*enable\s+[\w\s,]+;\s*$/.test(l);
  const unrolled = unroll(name, out, defines);
  const directives = unrolled.filter(isDirective).map((l) => l.trim());
  const body = unrolled.filter((l) => !isDirective(l));
  const consts = Object.entries(defines).map(([k, v]) => {
    if (typeof v === "boolean") return `const ${k}: u32 = ${v ? 1 : 0}u;`;
    if (typeof v === "number") {
      if (!Number.isInteger(v) || v < 0) throw new Error(`shader ${name}: define ${k}=${v} must be a u32`);
      return `const ${k}: u32 = ${v}u;`;
    }
    if ("f32" in v && Number.isFinite(v.f32)) {
      return `const ${k}: f32 = ${Number.isInteger(v.f32) ? v.f32.toFixed(1) : v.f32};`;
    }
    if ("i32" in v && Number.isInteger(v.i32)) return `const ${k}: i32 = ${v.i32}i;`;
    throw new Error(`shader ${name}: define ${k}=${JSON.stringify(v)} is not a u32, {f32} or {i32}`);
  });
  const head = directives.length ? `${directives.join("\n")}\n` : "";
  return `${head}// ${name} ${JSON.stringify(defines)}\n${consts.join("\n")}\n${body.join("\n")}`;
}

/**
 * How the Recorder binds a pipeline built here: an explicit bind group layout (binding 0 the parameter
 * block, 1.. storage), shared by every pipeline with the same binding kinds, so a bind group over the
 * same buffers and parameter slot serves all of them (matmul's TN/RPT variants) and is cached across
 * submissions. The parameter slot is a static offset, not a dynamic one: measured on llvmpipe (tiny
 * target, 32 decode steps per submission, 25 alternating rounds) dynamic offsets cost ~15% GPU time
 * (p25 146 vs 127 ms) for the same host saving.
 */
export interface PipelineBinding {
  /** Group 0's layout (binding 0: the uniform parameter slot; 1..: storage, in order). */
  layout: GPUBindGroupLayout;
  /** Small integer naming `layout` (part of the Recorder's bind group cache key). */
  layoutId: number;
  /** Number of storage bindings after the parameter block. */
  storage: number;
}

/** Per device: the compiled variants by key (promises, so concurrent first uses compile once). */
interface DeviceCache {
  pipelines: Map<string, Promise<GPUComputePipeline>>;
  /** Bind group layouts by binding-kind signature (e.g. "r,r,w"). */
  layouts: Map<string, { layout: GPUBindGroupLayout; id: number }>;
  /** Shader variants compiled on this device (each at most once). */
  compiles: number;
}

/**
 * One cache per GPUDevice, whoever constructs a {@link PipelineCache}: a draft + target pair and a reloaded
 * model compile each variant once (a SmolLM2 forward's first use compiles ~10 variants, seconds on llvmpipe).
 */
const deviceCaches = new WeakMap<GPUDevice, DeviceCache>();
/** The binding facts of every pipeline built with an explicit layout (see {@link pipelineBinding}). */
const bindings = new WeakMap<GPUComputePipeline, PipelineBinding>();
let nextLayoutId = 0;

/** How to bind `pipeline` with a cached bind group, or undefined (built elsewhere, or an "auto" layout). */
export function pipelineBinding(pipeline: GPUComputePipeline): PipelineBinding | undefined {
  return bindings.get(pipeline);
}

/**
 * The storage kinds ("r" read, "w" read_write) of bindings 1.. of `code`, when group 0 is exactly a
 * uniform binding 0 followed by storage bindings 1..N (every shader here); else undefined and the
 * pipeline keeps layout "auto" (a new shader with another shape still works, without cached bind groups).
 */
export function storageKinds(code: string): string[] | undefined {
  const all = code.match(/@binding\(/g)?.length ?? 0;
  const re = /@group\(0\)\s*@binding\((\d+)\)\s*var<\s*(uniform|storage)\s*(?:,\s*(read|read_write)\s*)?>/g;
  // Declaration order does not matter (a variant may declare binding 4 before 2); gaps do.
  const kinds: string[] = [];
  for (const m of code.matchAll(re)) {
    const i = Number(m[1]);
    if (kinds[i] !== undefined) return undefined;
    if ((i === 0) !== (m[2] === "uniform")) return undefined;
    kinds[i] = i === 0 ? "u" : m[3] === "read_write" ? "w" : "r";
  }
  // A gap leaves a hole: the array is longer than the bindings found.
  if (kinds.length === 0 || kinds.length !== all) return undefined;
  return kinds.slice(1);
}

/** Pipelines by shader name + defines, shared by every PipelineCache of one device. */
export class PipelineCache {
  private readonly dc: DeviceCache;

  constructor(private readonly gpu: Gpu) {
    let dc = deviceCaches.get(gpu.device);
    if (!dc) {
      dc = { pipelines: new Map(), layouts: new Map(), compiles: 0 };
      deviceCaches.set(gpu.device, dc);
    }
    this.dc = dc;
  }

  /** Distinct shader variants compiled on this cache's device so far. */
  get compiles(): number {
    return this.dc.compiles;
  }

  /** The pipeline for `name` with `defines` (compiled on first use; WGSL errors throw with the name). */
  get(name: string, defines: Defines = {}): Promise<GPUComputePipeline> {
    const key = `${name}|${JSON.stringify(Object.entries(defines).sort())}`;
    const hit = this.dc.pipelines.get(key);
    if (hit) return hit;
    const p = this.compile(name, defines);
    this.dc.pipelines.set(key, p);
    // A failed compile is not cached (the next get tries again and throws again, with its message).
    p.catch(() => {
      if (this.dc.pipelines.get(key) === p) this.dc.pipelines.delete(key);
    });
    return p;
  }

  private async compile(name: string, defines: Defines): Promise<GPUComputePipeline> {
    const code = preprocess(name, shaderSource(name), defines);
    const kinds = storageKinds(code);
    const { device } = this.gpu;
    const sig = kinds?.join(",");
    const known = sig !== undefined && this.dc.layouts.has(sig);
    let pipeline: GPUComputePipeline;
    try {
      pipeline = await this.gpu.scoped(`shader ${name} ${JSON.stringify(defines)}`, () => {
        const module = device.createShaderModule({ label: name, code });
        const bl = kinds && this.layout(kinds);
        const layout = bl
          ? device.createPipelineLayout({ label: name, bindGroupLayouts: [bl.layout] })
          : "auto";
        const pl = device.createComputePipeline({
          label: name,
          layout,
          compute: { module, entryPoint: "main" },
        });
        if (bl) bindings.set(pl, { layout: bl.layout, layoutId: bl.id, storage: kinds.length });
        return pl;
      });
    } catch (e) {
      if (sig !== undefined && !known) this.dc.layouts.delete(sig); // it may be the invalid object
      throw e;
    }
    this.dc.compiles++;
    return pipeline;
  }

  /** The device's bind group layout for a uniform + these storage kinds. */
  private layout(kinds: string[]): { layout: GPUBindGroupLayout; id: number } {
    const sig = kinds.join(",");
    let l = this.dc.layouts.get(sig);
    if (!l) {
      const entries: GPUBindGroupLayoutEntry[] = [
        {
          binding: 0,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: "uniform" },
        },
        ...kinds.map((k, i): GPUBindGroupLayoutEntry => ({
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: k === "w" ? "storage" : "read-only-storage" },
        })),
      ];
      l = {
        layout: this.gpu.device.createBindGroupLayout({ label: `params + ${sig}`, entries }),
        id: nextLayoutId++,
      };
      this.dc.layouts.set(sig, l);
    }
    return l;
  }
}
