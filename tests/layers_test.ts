/**
 * The folder layering of src/: every import (static, `import type`, `export ... from`, side-effect, and
 * dynamic `import("...")` incl. in type positions) goes to the same folder or a lower layer:
 *
 *   util < model < cpu, gpu, wasm < decoding < speculative, batching < runtime < server, bench < cli < main.ts
 *
 * Folders of one layer (cpu, gpu and wasm; speculative and batching; server and bench) must not import
 * each other, and nothing under
 * src/ imports from scripts/ or tests/.
 */
import assert from "node:assert/strict";
import { join, normalize, relative, sep } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";

/** Layer rank of each top folder of src/ (and of src/main.ts). */
export const LAYERS: Record<string, number> = {
  util: 0,
  model: 1,
  cpu: 2,
  gpu: 2,
  wasm: 2,
  decoding: 3,
  speculative: 4,
  batching: 4,
  runtime: 5,
  server: 6,
  bench: 6,
  cli: 7,
  "main.ts": 8,
};

const ROOT = fromFileUrl(new URL("../", import.meta.url));
const SRC = join(ROOT, "src");

/**
 * Specifiers imported by a module's source: `import ... from`, `import type ... from`, `export ... from`,
 * side-effect `import "x"`, and `import("x")` (dynamic, or in a type position). Statements are matched
 * from the start of a line, and dynamic imports outside comment lines, so prose in comments is not read.
 */
export function importSpecifiers(source: string): string[] {
  const out: string[] = [];
  const clause = String.raw`(?:type\s+)?(?:[\w$]+\s*,?\s*)?(?:\*\s*(?:as\s+[\w$]+\s*)?|\{[^}]*\}\s*)?`;
  const statics = new RegExp(String.raw`^[ \t]*(?:import|export)\s+${clause}from\s*["']([^"']+)["']`, "gm");
  for (const m of source.matchAll(statics)) out.push(m[1]);
  for (const m of source.matchAll(/^[ \t]*import\s*["']([^"']+)["']/gm)) out.push(m[1]);
  for (const line of source.split("\n")) {
    if (/^\s*(\/\/|\*|\/\*)/.test(line)) continue;
    for (const m of line.matchAll(/\bimport\(\s*["']([^"']+)["']\s*[,)]/g)) out.push(m[1]);
  }
  return out;
}

/** The layer folder of a path relative to src/ ("main.ts" for src/main.ts), or undefined outside src/. */
function layerOf(rel: string): string | undefined {
  if (rel.startsWith("..")) return undefined;
  return rel.split(sep)[0];
}

/** Every .ts file under `dir` (absolute paths). */
async function tsFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) files.push(...await tsFiles(p));
    else if (e.isFile && /\.(ts|tsx|mts)$/.test(e.name)) files.push(p);
  }
  return files.sort();
}

/** Every violation of the layering under src/, one line each. */
export async function layerViolations(): Promise<string[]> {
  const problems: string[] = [];
  for (const file of await tsFiles(SRC)) {
    const fromRel = relative(SRC, file);
    const from = layerOf(fromRel)!;
    if (!(from in LAYERS)) {
      problems.push(
        `src/${fromRel}: its folder "${from}" is in no layer (known: ${Object.keys(LAYERS).join(", ")})`,
      );
      continue;
    }
    for (const spec of importSpecifiers(await Deno.readTextFile(file))) {
      if (!spec.startsWith(".") && !spec.startsWith("/") && !spec.startsWith("file:")) continue; // npm:, jsr:, node:, bare
      const target = spec.startsWith("file:")
        ? fromFileUrl(spec)
        : spec.startsWith("/")
        ? normalize(spec)
        : normalize(join(file, "..", spec));
      const toRel = relative(SRC, target);
      const to = layerOf(toRel);
      if (to === undefined) {
        const outside = relative(ROOT, target);
        const what = /^(scripts|tests)([/\\]|$)/.test(outside)
          ? `${outside.split(/[/\\]/)[0]}/`
          : "outside src/";
        problems.push(
          `src/${fromRel} (${from}) imports ${outside} from ${what}: src/ must not import from it`,
        );
        continue;
      }
      if (to === from) continue;
      if (!(to in LAYERS)) {
        problems.push(`src/${fromRel} (${from}) imports src/${toRel}, whose folder "${to}" is in no layer`);
      } else if (LAYERS[to] === LAYERS[from]) {
        problems.push(
          `src/${fromRel} (layer ${from}) imports src/${toRel} (layer ${to}): ${from} and ${to} are peers and must not import each other`,
        );
      } else if (LAYERS[to] > LAYERS[from]) {
        problems.push(
          `src/${fromRel} (layer ${from}) imports src/${toRel} (layer ${to}): an upward import (${from} is below ${to})`,
        );
      }
    }
  }
  return problems;
}

Deno.test("layers: the import parser sees every form of import and skips comments", () => {
  const src = [
    `import assert from "node:assert/strict";`,
    `import { a, type B } from "../model/a.ts";`,
    `import type { C } from "../model/c.ts";`,
    `import {`,
    `  d,`,
    `  e,`,
    `} from "./d.ts";`,
    `import * as f from "../util/f.ts";`,
    `import g, { h } from "./g.ts";`,
    `import "./side_effect.ts";`,
    `export { i } from "../cpu/i.ts";`,
    `export type { J } from "../gpu/j.ts";`,
    `export * from "./k.ts";`,
    `export * as l from "./l.ts";`,
    `type M = typeof import("../runtime/m.ts");`,
    `let n: import("../server/n.ts").N;`,
    `const o = await import("../cli/o.ts");`,
    `const p = await import("./p.json", { with: { type: "json" } });`,
    `/**`,
    ` * Not an import: import { x } from "../nope/comment.ts"; nor import("../nope/dyn.ts").`,
    ` */`,
    `// import { y } from "../nope/line.ts";`,
    `const s = "import { z } from 'x'";`,
  ].join("\n");
  assert.deepEqual(importSpecifiers(src).sort(), [
    "../cli/o.ts",
    "../cpu/i.ts",
    "../gpu/j.ts",
    "../model/a.ts",
    "../model/c.ts",
    "../runtime/m.ts",
    "../server/n.ts",
    "../util/f.ts",
    "./d.ts",
    "./g.ts",
    "./k.ts",
    "./l.ts",
    "./p.json",
    "./side_effect.ts",
    "node:assert/strict",
  ]);
});

Deno.test("layers: util < model < cpu, gpu, wasm < decoding < speculative, batching < runtime < server, bench < cli < main.ts", async () => {
  const problems = await layerViolations();
  assert.deepEqual(
    problems,
    [],
    `${problems.length} import(s) break the layering:\n  ${problems.join("\n  ")}`,
  );
});
