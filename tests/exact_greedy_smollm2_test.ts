/**
 * The promise on the real pair: SmolLM2-135M-Instruct (Q4_1 GGUF, `deno task models`) with its distilled,
 * pruned-vocabulary draft (weights/smollm2-draft: 3 layers, 8,192 + 1 rows, F16 loaded as Q8_0) on the wasm
 * backend. Greedy output of every method is token-identical to AR, on a held-out chat prompt and a plain
 * one, and every draft method accepts something (tokens per step > 1).
 */
import assert from "node:assert/strict";
import { openModelFolder } from "../src/model/folder.ts";
import { loadModel } from "../src/runtime/backend.ts";
import { encodePromptSet, loadPromptSet } from "../src/bench/prompts.ts";
import { assertMethodsMatchAr } from "./fixtures/exact.ts";
import { haveSmollm2, SMOLLM2 } from "./fixtures/smollm2.ts";

const DRAFT = new URL("../weights/smollm2-draft", import.meta.url).pathname;
const BENCH = new URL("../bench/", import.meta.url).pathname;

Deno.test({
  name:
    "exactness (real pair, wasm): SmolLM2 + its pruned-vocabulary draft, every method's greedy output = AR",
  ignore: !haveSmollm2,
  async fn() {
    const tf = await openModelFolder(SMOLLM2), df = await openModelFolder(DRAFT);
    const target = await loadModel(tf, "wasm", { threads: 2 });
    const draft = await loadModel(df, "wasm", { threads: 2 });
    try {
      assert.equal(
        draft.model.config.vocabSize,
        tf.config.vocabSize,
        "the draft speaks the target's vocabulary",
      );
      const chat = encodePromptSet(await loadPromptSet(`${BENCH}prompts_smollm2_chat.json`), tf.tokenizer, 1);
      const plain = encodePromptSet(
        await loadPromptSet(`${BENCH}prompts_smollm2_plain.json`),
        tf.tokenizer,
        1,
      );
      // lookup proposes only what the text repeats, which 40 tokens of a plain prompt may never do.
      await assertMethodsMatchAr(
        { target: target.model, draft: draft.model },
        [...chat, ...plain],
        40,
        (ids) => tf.tokenizer.decode(ids),
        (m) => m === "lookup",
      );
    } finally {
      draft.close();
      target.close();
      df.checkpoint.close();
      tf.checkpoint.close();
    }
  },
});
