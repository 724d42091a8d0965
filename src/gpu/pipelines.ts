/**
 * Compute pipelines built from shaders/<name>.wgsl with a few compile-time defines, cached by
 * name + defines. Defines become WGSL `const` declarations prepended to the source; lines between
 * `//#if NAME`, `//#else` and `//#endif` are kept or dropped by NAME's truthiness (for the few places
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
  const truthy = (k: string) => {
    if (!(k in defines)) throw new Error(`shader ${name}: //#if ${k} but ${k} is not defined`);
    const v = defines[k];
    return typeof v === "object" ? ("f32" in v ? v.f32 : v.i32) !== 0 : Boolean(v);
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

/** Pipelines by shader name + defines. */
export class PipelineCache {
  private readonly cache = new Map<string, GPUComputePipeline>();

  constructor(private readonly gpu: Gpu) {}

  /** The pipeline for `name` with `defines` (compiled on first use; WGSL errors throw with the name). */
  async get(name: string, defines: Defines = {}): Promise<GPUComputePipeline> {
    const key = `${name}|${JSON.stringify(Object.entries(defines).sort())}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const code = preprocess(name, shaderSource(name), defines);
    const pipeline = await this.gpu.scoped(`shader ${name} ${JSON.stringify(defines)}`, () => {
      const module = this.gpu.device.createShaderModule({ label: name, code });
      return this.gpu.device.createComputePipeline({
        label: name,
        layout: "auto",
        compute: { module, entryPoint: "main" },
      });
    });
    this.cache.set(key, pipeline);
    return pipeline;
  }
}
