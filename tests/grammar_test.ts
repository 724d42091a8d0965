/**
 * Grammar-constrained decoding (src/decoding/grammar/): the byte matcher on hand-written JSON in both
 * modes, schema compile errors, tokenBytes on the bundled tokenizers (and a SentencePiece-style one),
 * the token mask against a brute-force per-token check, memoization, the processor's contract, and
 * seeded random walks over the tiny tokenizer's allowed tokens that always end in valid JSON.
 */
import assert from "node:assert/strict";
import type { GrammarSpec, TokenVocabulary } from "../src/decoding/logits/processor.ts";
import {
  allows,
  compileGrammar,
  GrammarError,
  grammarProcessor,
  type JsonMatcher,
  type JsonState,
  type TokenMask,
  TokenMasker,
  TokenTrie,
  vocabularyOf,
} from "../src/decoding/grammar/mod.ts";
import { DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";
import { Rng } from "../src/util/rng.ts";

const enc = new TextEncoder();
const tiny = await ModelTokenizer.load(DEFAULT_TARGET_DIR);
const tinyVocab = vocabularyOf(tiny, tiny.vocabSize);
const SMOLLM2 = new URL("../weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", import.meta.url).pathname;
const haveSmollm2 = await Deno.stat(SMOLLM2).then(() => true, () => false);

type Verdict = "complete" | "prefix" | "reject";

function verdict(m: JsonMatcher, text: string): Verdict {
  const s = m.stepAll(m.initial(), enc.encode(text));
  return s === undefined ? "reject" : m.isComplete(s) ? "complete" : "prefix";
}

function expectAll(m: JsonMatcher, cases: Record<Verdict, string[]>): void {
  for (const want of ["complete", "prefix", "reject"] as const) {
    for (const text of cases[want]) assert.equal(verdict(m, text), want, `${JSON.stringify(text)}`);
  }
}

const schema = (s: Record<string, unknown>): GrammarSpec => ({ kind: "json_schema", schema: s });

Deno.test("grammar: json_object accepts RFC 8259 objects and refuses everything else", () => {
  expectAll(compileGrammar({ kind: "json_object" }), {
    complete: [
      "{}",
      '{"a":1}',
      ' {"a": [1, -2.5e-3, 0, 1E+9, true, false, null, {}, []], "b": {"c": "d"}}',
      '{"esc": "q\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9 \\uD83D\\ude00"}',
      '{"utf8": "é 日本 🙂 \u{10ffff}"}',
      '{"a" : 1 ,\n"b":2}',
      '{"a":1,"a":2}', // repeated keys are valid JSON (the matcher cannot remember keys)
    ],
    prefix: [
      "",
      " ",
      "{",
      '{"a"',
      '{"a":',
      '{"a":1',
      '{"a":-',
      '{"a":1.',
      '{"a":"\\u12',
      '{"a":[1,',
      '{"a":"\xe6"',
    ],
    reject: [
      "[]", // json_object: the top level is an object
      '"x"',
      "1",
      '{"a":1} ', // nothing after the value
      '{"a":1}{',
      '{"a":01}',
      '{"a":1.}',
      '{"a":.5}',
      '{"a":+1}',
      '{"a":1,}',
      '{,"a":1}',
      '{"a" 1}',
      "{'a':1}",
      '{"a":tru}',
      '{"a":True}',
      '{"a":"\\x"}',
      '{"a":"\\udc00"}', // lone low surrogate
      '{"a":"\\ud800x"}', // high surrogate without its low half
      '{"a":"tab\there"}', // raw control character
      '{"a":NaN}',
      "{   }", // three whitespace bytes in a row
      ' \n {"a":1}',
    ],
  });
});

Deno.test("grammar: raw string bytes must be well-formed UTF-8", () => {
  const m = compileGrammar({ kind: "json_object" });
  const ok = (bytes: number[]) => m.stepAll(m.initial(), [...enc.encode('{"a":"'), ...bytes]) !== undefined;
  assert.ok(ok([0xc3, 0xa9]) && ok([0xe6, 0x97, 0xa5]) && ok([0xf0, 0x9f, 0x99, 0x82]));
  for (
    const bad of [[0x80], [0xc0, 0x80], [0xc1], [0xe0, 0x80], [0xed, 0xa0], [0xf0, 0x80], [0xf4, 0x90], [
      0xf5,
    ], [0xff]]
  ) {
    assert.ok(!ok(bad), `bytes ${bad.map((b) => b.toString(16))}`);
  }
});

Deno.test("grammar: whitespace runs and json_object nesting are bounded", () => {
  const m = compileGrammar({ kind: "json_object" });
  assert.equal(verdict(m, '{\n "a":\n 1\n}'), "complete");
  assert.equal(verdict(m, '{\n  "a": 1}'), "reject");
  const wide = compileGrammar({ kind: "json_object" }, { maxWhitespace: 4 });
  assert.equal(verdict(wide, '{\n   "a": 1}'), "complete");
  const nested = (n: number) => '{"a":' + "[".repeat(n) + "]".repeat(n) + "}";
  assert.equal(verdict(m, nested(31)), "complete", "32 containers deep, the object included");
  assert.equal(verdict(m, nested(32)), "reject");
  const shallow = compileGrammar({ kind: "json_object" }, { maxDepth: 2 });
  assert.equal(verdict(shallow, '{"a":{"b":1}}'), "complete");
  assert.equal(verdict(shallow, '{"a":{"b":[]}}'), "reject");
  assert.equal(verdict(shallow, '{"a":{"b":"[{"}}'), "complete", "brackets inside strings do not nest");
});

const PERSON = {
  type: "object",
  title: "Person",
  $schema: "https://json-schema.org/draft/2020-12/schema",
  properties: {
    name: { type: "string", minLength: 1, maxLength: 4, description: "short" },
    age: { type: "integer", default: 0 },
    height: { type: "number" },
    tags: { type: "array", items: { enum: ["a", "b", 1, 12, null] }, minItems: 1, maxItems: 2 },
    ok: { type: "boolean" },
  },
  required: ["name", "age"],
  additionalProperties: false,
};

Deno.test("grammar: json_schema objects follow the schema's property order, optional ones skippable", () => {
  expectAll(compileGrammar(schema(PERSON)), {
    complete: [
      '{"name":"Bob","age":42}',
      '{"name": "Bob", "age": -1, "height": 1.85, "tags": ["a", 12], "ok": true}',
      '{"name":"日本🙂x","age":0,"ok":false}', // four code points
      '{"name":"\\uD83D\\uDE00","age":0}', // a surrogate pair counts once
      '{"name":"x","age":0,"tags":[null]}',
    ],
    prefix: ['{"name":"Bob","age":4', '{"name":"Bob","age":42', '{"name":"Bob","age":42,"t', '{"na'],
    reject: [
      '{"age":42,"name":"Bob"}', // out of order
      '{"name":"Bob"}', // age is required
      '{"name":"","age":1}', // minLength 1
      '{"name":"Bobby","age":1}', // maxLength 4
      '{"name":"Bob","age":4.5}', // integer
      '{"name":"Bob","age":1e3}',
      '{"name":"Bob","age":1,"extra":1}',
      '{"name":"Bob","age":1,"tags":[]}', // minItems 1
      '{"name":"Bob","age":1,"tags":["a","b","a"]}', // maxItems 2
      '{"name":"Bob","age":1,"tags":["c"]}',
      '{"name":"Bob","age":1,"tags":[2]}',
      '{"name":"Bob","age":1,"ok":1}',
      '{"name":"Bob","age":1,}',
      '{"n\\u0061me":"Bob","age":1}', // property names only in their canonical spelling
    ],
  });
});

Deno.test("grammar: json_schema types, enums, alternatives and $ref", () => {
  expectAll(compileGrammar(schema({ type: "number" })), {
    complete: ["12", "-0.5e+3", " 7"],
    prefix: ["-", "1.", "1e"],
    reject: ["012", "12 ", '"12"'],
  });
  expectAll(compileGrammar(schema({ type: ["string", "null"], maxLength: 2 })), {
    complete: ['"ab"', "null"],
    prefix: ['"a', "nu"],
    reject: ['"abc"', "1"],
  });
  expectAll(compileGrammar(schema({ enum: ["red", "green", 3, { a: [1] }], type: ["string", "object"] })), {
    complete: ['"red"', '"green"', '{"a":[1]}'],
    prefix: ['"gr'],
    reject: ["3", '"blue"', '{"a": [1]}'], // 3 fails type; enum values are written canonically
  });
  expectAll(compileGrammar(schema({ const: "x" })), { complete: ['"x"'], prefix: ['"'], reject: ['"y"'] });
  expectAll(compileGrammar(schema({ type: "array", items: { type: "integer", enum: [1, 12] } })), {
    complete: ["[1,12]", "[12]", "[ ]"],
    prefix: ["[1", "[1,1"],
    reject: ["[2]", "[13]", "[1.0]"],
  });
  const alternatives = schema({
    anyOf: [
      { type: "object", properties: { a: { type: "integer" } }, required: ["a"] },
      { type: "object", properties: { b: { $ref: "#/$defs/short" } }, required: ["b"] },
      { $ref: "#/definitions/nothing" },
    ],
    $defs: { short: { type: "string", maxLength: 1 } },
    definitions: { nothing: { type: "null" } },
  });
  expectAll(compileGrammar(alternatives), {
    complete: ['{"a":1}', '{"b":"x"}', "null"],
    prefix: ["{", '{"'],
    reject: ['{"a":"x"}', '{"b":"xy"}', '{"c":1}', "{}"],
  });
  expectAll(compileGrammar(schema({ type: "object", additionalProperties: { type: "boolean" } })), {
    complete: ['{"any key":true,"k2":false}', "{}"],
    prefix: ['{"x":'],
    reject: ['{"x":1}'],
  });
  expectAll(compileGrammar(schema({ type: "object", additionalProperties: false })), {
    complete: ["{}"],
    prefix: [],
    reject: ['{"a":1}'],
  });
  expectAll(compileGrammar(schema({})), {
    complete: ["[1]", '"s"', "true", "{}"],
    prefix: [],
    reject: ["tru "],
  });
});

Deno.test("grammar: schema compile errors name the JSON pointer and the keyword", () => {
  const fails = (s: unknown, path: string, words: string[]) => {
    assert.throws(
      () => compileGrammar({ kind: "json_schema", schema: s as Record<string, unknown> }),
      (e: unknown) => {
        assert.ok(e instanceof GrammarError, String(e));
        assert.equal(e.path, path, e.message);
        assert.ok(e.message.includes(path), e.message);
        for (const w of words) assert.ok(e.message.includes(w), `${e.message} should name ${w}`);
        return true;
      },
    );
  };
  fails({ type: "object", properties: { age: { type: "integer", minimum: 0 } } }, "#/properties/age", [
    '"minimum"',
  ]);
  fails({ type: "array", items: { type: "string", pattern: "^a" } }, "#/items", ['"pattern"']);
  fails({ type: "string", format: "date-time" }, "#", ['"format"']);
  fails({ properties: { "a/b": { allOf: [] } } }, "#/properties/a~1b", ['"allOf"']);
  fails({ type: "object", properties: { a: {} }, required: ["b"] }, "#/required", ['"b"']);
  fails({ type: "array", items: [{ type: "string" }] }, "#/items", ['"items"', "tuple"]);
  fails({ anyOf: [{ type: "string" }], type: "string" }, "#", ['"type"', '"anyOf"']);
  fails({ anyOf: [] }, "#/anyOf", ['"anyOf"']);
  fails({ type: "strin" }, "#/type", ['"type"', "strin"]);
  fails({ type: "string", maxLength: -1 }, "#/maxLength", ['"maxLength"']);
  fails({ type: "string", minLength: 3, maxLength: 2 }, "#", ['"minLength"', '"maxLength"']);
  fails({ enum: [] }, "#/enum", ['"enum"']);
  fails({ enum: [1, 2], type: "string" }, "#", ['"enum"']);
  fails({ $ref: "#/$defs/missing" }, "#/$ref", ['"#/$defs/missing"']);
  fails({ $ref: "https://example.com/s.json" }, "#/$ref", ['"$ref"']);
  fails(
    {
      $ref: "#/$defs/node",
      $defs: { node: { type: "object", properties: { next: { $ref: "#/$defs/node" } } } },
    },
    "#/$defs/node/properties/next/$ref",
    ["recursive", '"$ref"'],
  );
  fails(
    { type: "object", properties: { a: { type: "string" } }, additionalProperties: { type: "string" } },
    "#/additionalProperties",
    ['"additionalProperties"'],
  );
  fails({ type: "object", properties: { a: false } }, "#/properties/a", ["false"]);
});

// ---- tokenBytes ----

const TEXTS = [
  "In the beginning God created the heaven and the earth.",
  "  two spaces,\nnewlines\n\n\tand a tab ",
  "café é 日本語 🙂 👍🏽",
  '{"a": [1, -2.5e3, true, null], "b": {"c": "q\\"uote"}}\n',
];

function concatBytes(tok: ModelTokenizer, ids: number[]): Uint8Array {
  return Uint8Array.from(ids.flatMap((id) => {
    const b = tok.tokenBytes(id);
    assert.ok(b !== undefined, `token ${id} has bytes`);
    return [...b];
  }));
}

Deno.test("tokenBytes: the tiny tokenizer's bytes of encode(text) are text's UTF-8; specials have none", () => {
  for (const text of TEXTS) {
    assert.deepEqual(concatBytes(tiny, tiny.encode(text, { addBos: false })), enc.encode(text));
  }
  for (const id of [tiny.bosId!, ...tiny.eosIds, 0]) assert.equal(tiny.tokenBytes(id), undefined);
  assert.equal(tiny.tokenBytes(tiny.vocabSize), undefined);
  assert.equal(tiny.tokenBytes(-1), undefined);
  // A piece of a character: exact bytes where decode() can only show U+FFFD.
  const [first] = tiny.encode("🙂", { addBos: false });
  assert.deepEqual(tiny.tokenBytes(first), enc.encode("🙂").slice(0, tiny.tokenBytes(first)!.length));
});

Deno.test({
  name: "tokenBytes: SmolLM2's GGUF tokenizer round-trips and has no bytes for its control tokens",
  ignore: !haveSmollm2,
  async fn() {
    const folder = await openModelFolder(SMOLLM2);
    try {
      const tok = folder.tokenizer;
      for (const text of TEXTS) {
        assert.deepEqual(concatBytes(tok, tok.encode(text, { addBos: false })), enc.encode(text));
      }
      for (const id of tok.eosIds) assert.equal(tok.tokenBytes(id), undefined);
      const im = tok.encodeChat([{ role: "user", content: "hi" }])[0]; // <|im_start|>
      assert.equal(tok.tokenBytes(im), undefined);
    } finally {
      folder.checkpoint.close();
    }
  },
});

/** A Llama-2-style tokenizer: Prepend/Replace normalizer, BPE with byte fallback, ▁ decoder sequence. */
function sentencePieceTokenizer(): ModelTokenizer {
  const byteTokens = Array.from(
    { length: 256 },
    (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`,
  );
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (
    const t of [
      ...byteTokens,
      "▁",
      "h",
      "e",
      "l",
      "o",
      "w",
      "r",
      "d",
      "{",
      "}",
      ":",
      '"',
      "a",
      "▁h",
      "lo",
      "▁w",
    ]
  ) {
    vocab[t] = Object.keys(vocab).length;
  }
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    normalizer: {
      type: "Sequence",
      normalizers: [{ type: "Prepend", prepend: "▁" }, {
        type: "Replace",
        pattern: { String: " " },
        content: "▁",
      }],
    },
    pre_tokenizer: null,
    post_processor: null,
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: ["▁ h", "l o", "▁ w"],
    },
  };
  return ModelTokenizer.fromJson(json, { bos_token: "<s>", eos_token: "</s>" }, { source: "sentencepiece" });
}

Deno.test("tokenBytes: SentencePiece-style ▁ is a space and <0xNN> is byte NN", () => {
  const tok = sentencePieceTokenizer();
  for (const text of ["hello world", 'héllo {"a": "日本 🙂"}\n']) {
    const ids = tok.encode(text, { addBos: false });
    if (text.includes("日本")) {
      assert.ok(ids.some((id) => id >= 3 && id < 259), "日本 fell back to byte tokens");
    }
    // The normalizer prepends ▁; decode() strips it at the start of the text, tokenBytes (mid-text) keeps it.
    assert.deepEqual(concatBytes(tok, ids), enc.encode(" " + text));
    assert.equal(tok.decode(ids), text);
  }
  assert.deepEqual(tok.tokenBytes(3 + 0xe6), Uint8Array.of(0xe6));
  assert.equal(tok.tokenBytes(1), undefined);
});

// ---- masks ----

/** The mask by definition: each token's bytes step one by one; EOS exactly when complete. */
function bruteForce(m: JsonMatcher, vocab: TokenVocabulary, s: JsonState): boolean[] {
  const out: boolean[] = [];
  for (let id = 0; id < vocab.size; id++) {
    const b = vocab.bytes(id);
    out.push(
      vocab.eosIds.includes(id)
        ? m.isComplete(s)
        : b !== undefined && b.length > 0 && m.stepAll(s, b) !== undefined,
    );
  }
  return out;
}

function assertMask(
  m: JsonMatcher,
  vocab: TokenVocabulary,
  s: JsonState,
  mask: TokenMask,
  what: string,
): void {
  const want = bruteForce(m, vocab, s);
  for (let id = 0; id < vocab.size; id++) {
    if (allows(mask, id) !== want[id]) {
      assert.fail(
        `${what}: token ${id} ${JSON.stringify(new TextDecoder().decode(vocab.bytes(id)))}: mask ` +
          `${allows(mask, id)}, brute force ${want[id]}`,
      );
    }
  }
}

const MASK_STATES: [GrammarSpec, string[]][] = [
  [{ kind: "json_object" }, [
    "",
    " ",
    "{",
    '{"',
    '{"a',
    '{"a":',
    '{"a": 1',
    '{"a": "x\\',
    '{"a":[1,{"b":"\xe6',
    "{}",
  ]],
  [schema(PERSON), [
    "",
    "{",
    '{"',
    '{"name":"Bo',
    '{"name":"Bob",',
    '{"name":"Bob","age":1',
    '{"name":"Bob","age":1,"tags":["',
  ]],
  [schema({ type: "integer" }), ["", "1", "-"]],
];

Deno.test("token mask: equals the per-token brute force on the tiny vocabulary", () => {
  for (const [spec, prefixes] of MASK_STATES) {
    const m = compileGrammar(spec);
    const masker = new TokenMasker(m, TokenTrie.of(tinyVocab));
    for (const p of prefixes) {
      const s = m.stepAll(m.initial(), enc.encode(p));
      assert.ok(s !== undefined, p);
      const mask = masker.compute(s);
      assertMask(m, tinyVocab, s, mask, `${spec.kind} after ${JSON.stringify(p)}`);
      let count = 0;
      for (let id = 0; id < tinyVocab.size; id++) if (allows(mask, id)) count++;
      assert.ok(count > 0, "never an empty mask");
      if (m.isComplete(s) && p.endsWith("}")) {
        assert.equal(count, tinyVocab.eosIds.length, "complete: only EOS");
      }
    }
  }
});

Deno.test({
  name: "token mask: equals the brute force on SmolLM2's 49,152 tokens",
  ignore: !haveSmollm2,
  async fn() {
    const folder = await openModelFolder(SMOLLM2);
    try {
      const vocab = vocabularyOf(folder.tokenizer, folder.config.vocabSize);
      const m = compileGrammar(schema(PERSON));
      const masker = new TokenMasker(m, TokenTrie.of(vocab));
      for (const p of ["", '{"name":"B', '{"name":"Bob","age":4', '{"name":"Bob","age":4}']) {
        const s = m.stepAll(m.initial(), enc.encode(p))!;
        assertMask(m, vocab, s, masker.compute(s), `SmolLM2 after ${JSON.stringify(p)}`);
      }
    } finally {
      folder.checkpoint.close();
    }
  },
});

Deno.test("token mask: memoized by state key, identical to a fresh walk, LRU-bounded", () => {
  const m = compileGrammar({ kind: "json_object" });
  const masker = new TokenMasker(m, TokenTrie.of(tinyVocab), { cacheSize: 2 });
  const a = m.stepAll(m.initial(), enc.encode('{"a": "xy'))!;
  const b = m.stepAll(m.initial(), enc.encode('{"a": "other text'))!; // a different path, the same state
  assert.equal(m.key(a), m.key(b));
  const first = masker.mask(a);
  assert.equal(masker.mask(b), first, "the cached mask itself");
  assert.deepEqual(first, masker.compute(b));
  assert.deepEqual(masker.stats.computed, 2);
  assert.equal(masker.stats.cached, 1);
  masker.mask(m.initial());
  masker.mask(m.stepAll(m.initial(), enc.encode("{"))!); // evicts a's entry (capacity 2)
  assert.notEqual(masker.mask(a), first, "recomputed after eviction");
  assert.deepEqual(masker.mask(a), first);
});

// ---- the processor ----

Deno.test("grammar processor: apply masks to -Infinity, advance steps bytes and names a bad token", () => {
  const p = grammarProcessor({ kind: "json_object" }, tinyVocab);
  assert.equal(grammarProcessor({ kind: "json_object" }, tinyVocab), p, "one processor per (vocab, spec)");
  const s0 = p.initial([1, 2, 3]);
  const logits = new Float32Array(tinyVocab.size).fill(1);
  p.apply(logits, s0);
  const open = tiny.encode("{", { addBos: false })[0];
  assert.equal(logits[open], 1);
  assert.equal(logits[tiny.encode("a", { addBos: false })[0]], -Infinity);
  assert.equal(logits[tiny.eosIds[0]], -Infinity, "no EOS before the value");
  const s1 = p.advance(s0, open);
  assert.equal(p.matcher.key(p.initial([])), p.matcher.key(s0), "advance does not change its input state");
  assert.throws(() => p.advance(s1, open), /token \d+ .*"\{".* not allowed/);
  assert.throws(() => p.advance(s1, tiny.eosIds[0]), /EOS token 2/);
  assert.throws(() => p.advance(s1, tiny.bosId!), /token 1 has no text/);
  const done = p.advance(s1, tiny.encode("}", { addBos: false })[0]);
  const l2 = new Float32Array(tinyVocab.size);
  p.apply(l2, done);
  assert.deepEqual([...l2.keys()].filter((i) => l2[i] !== -Infinity), tinyVocab.eosIds);
  assert.equal(p.advance(done, tiny.eosIds[0]), done);
});

Deno.test("grammar processor: model ids past the tokenizer's vocabulary are never allowed", () => {
  const padded = vocabularyOf(tiny, tiny.vocabSize + 40);
  assert.equal(vocabularyOf(tiny, tiny.vocabSize + 40), padded, "cached per tokenizer and size");
  const p = grammarProcessor({ kind: "json_object" }, padded);
  const s = p.advance(
    p.advance(p.initial([]), tiny.encode("{", { addBos: false })[0]),
    tiny.encode('"', { addBos: false })[0],
  );
  const logits = new Float32Array(padded.size);
  p.apply(logits, s); // inside a string: almost everything goes
  for (let id = tiny.vocabSize; id < padded.size; id++) assert.equal(logits[id], -Infinity, `id ${id}`);
  const finite = logits.subarray(0, tiny.vocabSize).filter((x) => x === 0).length;
  assert.ok(finite > 1800, `${finite} tokens may continue a string`);
});

// ---- random walks ----

/** A checker of the supported subset (independent of the matcher): throws naming what fails. */
function check(v: unknown, s: unknown, root: Record<string, unknown>, at = "$"): void {
  if (s === true || s === undefined) return;
  const sc = s as Record<string, unknown>;
  if (typeof sc.$ref === "string") {
    const target = sc.$ref.slice(2).split("/").reduce(
      (o: unknown, k) => (o as Record<string, unknown>)[k],
      root,
    );
    return check(v, target, root, at);
  }
  const alts = (sc.anyOf ?? sc.oneOf) as unknown[] | undefined;
  if (alts) {
    const ok = alts.some((a) => {
      try {
        check(v, a, root, at);
        return true;
      } catch {
        return false;
      }
    });
    assert.ok(ok, `${at}: no alternative matches ${JSON.stringify(v)}`);
    return;
  }
  if (sc.enum) {
    assert.ok((sc.enum as unknown[]).some((e) => JSON.stringify(e) === JSON.stringify(v)), `${at}: enum`);
  }
  if ("const" in sc) assert.equal(JSON.stringify(v), JSON.stringify(sc.const), `${at}: const`);
  const typeOf = (x: unknown) =>
    x === null ? "null" : Array.isArray(x) ? "array" : Number.isInteger(x) ? "integer" : typeof x;
  if (sc.type) {
    const types = ([] as string[]).concat(sc.type as string[]);
    const t = typeOf(v);
    assert.ok(
      types.includes(t) || (t === "integer" && types.includes("number")),
      `${at}: type ${t} not in ${types}`,
    );
  }
  if (typeof v === "string") {
    const n = [...v].length;
    assert.ok(
      n >= ((sc.minLength as number) ?? 0) && n <= ((sc.maxLength as number) ?? Infinity),
      `${at}: length`,
    );
  }
  if (Array.isArray(v)) {
    assert.ok(
      v.length >= ((sc.minItems as number) ?? 0) && v.length <= ((sc.maxItems as number) ?? Infinity),
    );
    v.forEach((x, i) => check(x, sc.items, root, `${at}[${i}]`));
  }
  if (typeOf(v) === "object" && sc.properties) {
    const props = sc.properties as Record<string, unknown>;
    const keys = Object.keys(v as object);
    for (const r of (sc.required as string[]) ?? []) assert.ok(keys.includes(r), `${at}: required ${r}`);
    const order = Object.keys(props);
    let last = -1;
    for (const k of keys) {
      const i = order.indexOf(k);
      assert.ok(i > last, `${at}: property ${k} is undeclared or out of the schema's order`);
      last = i;
      check((v as Record<string, unknown>)[k], props[k], root, `${at}.${k}`);
    }
  }
}

/** Tokens until EOS, each uniform among the allowed ones. */
function walk(
  spec: GrammarSpec,
  vocab: TokenVocabulary,
  rng: Rng,
  opts: { maxDepth?: number } = {},
): number[] {
  const p = grammarProcessor(spec, vocab, opts);
  let s = p.initial([]);
  const ids: number[] = [];
  for (let n = 0; n < 50_000; n++) {
    const mask = p.masker.mask(s);
    const allowed: number[] = [];
    for (let id = 0; id < vocab.size; id++) if (allows(mask, id)) allowed.push(id);
    assert.ok(allowed.length > 0, `an empty mask after ${JSON.stringify(tiny.decode(ids))}`);
    const id = allowed[Math.floor(rng.next() * allowed.length)];
    if (vocab.eosIds.includes(id)) return ids;
    ids.push(id);
    s = p.advance(s, id);
  }
  throw new Error(`no EOS after 50,000 tokens: ${tiny.decode(ids).slice(0, 200)}...`);
}

function textOf(vocab: TokenVocabulary, ids: number[]): string {
  const bytes = Uint8Array.from(ids.flatMap((id) => [...vocab.bytes(id)!]));
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

/**
 * The tiny tokenizer's first 300 ids (its 256 byte tokens and the first merges): with the full 2,048 a
 * uniform walk closes a string once in ~2,000 tokens, and json_object's strings are unbounded.
 */
const smallVocab: TokenVocabulary = {
  size: tinyVocab.size,
  eosIds: tinyVocab.eosIds,
  bytes: (id) => id < 300 ? tinyVocab.bytes(id) : undefined,
};

const WALK_SCHEMAS: Record<string, unknown>[] = [
  PERSON,
  {
    type: "object",
    properties: {
      kind: { enum: ["point", "line"] },
      at: { type: "array", items: { type: "number" }, minItems: 2, maxItems: 3 },
      label: { anyOf: [{ type: "string", maxLength: 6 }, { type: "null" }] },
      meta: { $ref: "#/$defs/meta" },
    },
    required: ["kind", "at", "meta"],
    additionalProperties: false,
    $defs: {
      meta: {
        type: "object",
        properties: {
          id: { type: "integer" },
          flags: { type: "array", items: { type: "boolean" }, maxItems: 3 },
        },
        required: ["id"],
      },
    },
  },
  { type: "array", items: { type: ["integer", "string"], maxLength: 3 }, maxItems: 4 },
];

Deno.test("grammar: seeded uniform walks over allowed tokens always end in JSON that parses (json_object)", () => {
  const rng = new Rng(20240611);
  let tokens = 0;
  for (let i = 0; i < 24; i++) {
    const ids = walk({ kind: "json_object" }, smallVocab, rng, { maxDepth: 4 });
    tokens += ids.length;
    const text = textOf(smallVocab, ids);
    const v = JSON.parse(text);
    assert.ok(v !== null && typeof v === "object" && !Array.isArray(v), text);
    assert.equal(tiny.decode(ids), text, "tokenBytes agree with decode()");
  }
  assert.ok(tokens > 1000, `the walks wrote ${tokens} tokens`);
});

Deno.test("grammar: seeded uniform walks over the tiny vocabulary satisfy their JSON Schema", () => {
  const rng = new Rng(7);
  for (const s of WALK_SCHEMAS) {
    const seen = new Set<string>();
    for (let i = 0; i < 25; i++) {
      const text = textOf(tinyVocab, walk(schema(s), tinyVocab, rng));
      check(JSON.parse(text), s, s);
      seen.add(text);
    }
    assert.ok(seen.size > 20, "the walks differ");
  }
});
