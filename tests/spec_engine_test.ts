/**
 * Engine edge cases on a small random model pair (fast, CPU): context exhaustion with large trees,
 * EOS, max_tokens, and drafters never overflowing the draft's KV cache.
 */
import assert from "node:assert/strict";
import { generateAutoregressive } from "../src/decoding/autoregressive.ts";
import { GREEDY } from "../src/model/sampling.ts";
import { generateSpeculative } from "../src/speculative/engine.ts";
import { makeDrafter, type Method } from "../src/speculative/methods.ts";
import { randomCpuModel, smallConfig } from "./fixtures/random_model.ts";

const config = smallConfig(); // vocab 77, context 64

const model = (seed: number) => randomCpuModel(config, seed);

const target = model(1), draft = model(1); // the same weights: every draft token is accepted at T = 0
const ACC = [0.7, 0.1, 0.05, 0.03];
const prompt = Array.from({ length: 20 }, (_, i) => (i * 7 + 3) % 77);

async function tokens(gen: AsyncGenerator<{ type: string; id?: number; finishReason?: string }>) {
  const ids: number[] = [];
  let finish = "";
  for await (const ev of gen) {
    if (ev.type === "token") ids.push(ev.id!);
    if (ev.type === "done") finish = ev.finishReason!;
  }
  return { ids, finish };
}

Deno.test("engine: big trees near the end of the context never overflow either cache; output equals AR", async () => {
  const ar = await tokens(
    generateAutoregressive(target, prompt, { maxTokens: 100, sampling: GREEDY, seed: 0 }),
  );
  assert.equal(ar.ids.length, 64 - 20 + 1, "AR stops at the context end (the last token needs no slot)");
  for (const m of ["chain", "specinfer", "sequoia", "specexec", "lookup"] as Exclude<Method, "ar">[]) {
    const { drafter, verifier } = makeDrafter(m, { treeSize: 48, depth: 12, budget: 60, width: 4 }, ACC);
    const sp = await tokens(
      generateSpeculative(target, draft, prompt, {
        drafter,
        verifier,
        maxTokens: 100,
        sampling: GREEDY,
        seed: 0,
      }),
    );
    assert.deepEqual(sp.ids, ar.ids, m);
    assert.equal(sp.finish, "length", m);
  }
});

Deno.test("engine: max_tokens and EOS end a speculative generation exactly", async () => {
  const ar = await tokens(
    generateAutoregressive(target, prompt, { maxTokens: 30, sampling: GREEDY, seed: 0 }),
  );
  const { drafter, verifier } = makeDrafter("sequoia", { treeSize: 16, depth: 6 }, ACC);
  const sp = await tokens(
    generateSpeculative(target, draft, prompt, {
      drafter,
      verifier,
      maxTokens: 7,
      sampling: GREEDY,
      seed: 0,
    }),
  );
  assert.deepEqual(sp.ids, ar.ids.slice(0, 7));
  const eos = ar.ids[12];
  const first = ar.ids.indexOf(eos);
  const st = await tokens(
    generateSpeculative(target, draft, prompt, {
      drafter,
      verifier,
      maxTokens: 30,
      sampling: GREEDY,
      seed: 0,
      eosIds: [eos],
    }),
  );
  assert.deepEqual(st.ids, ar.ids.slice(0, first));
  assert.equal(st.finish, "stop");
});
