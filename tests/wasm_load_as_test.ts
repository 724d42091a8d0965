/**
 * config.json `load_as: "Q8_0"`: the wasm backend quantizes a float checkpoint's matrices at load. The
 * result must be the very model a Q8_0 GGUF of the same weights is (scripts/convert_gguf.ts quantizes with
 * the same ggml reference rounding): logits bit-identical.
 */

import assert from "node:assert/strict";
import { convert } from "../scripts/convert_gguf.ts";
import { ConfigError, parseConfig } from "../src/model/config.ts";
import { openModelFolder } from "../src/model/folder.ts";
import { loadModel } from "../src/runtime/backend.ts";
import { BLOCKS_CONFIG, randomTensors, writeModelFolder } from "./fixtures/random_model.ts";

// Rows of whole 32-element blocks (Q8_0), the bundled tokenizer's 2048 ids.
const RAW = BLOCKS_CONFIG;

async function logitsOf(path: string, tokens: number[]): Promise<Float32Array> {
  const f = await openModelFolder(path);
  const m = await loadModel(f, "wasm", { threads: 1 });
  try {
    return await m.model.forward({
      tokens: Int32Array.from(tokens),
      positions: Int32Array.from(tokens, (_, i) => i),
    });
  } finally {
    m.close();
    f.checkpoint.close();
  }
}

Deno.test("wasm load_as Q8_0: an F16 folder loads as the Q8_0 GGUF of the same weights (logits bit-identical)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "wasm_load_as_" });
  try {
    const tensors = randomTensors(parseConfig(RAW), 5, "F16");
    await writeModelFolder(`${dir}/f16`, RAW, tensors, { withTokenizer: true });
    await writeModelFolder(`${dir}/q8`, { ...RAW, load_as: "Q8_0" }, tensors, { withTokenizer: true });
    await convert({ input: `${dir}/f16`, output: `${dir}/ref.gguf`, type: "Q8_0", warn: () => {} });
    const tokens = [5, 900, 17, 2047, 3, 64, 1000];
    const [asF16, asQ8, ref] = [
      await logitsOf(`${dir}/f16`, tokens),
      await logitsOf(`${dir}/q8`, tokens),
      await logitsOf(`${dir}/ref.gguf`, tokens),
    ];
    assert.deepEqual(asQ8, ref, "load_as Q8_0 = the Q8_0 GGUF");
    assert.notDeepEqual(asF16, asQ8, "without load_as the F16 weights are used as stored");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("wasm load_as: another type is refused naming the field", () => {
  assert.throws(
    () => parseConfig({ ...RAW, load_as: "Q4_0" }, "draft/config.json"),
    (e: unknown) => e instanceof ConfigError && /draft\/config\.json: field "load_as"/.test(e.message),
  );
  assert.equal(parseConfig({ ...RAW, load_as: "Q8_0" }).loadAs, "Q8_0");
  assert.equal(parseConfig(RAW).loadAs, undefined);
});
