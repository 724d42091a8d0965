import assert from "node:assert/strict";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { DEFAULT_DRAFT_DIR } from "../src/model/folder.ts";

const tok = await ModelTokenizer.load(DEFAULT_DRAFT_DIR);

Deno.test("tokenizer: BOS and EOS come from tokenizer_config.json", () => {
  assert.equal(tok.bosId, 1);
  assert.deepEqual(tok.eosIds, [2]);
  const ids = tok.encode("And God said");
  assert.equal(ids[0], 1);
  assert.equal(ids.filter((i) => i === 1).length, 1, "BOS added exactly once");
  assert.deepEqual(tok.encode("And God said", { addBos: false }), ids.slice(1));
});

Deno.test("tokenizer: round trip of English, multi-byte characters and whitespace", () => {
  for (
    const text of [
      "In the beginning God created the heaven and the earth.\n",
      "café — naïve “quotes” 日本語 🙂 👍🏽 Ωμέγα",
      "  leading and trailing spaces \n\n\ttabs ",
    ]
  ) {
    assert.equal(tok.decode(tok.encode(text, { addBos: false })), text);
  }
});

Deno.test("tokenizer: streaming decode holds back incomplete UTF-8 and loses nothing", () => {
  // Emoji and CJK are split into several byte-level tokens each (the corpus is ASCII).
  const text = "Amen 🙂 日本 ok é!";
  const ids = tok.encode(text, { addBos: false });
  assert.ok(ids.length > [...text].length, "multi-byte characters span several tokens");
  const d = tok.streamDecoder();
  const pieces: string[] = [];
  for (const id of ids) pieces.push(d.push(id));
  pieces.push(d.flush());
  for (const p of pieces) {
    assert.ok(!p.includes("\uFFFD"), `piece ${JSON.stringify(p)} has a replacement char`);
  }
  assert.ok(pieces.some((p) => p === ""), "some token completed no character and was held back");
  assert.equal(pieces.join(""), text);
});

Deno.test("tokenizer: a stream cut inside a character flushes a replacement character", () => {
  const ids = tok.encode("🙂", { addBos: false });
  const d = tok.streamDecoder();
  assert.equal(d.push(ids[0]), "");
  assert.equal(d.flush(), "\uFFFD");
});

Deno.test("tokenizer: chat template renders through jinja", () => {
  assert.ok(tok.hasChatTemplate);
  const ids = tok.encodeChat([{ role: "user", content: "Who made the light?" }]);
  assert.equal(ids[0], 1, "template writes BOS, tokenized as the special token");
  assert.equal(tok.decode(ids), "User: Who made the light?\nAssistant:");
});
