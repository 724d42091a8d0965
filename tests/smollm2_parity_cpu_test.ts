/**
 * SmolLM2-135M-Instruct from its GGUF on the CPU reference against Hugging Face transformers on the same
 * file (f32 dequantization on both sides): teacher-forced greedy tokens and top-5 logits for one chat
 * and one plain prompt (the CPU reference costs ~30 s a prompt here; the GPU test covers all ten).
 * Measured gap: max |logit difference| 4.6e-5, so tokens are compared wherever the margin exceeds 1e-3
 * and logits must agree within 1e-3.
 */
import { loadCpuModel } from "../src/cpu/load.ts";
import { openModelFolder } from "../src/model/folder.ts";
import { assertTeacherForcedParity, golden, haveSmollm2, SMOLLM2 } from "./fixtures/smollm2.ts";

Deno.test({
  name: "smollm2 parity (CPU reference): greedy tokens and logits equal transformers', chat and plain prompt",
  ignore: !haveSmollm2,
  fn: async () => {
    const folder = await openModelFolder(SMOLLM2);
    try {
      const model = await loadCpuModel(folder, 256);
      const picks = [
        golden.prompts.find((p) => p.kind === "chat")!,
        golden.prompts.find((p) => p.kind === "plain")!,
      ];
      for (const p of picks) {
        await assertTeacherForcedParity(model, p, { marginGap: 1e-3, logitTol: 1e-3, what: "cpu" });
      }
    } finally {
      folder.checkpoint.close();
    }
  },
});
