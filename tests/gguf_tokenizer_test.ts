/**
 * The tokenizer rebuilt from SmolLM2's GGUF against the reference: ids and decodings of 42 varied
 * strings (digits, whitespace, code, accents, CJK, emoji, special tokens in text) as the transformers
 * tokenizer built from the same file gives them (tests/fixtures/smollm2/tokens.json, written by
 * scripts/reference_smollm2.py), the special ids, and the chat template.
 */
import assert from "node:assert/strict";
import { GgufFile } from "../src/model/gguf.ts";
import { tokenizerFromGguf } from "../src/model/gguf_tokenizer.ts";
import { writeGguf } from "./fixtures/gguf_writer.ts";

const SMOLLM2 = new URL("../weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", import.meta.url).pathname;
const haveSmollm2 = await Deno.stat(SMOLLM2).then(() => true, () => false);
const ref = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/smollm2/tokens.json", import.meta.url)),
);

Deno.test({
  name: "gguf tokenizer: SmolLM2's ids and decodings equal the transformers tokenizer of the same file",
  ignore: !haveSmollm2,
  fn: async () => {
    const f = await GgufFile.open(SMOLLM2);
    try {
      const tok = tokenizerFromGguf(f);
      assert.equal(tok.vocabSize, ref.vocab_size);
      assert.equal(tok.bosId, ref.special_tokens.bos[1]);
      assert.ok(
        tok.eosIds.includes(ref.special_tokens.eos[1]),
        `eos ${ref.special_tokens.eos[1]} ends generation`,
      );
      for (const c of ref.cases) {
        // add_bos_token is false for this model: encode adds nothing (as transformers does).
        assert.deepEqual(tok.encode(c.text), c.ids, `ids of ${JSON.stringify(c.text)}`);
        assert.equal(tok.decode(c.ids), c.decoded_skip_special, `decoding of ${JSON.stringify(c.text)}`);
      }
      assert.equal(tok.decode([]), "");
      // The chat template renders the system default, the turn and the assistant prompt.
      const ids = tok.encodeChat([{ role: "user", content: "Hi" }]);
      assert.equal(
        tok.decode(ids),
        "system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face\nuser\nHi\nassistant\n",
      );
      assert.equal(ids[0], 1, "<|im_start|> opens the rendered text");
    } finally {
      f.close();
    }
  },
});

Deno.test("gguf tokenizer: unsupported models and pre-tokenizers are refused by name", async () => {
  const str = (key: string, value: string) => ({ key, type: 8, value });
  const arr = (key: string, values: string[]) => ({ key, type: 9, elementType: 8, value: values });
  const cases: [unknown[], RegExp][] = [
    [[str("tokenizer.ggml.model", "llama")], /tokenizer.ggml.model "llama" is not supported \(only "gpt2"/],
    [
      [str("tokenizer.ggml.model", "gpt2"), str("tokenizer.ggml.pre", "qwen2")],
      /tokenizer.ggml.pre "qwen2" is not supported \(supported: gpt2, gpt-2, default, smollm\)/,
    ],
    [[str("tokenizer.ggml.model", "gpt2")], /metadata "tokenizer.ggml.tokens" is missing/],
    [
      [
        str("tokenizer.ggml.model", "gpt2"),
        arr("tokenizer.ggml.tokens", ["a", "a"]),
        arr("tokenizer.ggml.merges", []),
      ],
      /tokenizer.ggml.tokens has "a" twice \(ids 0, 1\)/,
    ],
  ];
  for (const [kv, pattern] of cases) {
    const path = await Deno.makeTempFile({ suffix: ".gguf" });
    try {
      await Deno.writeFile(path, writeGguf({ kv: kv as never }));
      const f = await GgufFile.open(path);
      try {
        assert.throws(() => tokenizerFromGguf(f), pattern);
      } finally {
        f.close();
      }
    } finally {
      await Deno.remove(path);
    }
  }
});
