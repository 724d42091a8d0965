/**
 * scripts/make_random_model.ts writes a loadable HF folder (single file or sharded), refuses to overwrite,
 * and the byte-size flags parse the way the usage text says.
 */
import assert from "node:assert/strict";
import { SafetensorsModel } from "../src/model/safetensors.ts";
import { BUNDLED_TOKENIZER_IDS, llamaConfig, makeRandomModel, PRESETS } from "../src/model/random_model.ts";
import { openModelFolder } from "../src/model/folder.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import { formatBytes, parseBytes } from "../src/util/bytes.ts";

const RAW = llamaConfig(PRESETS.test);

for (const shardBytes of [1e9, 100_000]) {
  Deno.test(`make_random_model: ${shardBytes > 1e6 ? "one file" : "sharded"} folder loads and runs`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "random_model_" });
    const bytes = await makeRandomModel(dir, RAW, { dtype: "F16", seed: 5, shardBytes });
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    if (shardBytes > 1e6) {
      assert.ok(files.includes("model.safetensors"));
    } else {
      assert.ok(files.includes("model.safetensors.index.json"));
      assert.ok(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length >= 2);
    }
    const folder = await openModelFolder(dir);
    try {
      const t = folder.checkpoint.get("model.layers.0.mlp.up_proj.weight")!;
      assert.equal(t.dtype, "F16");
      assert.deepEqual(t.shape, [176, 64]);
      const total = folder.checkpoint.names().reduce((a, n) => a + folder.checkpoint.get(n)!.byteLength, 0);
      assert.equal(total, bytes);
      const st = await SafetensorsModel.open(folder.dir);
      assert.match(st.files[0].metadata.generator, /random weights/);
      st.close();
      const m = await loadCpuModel(folder);
      const logits = await m.forward({ tokens: Int32Array.of(1, 5, 9), positions: Int32Array.of(0, 1, 2) });
      assert.equal(logits.length, 3 * 2048);
      assert.ok(logits.every(Number.isFinite));
      // The same seed gives the same weights; another seed others.
      const again = await Deno.makeTempDir();
      await makeRandomModel(again, RAW, { dtype: "F16", seed: 5, shardBytes: 1e9 });
      const other = await Deno.makeTempDir();
      await makeRandomModel(other, RAW, { dtype: "F16", seed: 6, shardBytes: 1e9 });
      const name = "model.layers.1.self_attn.q_proj.weight";
      const a = await folder.checkpoint.readRaw(name);
      const b = await (await openModelFolder(again)).checkpoint.readRaw(name);
      const c = await (await openModelFolder(other)).checkpoint.readRaw(name);
      assert.deepEqual(a, b);
      assert.notDeepEqual(a, c);
    } finally {
      folder.checkpoint.close();
    }
    await assert.rejects(
      () => makeRandomModel(dir, RAW, { dtype: "F16", seed: 5, shardBytes }),
      /not empty; refusing to overwrite/,
    );
  });
}

Deno.test("make_random_model: a vocab below the bundled tokenizer's ids is refused before anything is written", async () => {
  // The constant is the tokenizer's: its largest id is BUNDLED_TOKENIZER_IDS - 1.
  const tok = JSON.parse(
    await Deno.readTextFile(new URL("../weights/tiny/target/tokenizer.json", import.meta.url)),
  );
  const ids = [
    ...Object.values(tok.model.vocab as Record<string, number>),
    ...tok.added_tokens.map((t: { id: number }) => t.id),
  ];
  assert.equal(Math.max(...ids) + 1, BUNDLED_TOKENIZER_IDS);
  const parent = await Deno.makeTempDir({ prefix: "random_model_vocab_" });
  const out = `${parent}/small`;
  const refused = (e: Error) => {
    for (const s of ["--vocab", "1000", "2,048"]) {
      assert.ok(e.message.includes(s), `"${e.message}" lacks "${s}"`);
    }
    return true;
  };
  await assert.rejects(
    () =>
      makeRandomModel(out, llamaConfig({ ...PRESETS.test, vocab_size: 1000 }), {
        dtype: "F16",
        seed: 1,
        shardBytes: 1e9,
      }),
    refused,
  );
  assert.equal(await Deno.stat(out).then(() => true, () => false), false, "nothing written");
  // The script says so too, and exits non-zero.
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../scripts/make_random_model.ts", import.meta.url).pathname,
      "--preset",
      "test",
      "--vocab",
      "1000",
      "--out",
      out,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.notEqual(r.code, 0);
  refused(new Error(new TextDecoder().decode(r.stderr)));
  assert.equal(await Deno.stat(out).then(() => true, () => false), false, "nothing written by the script");
  // Exactly the tokenizer's size is fine.
  await makeRandomModel(out, llamaConfig({ ...PRESETS.test, vocab_size: BUNDLED_TOKENIZER_IDS }), {
    dtype: "F16",
    seed: 1,
    shardBytes: 1e9,
  });
  (await openModelFolder(out)).checkpoint.close();
});

Deno.test("byte sizes: plain, decimal and binary units; errors name the flag", () => {
  assert.equal(parseBytes("--x", "268435456"), 268435456);
  assert.equal(parseBytes("--x", "256MB"), 256e6);
  assert.equal(parseBytes("--x", "256MiB"), 256 * 2 ** 20);
  assert.equal(parseBytes("--x", "1.5GiB"), 1.5 * 2 ** 30);
  assert.equal(parseBytes("--x", "2g"), 2e9);
  assert.equal(parseBytes("--x", "0"), 0);
  assert.throws(() => parseBytes("--gpu-memory-budget", "lots"), /--gpu-memory-budget: expected a byte size/);
  assert.throws(() => parseBytes("--x", "-5MB"), /expected a byte size/);
  assert.throws(() => parseBytes("--x", "5 parsecs"), /expected a byte size/);
  assert.equal(formatBytes(1_409_024), "1.41 MB");
  assert.equal(formatBytes(512), "512 B");
});
