/**
 * SmolLM2-135M-Instruct from its GGUF on the WebGPU engine against Hugging Face transformers on the same
 * file: teacher-forced greedy tokens and top-5 logits for all ten reference prompts (chat-formatted and
 * plain), and the engine's own greedy decoding loop (tokens sampled on the GPU, 8 per submission) for one
 * chat prompt. The GPU holds the dequantized weights as F16 (transformers: f32); measured gap: max
 * |logit difference| 2.1e-2 over the ten prompts, so tokens are compared wherever the reference margin
 * exceeds 0.05 and logits must agree within 0.05.
 */
import assert from "node:assert/strict";
import { GpuLlama } from "../src/gpu/llama/model.ts";
import { openModelFolder } from "../src/model/folder.ts";
import { GREEDY } from "../src/model/sampling.ts";
import { sharedGpu } from "../src/runtime/backend.ts";
import { decode } from "../src/speculative/decode.ts";
import { assertTeacherForcedParity, golden, haveSmollm2, SMOLLM2 } from "./fixtures/smollm2.ts";

const GAP = 0.05;

Deno.test({
  name: "smollm2 parity (GPU): greedy tokens and logits equal transformers' on all reference prompts",
  ignore: !haveSmollm2,
  fn: async () => {
    const folder = await openModelFolder(SMOLLM2);
    const model = await GpuLlama.load(await sharedGpu(), folder, { capacity: 256 });
    try {
      let worst = 0;
      for (const p of golden.prompts) {
        worst = Math.max(
          worst,
          await assertTeacherForcedParity(model, p, { marginGap: GAP, logitTol: GAP, what: "gpu" }),
        );
      }
      assert.ok(worst > 0, "the comparison saw logits");
      // The decoding loop itself: greedy tokens up to the first step whose reference margin is a near-tie.
      const p = golden.prompts.find((x) => x.kind === "chat")!;
      const ids: number[] = [];
      const events = decode("ar", model, undefined, p.ids, {
        tree: {},
        maxTokens: 64,
        sampling: GREEDY,
        seed: 0,
        eosIds: [],
      });
      for await (const ev of events) if (ev.type === "token") ids.push(ev.id);
      const tie = p.margins.findIndex((m) => m <= GAP);
      const upTo = tie < 0 ? 64 : tie; // the token at a near-tie may differ; everything before must not
      assert.deepEqual(ids.slice(0, upTo), p.generated_ids.slice(0, upTo), `${p.name}: GPU greedy decoding`);
    } finally {
      model.dispose();
      folder.checkpoint.close();
    }
  },
});
