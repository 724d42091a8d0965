/**
 * Golden test: the CPU reference, reading the committed HF folders through the same loader users hit,
 * must reproduce PyTorch's float64 greedy continuations token for token (scripts/train_tiny.py wrote
 * them from the stored, rounded weights), and the JS tokenizer must match the Python one.
 */
import assert from "node:assert/strict";
import { generateAutoregressive } from "../src/decoding/autoregressive.ts";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import { GREEDY } from "../src/model/sampling.ts";

interface Golden {
  max_tokens: number;
  cases: { prompt: string; prompt_ids: number[]; target: number[]; draft: number[] }[];
  tokenizer: { text: string; ids: number[] }[];
}

const golden: Golden = JSON.parse(
  await Deno.readTextFile(new URL("../weights/tiny/golden.json", import.meta.url)),
);

for (const [name, dir] of [["target", DEFAULT_TARGET_DIR], ["draft", DEFAULT_DRAFT_DIR]] as const) {
  Deno.test(`golden: CPU greedy equals PyTorch for the tiny ${name}`, async () => {
    assert.ok(golden.cases.length >= 5 && golden.max_tokens >= 64);
    const folder = await openModelFolder(dir);
    const model = await loadCpuModel(folder);
    for (const c of golden.cases) {
      assert.deepEqual(
        folder.tokenizer.encode(c.prompt),
        c.prompt_ids,
        `prompt ids of ${JSON.stringify(c.prompt)}`,
      );
      const ids: number[] = [];
      for await (
        const ev of generateAutoregressive(model, c.prompt_ids, {
          maxTokens: golden.max_tokens,
          sampling: GREEDY,
          seed: 0,
        })
      ) {
        if (ev.type === "token") ids.push(ev.id);
      }
      // No eosIds: like the PyTorch reference, decoding runs through EOS for the full length.
      assert.deepEqual(ids, c[name], `${name} continuation of ${JSON.stringify(c.prompt)}`);
    }
    folder.checkpoint.close();
  });
}

Deno.test("golden: JS tokenizer ids equal the Python trainer's", async () => {
  const folder = await openModelFolder(DEFAULT_TARGET_DIR);
  for (const t of golden.tokenizer) {
    assert.deepEqual(
      folder.tokenizer.encode(t.text, { addBos: false }),
      t.ids,
      JSON.stringify(t.text.slice(0, 40)),
    );
    assert.equal(folder.tokenizer.decode(t.ids), t.text);
  }
  folder.checkpoint.close();
});
