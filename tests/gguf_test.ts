/**
 * The GGUF reader and ggml dequantizers against the reference implementation (ggml's `gguf` Python
 * package wrote tests/fixtures/gguf/all_types.* with scripts/make_gguf_fixtures.py: every metadata type,
 * one tensor per supported ggml type with random blocks, and its own dequantization of them), and the
 * reader's refusals on files built byte by byte.
 */
import assert from "node:assert/strict";
import { GgufFile } from "../src/model/gguf.ts";
import { dequantize, GGML_TYPES, type GgmlType } from "../src/model/ggml_quants.ts";
import { writeGguf } from "./fixtures/gguf_writer.ts";

const FIX = new URL("./fixtures/gguf/", import.meta.url).pathname;
const ref = JSON.parse(await Deno.readTextFile(`${FIX}all_types.json`));

Deno.test("gguf: metadata of every value type as the reference wrote it", async () => {
  const f = await GgufFile.open(`${FIX}all_types.gguf`);
  try {
    assert.equal(f.version, 3);
    assert.equal(f.alignment, 64);
    for (const [k, v] of Object.entries(ref.metadata as Record<string, unknown>)) {
      if (k === "test.array_nested") continue; // the reference reader flattens nested arrays
      const got = f.value(k);
      if (k === "test.u64") assert.equal(String(got), v, k);
      else if (k === "test.f32") assert.equal(got, Math.fround(v as number), k);
      else assert.deepEqual(got, v, k);
    }
    assert.equal(typeof f.value("test.u64"), "bigint", "u64 beyond 2^53 stays exact");
    assert.deepEqual(f.value("test.array_nested"), [[1, 2], [3]]);
    assert.equal(f.metadata.get("test.array_nested")!.elementType, "array");
    assert.deepEqual(f.strings("test.array_str"), ["a", "", "ünïcode"]);
    assert.deepEqual(f.ints("test.array_i32"), [1, -2, 3]);
    assert.equal(f.uint("test.u32"), 4000000000);
    assert.equal(f.string("test.string"), "héllo, 世界");
    assert.equal(f.bool("test.bool"), true);
    assert.throws(() => f.string("test.u32"), /metadata "test.u32" must be a string, got u32/);
    assert.throws(() => f.uint("test.missing"), /all_types.gguf: metadata "test.missing" is missing/);
  } finally {
    f.close();
  }
});

Deno.test("gguf: every supported type dequantizes exactly as the reference does", async () => {
  const f = await GgufFile.open(`${FIX}all_types.gguf`);
  try {
    const names = Object.keys(ref.tensors);
    assert.equal(names.length, Object.keys(GGML_TYPES).length, "one fixture tensor per supported type");
    for (const name of names) {
      const e = ref.tensors[name];
      const t = f.get(name)!;
      assert.ok(t, name);
      assert.equal(t.type, e.type, name);
      assert.deepEqual(t.shape, e.shape, `${name}: shape in row-major order`);
      assert.equal(t.byteLength, e.byte_length, name);
      assert.equal(t.offset, e.offset, `${name}: absolute offset`);
      const x = await f.readF32(name);
      assert.equal(x.length, e.values.length);
      for (let i = 0; i < x.length; i++) {
        const want = e.values[i];
        // The reference computes in float32 numpy; allow one rounding step of difference.
        assert.ok(
          Math.abs(x[i] - want) <= 1e-6 * Math.max(1, Math.abs(want)),
          `${name} (${e.type}) element ${i}: got ${x[i]}, reference ${want}`,
        );
      }
    }
  } finally {
    f.close();
  }
});

