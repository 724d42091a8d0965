import assert from "node:assert/strict";
import { CheckpointError, SafetensorsFile, SafetensorsModel } from "../src/model/safetensors.ts";
import { serializeSafetensors } from "../src/model/safetensors_write.ts";
import { toF32 } from "../src/model/dtype.ts";
import { openModelFolder } from "../src/model/folder.ts";
import type { TensorStore } from "../src/model/tensor_store.ts";
import { randomTensors, SMALL_CONFIG, smallConfig, writeModelFolder } from "./fixtures/random_model.ts";

const data = (n: number, k = 1) => Float32Array.from({ length: n }, (_, i) => (i - n / 2) * 0.125 * k);

function tmp(): string {
  return Deno.makeTempDirSync({ prefix: "st_test_" });
}

/** Rewrite the JSON header of a serialized file (keeping the data section) with `edit`. */
// deno-lint-ignore no-explicit-any
function editHeader(bytes: Uint8Array, edit: (h: Record<string, any>) => void): Uint8Array {
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  edit(h);
  const hb = new TextEncoder().encode(JSON.stringify(h));
  const out = new Uint8Array(8 + hb.length + bytes.length - 8 - n);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(bytes.subarray(8 + n), 8 + hb.length);
  return out;
}

async function rejects(p: Promise<unknown>, ...needles: string[]): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(
      e instanceof CheckpointError || e instanceof RangeError,
      `unexpected error type ${e.name}: ${e.message}`,
    );
    for (const s of needles) assert.ok(e.message.includes(s), `message "${e.message}" should mention "${s}"`);
    return true;
  });
}

Deno.test("safetensors: F32/F16/BF16 round trip, exact for representable values", async () => {
  const dir = tmp();
  const path = `${dir}/m.safetensors`;
  await Deno.writeFile(
    path,
    serializeSafetensors({
      a: { dtype: "F32", shape: [3, 5], data: data(15) },
      b: { dtype: "F16", shape: [7], data: data(7) },
      c: { dtype: "BF16", shape: [2, 2, 3], data: data(12) },
    }),
  );
  const f = await SafetensorsFile.open(path);
  assert.deepEqual([...f.tensors.keys()].sort(), ["a", "b", "c"]);
  assert.deepEqual(f.get("c")!.shape, [2, 2, 3]);
  assert.deepEqual(await f.readF32("a"), data(15));
  assert.deepEqual(await f.readF32("b"), data(7));
  assert.deepEqual(await f.readF32("c"), data(12));
  f.close();
});

Deno.test("safetensors: f16 and bf16 special values decode correctly", () => {
  // f16: 1.0, -2.0, 65504 (max), smallest subnormal 2^-24, +inf, 0
  const h = Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x0000);
  assert.deepEqual([...toF32(new Uint8Array(h.buffer), "F16")], [1, -2, 65504, 2 ** -24, Infinity, 0]);
  // bf16: 1.0, -0.5, 3.0
  const b = Uint16Array.of(0x3f80, 0xbf00, 0x4040);
  assert.deepEqual([...toF32(new Uint8Array(b.buffer), "BF16")], [1, -0.5, 3]);
});

Deno.test("safetensors: truncated file names the file and the tensor", async () => {
  const dir = tmp();
  const bytes = serializeSafetensors({
    first: { dtype: "F32", shape: [4], data: data(4) },
    second: { dtype: "F32", shape: [100], data: data(100) },
  });
  const path = `${dir}/trunc.safetensors`;
  await Deno.writeFile(path, bytes.subarray(0, bytes.length - 10));
  await rejects(SafetensorsFile.open(path), path, `"second"`, "truncated");
  await Deno.writeFile(path, bytes.subarray(0, 5));
  await rejects(SafetensorsFile.open(path), path, "too short");
});

Deno.test("safetensors: corrupt headers are refused with the file named", async () => {
  const dir = tmp();
  const path = `${dir}/bad.safetensors`;
  const good = serializeSafetensors({ w: { dtype: "F32", shape: [2, 3], data: data(6) } });
  // Header length far beyond the file and beyond the 100 MB bound.
  const huge = good.slice();
  new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  await Deno.writeFile(path, huge);
  await rejects(SafetensorsFile.open(path), path, "exceeds the limit");
  const past = good.slice();
  new DataView(past.buffer).setBigUint64(0, BigInt(good.length), true);
  await Deno.writeFile(path, past);
  await rejects(SafetensorsFile.open(path), path, "past the end");
  // Not JSON.
  const garbage = good.slice();
  garbage[9] = 0x7b;
  garbage[10] = 0xff;
  await Deno.writeFile(path, garbage);
  await rejects(SafetensorsFile.open(path), path, "not valid UTF-8 JSON");
  // Shape x dtype disagrees with the byte range.
  await Deno.writeFile(path, editHeader(good, (h) => (h.w.shape = [2, 4])));
  await rejects(SafetensorsFile.open(path), path, `"w"`, "shape [2,4] x F32 is 32 bytes");
  // Unsupported dtype.
  await Deno.writeFile(path, editHeader(good, (h) => (h.w.dtype = "I8")));
  await rejects(SafetensorsFile.open(path), path, `"w"`, "unsupported dtype I8");
  // Offsets past the data section.
  await Deno.writeFile(path, editHeader(good, (h) => (h.w.data_offsets = [8, 32])));
  await rejects(SafetensorsFile.open(path), path, `"w"`, "past the data section");
  // Negative / non-integer shape.
  await Deno.writeFile(path, editHeader(good, (h) => (h.w.shape = [-2, 3])));
  await rejects(SafetensorsFile.open(path), path, `"w"`, "non-negative integers");
});

