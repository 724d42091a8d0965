import assert from "node:assert/strict";
import { ConfigError, parseConfig, ropeInvFreq } from "../src/model/config.ts";
import { SMALL_CONFIG } from "./fixtures/random_model.ts";

function refuses(raw: Record<string, unknown>, ...needles: string[]): void {
  assert.throws(() => parseConfig(raw, "x/config.json"), (e: Error) => {
    assert.ok(e instanceof ConfigError, e.message);
    for (const s of ["x/config.json", ...needles]) {
      assert.ok(e.message.includes(s), `"${e.message}" lacks "${s}"`);
    }
    return true;
  });
}

Deno.test("config: derived sizes of a GQA model", () => {
  const c = parseConfig(SMALL_CONFIG);
  assert.equal(c.headDim, 8);
  assert.equal(c.qDim, 48);
  assert.equal(c.kvDim, 16);
  assert.equal(c.groupSize, 3);
  assert.deepEqual(c.eosTokenIds, [2]);
  assert.deepEqual(c.ropeScaling, { kind: "none" });
});

Deno.test("config: defaults match transformers' LlamaConfig", () => {
  const c = parseConfig({
    vocab_size: 10,
    hidden_size: 8,
    intermediate_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 2,
  });
  assert.equal(c.nKvHeads, 2);
  assert.equal(c.ropeTheta, 10000);
  assert.equal(c.rmsNormEps, 1e-6);
  assert.equal(c.tieWordEmbeddings, false);
  assert.equal(c.maxPositions, 2048);
});

Deno.test("config: explicit head_dim is honoured", () => {
  const c = parseConfig({ ...SMALL_CONFIG, head_dim: 16 });
  assert.equal(c.qDim, 96);
  assert.equal(c.kvDim, 32);
});

Deno.test("config: unsupported architectures and values name the field", () => {
  refuses({ ...SMALL_CONFIG, model_type: "gpt2" }, `"model_type"`, "gpt2");
  refuses({ ...SMALL_CONFIG, architectures: ["GPT2LMHeadModel"] }, `"architectures"`);
  refuses({ ...SMALL_CONFIG, hidden_act: "gelu" }, `"hidden_act"`, "silu");
  refuses({ ...SMALL_CONFIG, num_key_value_heads: 4 }, `"num_key_value_heads"`, "does not divide");
  refuses({ ...SMALL_CONFIG, hidden_size: "48" }, `"hidden_size"`);
  refuses({ ...SMALL_CONFIG, vocab_size: undefined }, `"vocab_size"`);
  refuses(
    { ...SMALL_CONFIG, rope_scaling: { rope_type: "dynamic", factor: 2 } },
    `"rope_scaling"`,
    `"dynamic" is not supported`,
    `"llama3"`,
    `"linear"`,
  );
  refuses(
    { ...SMALL_CONFIG, rope_scaling: { type: "yarn", factor: 4 } },
    `"rope_scaling"`,
    `"yarn"`,
    `"llama3"`,
  );
  refuses({ ...SMALL_CONFIG, rope_scaling: { factor: 4 } }, `"rope_scaling"`, "no rope_type", `"linear"`);
  refuses(
    { ...SMALL_CONFIG, rope_scaling: { rope_type: "llama3", factor: 8 } },
    `"rope_scaling.low_freq_factor"`,
  );
  refuses({ ...SMALL_CONFIG, rope_scaling: { rope_type: "linear", type: "llama3", factor: 2 } }, "disagree");
  refuses({ ...SMALL_CONFIG, attention_bias: true }, `"attention_bias"`);
  refuses({ ...SMALL_CONFIG, sliding_window: 16 }, `"sliding_window"`);
});

Deno.test("config: llama3 rope scaling keeps high frequencies and divides low ones by factor", () => {
  const c = parseConfig({
    ...SMALL_CONFIG,
    hidden_size: 768,
    num_attention_heads: 6,
    num_key_value_heads: 2,
    rope_theta: 500000,
    rope_scaling: {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  });
  assert.equal(c.headDim, 128);
  const inv = ropeInvFreq(c);
  const base = (i: number) => 1 / 500000 ** ((2 * i) / 128);
  // wavelength 2*pi < 8192/4: unchanged.
  assert.equal(inv[0], 1);
  assert.equal(inv[10], base(10));
  // The lowest frequency has wavelength > 8192: divided by 8.
  assert.ok(Math.abs(inv[63] - base(63) / 8) < 1e-18);
  // In between the factor is between 1 and 8, and frequencies stay monotone.
  for (let i = 1; i < 64; i++) assert.ok(inv[i] < inv[i - 1]);
  const mid = inv.findIndex((f, i) => f !== base(i) && Math.abs(f - base(i) / 8) > 1e-18);
  assert.ok(mid > 0, "some frequency is blended");
  assert.ok(inv[mid] < base(mid) && inv[mid] > base(mid) / 8);
});

Deno.test("config: linear rope scaling, and the legacy `type` key, are read", () => {
  assert.deepEqual(
    parseConfig({ ...SMALL_CONFIG, rope_scaling: { type: "linear", factor: 2 } }).ropeScaling,
    {
      kind: "linear",
      factor: 2,
    },
  );
  assert.deepEqual(
    parseConfig({ ...SMALL_CONFIG, rope_scaling: { rope_type: "linear", type: "linear", factor: 3 } })
      .ropeScaling,
    { kind: "linear", factor: 3 },
  );
  assert.deepEqual(parseConfig({ ...SMALL_CONFIG, rope_scaling: null }).ropeScaling, { kind: "none" });
  const inv = ropeInvFreq(parseConfig({ ...SMALL_CONFIG, rope_scaling: { rope_type: "linear", factor: 2 } }));
  assert.equal(inv[0], 0.5);
});

Deno.test("config: rope_theta from transformers 5's rope_parameters; a disagreement is refused", () => {
  const base = { ...SMALL_CONFIG };
  delete (base as Record<string, unknown>).rope_theta;
  assert.equal(
    parseConfig({ ...base, rope_parameters: { rope_theta: 100000, rope_type: "default" } }).ropeTheta,
    100000,
  );
  assert.equal(parseConfig(base).ropeTheta, 10000, "neither: LlamaConfig's default");
  assert.equal(
    parseConfig({ ...base, rope_theta: 5e5, rope_parameters: { rope_theta: 5e5 } }).ropeTheta,
    5e5,
  );
  assert.throws(
    () => parseConfig({ ...base, rope_theta: 1e4, rope_parameters: { rope_theta: 1e5 } }, "d/config.json"),
    /d\/config\.json: field "rope_parameters\.rope_theta": 100000 disagrees with rope_theta 10000/,
  );
});