Deno.test("gguf: dequantize checks sizes; hand-computed blocks", () => {
  // Q8_0: d = 0.5 (f16 0x3800), qs = -2, 3, 0 ...
  const q8 = new Uint8Array(34);
  q8[0] = 0x00, q8[1] = 0x38, q8[2] = 0xfe, q8[3] = 3;
  assert.deepEqual(Array.from(dequantize("Q8_0", q8, 32).subarray(0, 3)), [-1, 1.5, 0]);
  // Q4_1: d = 1, m = -8: element 0 = low nibble 0x5 -> -3; element 16 = high nibble 0xa -> 2.
  const q41 = new Uint8Array(20);
  q41.set([0x00, 0x3c, 0x00, 0xc8, 0xa5]);
  const y = dequantize("Q4_1", q41, 32);
  assert.equal(y[0], -3);
  assert.equal(y[16], 2);
  assert.throws(
    () => dequantize("Q4_K" as GgmlType, new Uint8Array(10), 256),
    /Q4_K: 256 elements need 144 bytes/,
  );
  assert.throws(() => dequantize("Q8_0", new Uint8Array(34), 31), /not a whole number of 32-element blocks/);
});

async function refused(bytes: Uint8Array, pattern: RegExp): Promise<void> {
  const path = await Deno.makeTempFile({ suffix: ".gguf" });
  try {
    await Deno.writeFile(path, bytes);
    await assert.rejects(() => GgufFile.open(path), (e: Error) => {
      assert.match(e.message, pattern);
      assert.ok(e.message.startsWith(path), `message names the file: ${e.message}`);
      return true;
    });
  } finally {
    await Deno.remove(path);
  }
}

const f32Tensor = (name: string, offset: number, ne = [8]) => ({ name, ne, type: 0, offset });

Deno.test("gguf: malformed files are refused naming the file, the entry and the numbers", async () => {
  await refused(writeGguf({ magic: 0x46554746 }), /not a GGUF file \(magic 0x46554746/);
  await refused(writeGguf({ version: 1 }), /GGUF version 1 is not supported/);
  await refused(writeGguf({ kvCount: 1n << 40n }), /cannot fit/);
  await refused(
    writeGguf({ kv: [{ key: "a", type: 4, value: 1 }, { key: "a", type: 4, value: 2 }] }),
    /metadata key "a" appears twice/,
  );
  await refused(writeGguf({ kv: [{ key: "a", type: 13, value: 0 }] }), /type of metadata "a" is 13/);
  await refused(writeGguf({ kv: [{ key: "b", type: 7, value: 2 }] }), /"b" is a bool of value 2/);
  await refused(
    writeGguf({ kv: [{ key: "general.alignment", type: 4, value: 48 }] }),
    /general.alignment must be a u32 power of two, got u32 48/,
  );
  await refused(writeGguf({ tensors: [f32Tensor("x", 0)] }), /tensor "x" .* runs past the end/);
  await refused(
    writeGguf({ tensors: [f32Tensor("x", 0), f32Tensor("y", 0)], data: new Uint8Array(64) }),
    /tensors "x" and "y" overlap/,
  );
  await refused(
    writeGguf({ tensors: [f32Tensor("x", 16)], data: new Uint8Array(64) }),
    /offset 16 is not a multiple of the alignment 32/,
  );
  await refused(
    writeGguf({ tensors: [{ name: "q", ne: [256], type: 11, offset: 0 }], data: new Uint8Array(256) }),
    /tensor "q" has ggml type Q3_K \(11\), which this reader does not support/,
  );
  await refused(
    writeGguf({ tensors: [{ name: "r", ne: [48, 2], type: 8, offset: 0 }], data: new Uint8Array(256) }),
    /tensor "r" \(Q8_0, ne = \[48,2\]\) has rows of 48 elements, not whole 32-element blocks/,
  );
  await refused(writeGguf({ tensors: [{ name: "z", ne: [0], type: 0, offset: 0 }] }), /empty dimension/);
  await refused(
    writeGguf({ kv: [{ key: "s", type: 9, elementType: 4, value: new Array(4) }], kvCount: 1 }).subarray(
      0,
      40,
    ),
    /unexpected end of file reading the element type of "s" \(4 bytes at offset 37, file is 40 bytes\)/,
  );
  const bad = writeGguf({ kv: [{ key: "t", type: 8, value: "\u00e9" }] });
  bad.set([0xff, 0xfe], bad.indexOf(0xc3)); // the string's two UTF-8 bytes -> invalid ones
  await refused(bad, /metadata "t" is not valid UTF-8/);
});

Deno.test("gguf: an empty array, a v2 file, tensors read by range, a file changed on disk", async () => {
  const data = new Uint8Array(64);
  new Float32Array(data.buffer).set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
  const bytes = writeGguf({
    version: 2,
    kv: [{ key: "e", type: 9, elementType: 8, value: [] }],
    tensors: [f32Tensor("a", 0), f32Tensor("b", 32)],
    data,
  });
  const path = await Deno.makeTempFile({ suffix: ".gguf" });
  await Deno.writeFile(path, bytes);
  const f = await GgufFile.open(path);
  try {
    assert.equal(f.version, 2);
    assert.deepEqual(f.value("e"), []);
    assert.deepEqual(Array.from(await f.readF32("b")), [9, 10, 11, 12, 13, 14, 15, 16]);
    const [a, b] = await Promise.all([f.readF32("a"), f.readF32("b")]);
    assert.equal(a[0], 1, "concurrent reads do not interleave");
    assert.equal(b[0], 9);
    await assert.rejects(() => f.readRaw("nope"), /no tensor "nope"/);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 8));
    await assert.rejects(() => f.readF32("a"), /the file changed on disk/);
  } finally {
    f.close();
    await Deno.remove(path);
  }
});