Deno.test("safetensors: overlapping tensors are refused", async () => {
  const dir = tmp();
  const path = `${dir}/overlap.safetensors`;
  const good = serializeSafetensors({
    a: { dtype: "F32", shape: [4], data: data(4) },
    b: { dtype: "F32", shape: [4], data: data(4) },
  });
  await Deno.writeFile(path, editHeader(good, (h) => (h.b.data_offsets = [8, 24])));
  await rejects(SafetensorsFile.open(path), path, `"a"`, `"b"`, "overlap");
});

Deno.test("safetensors: a file changed on disk after opening is detected on read", async () => {
  const dir = tmp();
  const path = `${dir}/m.safetensors`;
  const bytes = serializeSafetensors({ w: { dtype: "F32", shape: [64], data: data(64) } });
  await Deno.writeFile(path, bytes);
  const f = await SafetensorsFile.open(path);
  await Deno.writeFile(path, bytes.subarray(0, bytes.length - 100));
  await rejects(f.readRaw("w"), path, `"w"`, "changed on disk");
  f.close();
});

Deno.test("safetensors: sharded checkpoint via model.safetensors.index.json", async () => {
  const dir = tmp();
  await Deno.writeFile(
    `${dir}/model-00001-of-00002.safetensors`,
    serializeSafetensors({ a: { dtype: "F16", shape: [3], data: data(3) } }),
  );
  await Deno.writeFile(
    `${dir}/model-00002-of-00002.safetensors`,
    serializeSafetensors({ b: { dtype: "BF16", shape: [2, 2], data: data(4) } }),
  );
  const index = {
    metadata: {},
    weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00002-of-00002.safetensors" },
  };
  await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify(index));
  const m = await SafetensorsModel.open(dir);
  assert.deepEqual(m.names().sort(), ["a", "b"]);
  assert.deepEqual(await m.readF32("b"), data(4));
  // As a TensorStore: its config lives beside it, and its identity is per shard name, size, tensor table.
  const st: TensorStore = m;
  assert.equal(st.format, "safetensors");
  const id = st.identity();
  assert.equal(id.length, 6);
  assert.deepEqual([id[0], id[3]], ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
  assert.equal(id[1], String((await Deno.stat(`${dir}/${id[0]}`)).size));
  assert.deepEqual(JSON.parse(id[5]), [["b", "BF16", [2, 2], m.files[1].get("b")!.offset]]);
  m.close();
  // The index claims a tensor lives in a shard that does not have it.
  index.weight_map.b = "model-00001-of-00002.safetensors";
  await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify(index));
  await rejects(SafetensorsModel.open(dir), "model.safetensors.index.json", `"b"`);
  // Path traversal in a shard name.
  await Deno.writeTextFile(
    `${dir}/model.safetensors.index.json`,
    JSON.stringify({ weight_map: { a: "../evil.safetensors" } }),
  );
  await rejects(SafetensorsModel.open(dir), "invalid shard file name");
});

Deno.test("model folder: missing tensors and wrong shapes name the file and tensor", async () => {
  const c = smallConfig();
  const dir = tmp();
  const t = randomTensors(c, 1);
  delete t["model.layers.2.mlp.up_proj.weight"];
  await writeModelFolder(dir, SMALL_CONFIG, t, { withTokenizer: true });
  await rejects(openModelFolder(dir), dir, `"model.layers.2.mlp.up_proj.weight"`, "missing");

  const t2 = randomTensors(c, 1);
  t2["model.layers.1.self_attn.k_proj.weight"] = {
    dtype: "F32",
    shape: [48, 48],
    data: new Float32Array(48 * 48),
  };
  await writeModelFolder(dir, SMALL_CONFIG, t2, { withTokenizer: true });
  await rejects(
    openModelFolder(dir),
    "model.safetensors",
    `"model.layers.1.self_attn.k_proj.weight"`,
    "[48,48]",
    "[16,48]",
  );

  // A config that disagrees with the weights (mismatched files).
  await writeModelFolder(dir, { ...SMALL_CONFIG, hidden_size: 60 }, randomTensors(c, 1), {
    withTokenizer: true,
  });
  await rejects(
    openModelFolder(dir),
    "model.safetensors",
    `"model.embed_tokens.weight"`,
    "[77,48]",
    "[77,60]",
  );
});
