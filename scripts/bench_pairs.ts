/**
 * What the device benchmarks (scripts/bench_device_verify.ts, scripts/bench_webgpu.ts) share: their
 * `--key value` flags, the two pairs they measure, the acceptance vector their Sequoia tree is planned from,
 * the two temperatures, one Sequoia generation and a median.
 *
 * @module
 */

import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR } from "../src/model/folder.ts";
import type { CausalLM } from "../src/model/causal_lm.ts";
import type { SamplingParams } from "../src/model/sampling.ts";
import {
  generateSpeculative,
  type SpeculativeEvent,
  type SpeculativeOptions,
} from "../src/speculative/engine.ts";
import { StaticTreeDrafter } from "../src/speculative/drafters/static_tree.ts";
import type { TreeShape } from "../src/speculative/tree.ts";

/** The script's `--key value` flags. */
export const args = new Map<string, string>();
for (let i = 0; i < Deno.args.length; i += 2) args.set(Deno.args[i].replace(/^--/, ""), Deno.args[i + 1]);

/** The tiny bundled pair and SmolLM2-135M (Q4_1) with its trained draft; `--only PREFIX` keeps some. */
export const PAIRS = [
  {
    name: "tiny",
    target: DEFAULT_TARGET_DIR,
    draft: DEFAULT_DRAFT_DIR,
    prompt: "And God said, Let there be",
  },
  {
    name: "SmolLM2-135M Q4_1",
    target: "weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    draft: "weights/smollm2-draft",
    prompt: "The capital of France is Paris. The capital of Germany is",
  },
].filter((p) => !args.has("only") || p.name.startsWith(args.get("only")!));

/** A positional acceptance vector typical of these pairs (the shape only changes speed, never the output). */
export const ACC = [0.5, 0.12, 0.05, 0.03, 0.02, 0.015, 0.01, 0.008];

/** The middle element (the upper one of an even count). */
export const median = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)];

/** The temperatures the benchmarks measure: greedy and T = 0.8 (no top-k / top-p), labelled. */
export const TEMPERATURES: readonly (readonly [string, SamplingParams])[] = [
  ["T=0", { temperature: 0, topK: 0, topP: 1 }],
  ["T=0.8", { temperature: 0.8, topK: 0, topP: 1 }],
];

/** One Sequoia generation over `shape` (SWOR drafting, its exact verifier) with the engine options `o`. */
export function sequoia(
  target: CausalLM,
  draft: CausalLM,
  prompt: number[],
  shape: TreeShape,
  o: Omit<SpeculativeOptions, "drafter" | "verifier">,
): AsyncGenerator<SpeculativeEvent> {
  return generateSpeculative(target, draft, prompt, {
    ...o,
    drafter: new StaticTreeDrafter("sequoia", shape, "swor"),
    verifier: "swor",
  });
}