const SMOLLM2 = new URL("../weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", import.meta.url).pathname;
const haveSmollm2 = await Deno.stat(SMOLLM2).then(() => true, () => false);

Deno.test({
  name: "gguf: SmolLM2-135M-Instruct (deno task models) opens with its llama metadata and tensor types",
  ignore: !haveSmollm2,
  fn: async () => {
    const f = await GgufFile.open(SMOLLM2);
    try {
      assert.equal(f.string("general.architecture"), "llama");
      assert.equal(f.uint("llama.block_count"), 30);
      assert.equal(f.uint("llama.embedding_length"), 576);
      assert.equal(f.strings("tokenizer.ggml.tokens").length, 49152);
      assert.equal(f.tensors.size, 272);
      const types = new Map<string, number>();
      for (const t of f.tensors.values()) types.set(t.type, (types.get(t.type) ?? 0) + 1);
      assert.deepEqual(Object.fromEntries(types), { Q8_0: 1, F32: 61, Q4_1: 210 });
      const embd = f.get("token_embd.weight")!;
      assert.deepEqual(embd.shape, [49152, 576]);
      const q = await f.readF32("blk.0.attn_q.weight");
      assert.equal(q.length, 576 * 576);
      let sum = 0, sq = 0;
      for (const v of q) {
        assert.ok(Number.isFinite(v));
        sum += v;
        sq += v * v;
      }
      const sd = Math.sqrt(sq / q.length - (sum / q.length) ** 2);
      assert.ok(sd > 0.01 && sd < 1, `trained weights have a plausible spread (sd ${sd})`);
    } finally {
      f.close();
    }
  },
});

Deno.test("gguf: a value straddling the end of the header's first read-ahead chunk is read whole", async () => {
  // The header is fetched from the file in chunks, the first of exactly 1 MiB: a string pads the file so
  // the next entry's value starts 2 bytes before that boundary. Header 24 B; entry 1 = key "p" (8 + 1) +
  // type (4) + string (8 + L); entry 2 = key "v" (8 + 1) + type (4), then its value at 58 + L.
  const L = (1 << 20) - 2 - 58;
  const cases: [number, unknown][] = [[3, -1234], [4, 0xdeadbeef], [6, 0.25], [10, 2n ** 60n], [12, 0.1]];
  for (const [type, value] of cases) {
    const path = await Deno.makeTempFile({ suffix: ".gguf" });
    try {
      await Deno.writeFile(
        path,
        writeGguf({ kv: [{ key: "p", type: 8, value: "x".repeat(L) }, { key: "v", type, value }] }),
      );
      const f = await GgufFile.open(path);
      try {
        assert.equal(f.value("v"), value, `type ${type}`);
      } finally {
        f.close();
      }
    } finally {
      await Deno.remove(path);
    }
  }
});
