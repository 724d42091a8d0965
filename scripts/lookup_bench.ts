/**
 * AR vs draft-free lookup on one model and backend, in one run (the figures in README "Draft-free lookup"):
 * three "edit this text" prompts whose answer repeats much of the prompt and three ordinary ones, each
 * decoded by AR and by lookup (no draft model), interleaved run by run after a short warm-up; tok/s is
 * the median over runs (decode only, prefill excluded), the other columns pool every run.
 *
 *   deno run -A scripts/lookup_bench.ts --model weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --chat
 *       [--backend gpu|cpu] [--max-tokens 128] [--runs 3] [--temperature 0]
 *
 * `--chat` renders the prompts with the model's chat template (an instruct model); without it the
 * prompts are plain text for the bundled tiny target (Bible text; its "edit" prompts are its own greedy
 * loop and repeated passages, since the 5M-parameter model copies no text it did not learn).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { openModelFolder } from "../src/model/folder.ts";
import { type Backend, loadModel } from "../src/runtime/backend.ts";
import { decode } from "../src/speculative/decode.ts";
import { median } from "../src/util/stats.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "weights/tiny/target" },
    backend: { type: "string", default: "gpu" },
    "max-tokens": { type: "string", default: "128" },
    runs: { type: "string", default: "3" },
    temperature: { type: "string", default: "0" },
    chat: { type: "boolean", default: false },
  },
});
const maxTokens = Number(values["max-tokens"]), runs = Number(values.runs);
const sampling = { temperature: Number(values.temperature), topK: 0, topP: 1 };

const PARA = "The lighthouse stood at the edge of the cliff for more than a hundred years. Every night the " +
  "keeper climbed the narow stairs, lit the great lamp, and watched the ships pass safely through the dark " +
  "water. In the morning he wrote the weather in a small book and went to sleep while the gulls cried over " +
  "the rocks.";
const CODE = `def total_price(items, tax_rate):
    total = 0
    for item in items:
        price = item["price"] * item["quantity"]
        if item.get("discount"):
            price = price - item["discount"]
        total = total + price
    total = total + total * tax_rate
    return round(total, 2)`;
const LIST = "- red apples\n- green pears\n- red cherries\n- yellow bananas\n- red strawberries\n" +
  "- purple grapes\n- orange oranges\n- red raspberries";
const PROMPTS = values.chat
  ? {
    edit: [
      `Repeat the following text exactly, fixing the one typo:\n\n${PARA}`,
      `Rename the function total_price to compute_total in this Python code and output the whole code, ` +
      `changing nothing else:\n\n${CODE}`,
      `Copy this list, replacing the word "red" with "blue" everywhere:\n\n${LIST}`,
    ],
    ordinary: [
      "Write a short story about a lighthouse keeper.",
      "Explain why the sky is blue.",
      "Give three tips for learning to cook.",
    ],
  }
  : {
    edit: [
      "And the LORD said unto Moses, Behold, I will not be a burnt offering, nor a burnt offering, and the " +
      "burnt offering, and the burnt offering,",
      "And God said, Let there be light: and there was light. And God saw the light, that it was good. And " +
      "God said, Let there be light: and there was light. And God saw the light,",
      "And it came to pass after these things, that the word of the LORD came unto Abram. And it came to " +
      "pass after these things, that the word of the LORD came",
    ],
    ordinary: [
      "When the LORD thy God shall bring thee",
      "Manasseh was twelve years old when he began",
      "As the hart panteth after the water brooks,",
    ],
  };

const folder = await openModelFolder(values.model);
const tok = folder.tokenizer;
const loaded = await loadModel(folder, values.backend as Backend);

interface Tally {
  tokPerS: number[];
  tokens: number;
  steps: number;
  proposals: number;
  nodes: number;
  draftMs: number;
  verifyMs: number;
}

async function once(method: "ar" | "lookup", prompt: number[], seed: number, t: Tally, max = maxTokens) {
  for await (
    const ev of decode(method, loaded.model, undefined, prompt, {
      tree: {},
      maxTokens: max,
      sampling,
      seed,
      eosIds: tok.eosIds,
    })
  ) {
    if (ev.type === "step") {
      t.nodes += ev.stats.treeSize;
      if (ev.stats.treeSize > 1) t.proposals++;
    }
    if (ev.type === "done") {
      const st = ev.stats as typeof ev.stats & { steps?: number; draftMs?: number; verifyMs?: number };
      t.tokPerS.push(st.tokPerS);
      t.tokens += st.completionTokens;
      t.steps += st.steps ?? st.targetForwards;
      t.draftMs += st.draftMs ?? 0;
      t.verifyMs += st.verifyMs ?? 0;
    }
  }
}

const tally = (): Tally => ({
  tokPerS: [],
  tokens: 0,
  steps: 0,
  proposals: 0,
  nodes: 0,
  draftMs: 0,
  verifyMs: 0,
});
console.log(
  `${values.model}, ${loaded.device}, T = ${sampling.temperature}, up to ${maxTokens} tokens (EOS ends), ` +
    `median of ${runs} runs, AR and lookup interleaved; Deno ${Deno.version.deno}\n`,
);
console.log(
  "| prompt | AR tok/s | lookup tok/s | lookup / AR | tokens/step | proposals / steps | verified / token | lookup ms/step (draft) |",
);
console.log("| --- | --: | --: | --: | --: | --: | --: | --: |");
const ratios: Record<string, number[]> = { edit: [], ordinary: [] };
for (const [set, list] of Object.entries(PROMPTS)) {
  for (const [i, text] of list.entries()) {
    const prompt = values.chat ? tok.encodeChat([{ role: "user", content: text }]) : tok.encode(text);
    await once("ar", prompt, 1, tally(), 8); // warm-up
    await once("lookup", prompt, 1, tally(), 8);
    const ar = tally(), lk = tally();
    for (let r = 0; r < runs; r++) {
      await once("ar", prompt, 7 + r, ar);
      await once("lookup", prompt, 7 + r, lk);
    }
    const ratio = median(lk.tokPerS) / median(ar.tokPerS);
    ratios[set].push(ratio);
    console.log(
      `| ${set} ${i + 1} (${prompt.length} tok) | ${median(ar.tokPerS).toFixed(1)} | ${
        median(lk.tokPerS).toFixed(1)
      } | ${ratio.toFixed(2)}x | ${(lk.tokens / lk.steps).toFixed(2)} | ${lk.proposals}/${lk.steps} | ${
        (lk.nodes / lk.tokens).toFixed(2)
      } | ${((lk.draftMs + lk.verifyMs) / lk.steps).toFixed(1)} (${(lk.draftMs / lk.steps).toFixed(3)}) |`,
    );
  }
}
const geomean = (a: number[]) => Math.exp(a.reduce((s, x) => s + Math.log(x), 0) / a.length);
console.log(
  `\ngeometric mean lookup / AR: edit ${geomean(ratios.edit).toFixed(2)}x, ordinary ${
    geomean(ratios.ordinary).toFixed(2)
  }x`,
);
loaded.close();
