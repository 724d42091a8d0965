/**
 * Greedy exactness on the WebGPU engine: every method's output equals AR's (which equals the CPU
 * reference's), and a star wider than the GPU child-drawing kernel falls back and stays exact.
 */
import assert from "node:assert/strict";
import { decode } from "../src/speculative/decode.ts";
import { GREEDY } from "../src/model/sampling.ts";
import { ACC, cpuPair, gpuPair, prompts, run, SPEC } from "./fixtures/exact.ts";

Deno.test("exactness: greedy speculative output equals AR greedy on the WebGPU engine, every method", async () => {
  const [p] = await prompts(1);
  const gpu = await gpuPair();
  const ar = (await run(gpu, "ar", p, 96)).ids;
  assert.deepEqual(ar, (await run(await cpuPair(), "ar", p, 96)).ids, "GPU AR equals CPU AR");
  for (const m of SPEC) assert.deepEqual((await run(gpu, m, p, 96)).ids, ar, `${m} on the GPU`);
});

Deno.test("exactness: a star wider than the GPU child-drawing kernel falls back and stays exact", async () => {
  const [p] = await prompts(1);
  const gpu = await gpuPair();
  const ar = (await run(gpu, "ar", p, 12)).ids;
  const ids: number[] = [];
  for await (
    const ev of decode("sequoia", gpu.target, gpu.draft, p, {
      tree: { treeSize: 40, depth: 1 }, // a root with 39 children
      acceptance: ACC,
      maxTokens: 12,
      sampling: GREEDY,
      seed: 0,
      eosIds: [],
    })
  ) if (ev.type === "token") ids.push(ev.id);
  assert.deepEqual(ids, ar);
});
