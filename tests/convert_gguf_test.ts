/**
 * scripts/convert_gguf.ts: the Q8_0 quantizer follows llama.cpp's rule (hand-picked ties, zeros, negative
 * extremes; and byte for byte against ggml's own `quantize_row_q8_0_ref` when node-llama-cpp's libggml is
 * installed); a GGUF converted to F16 / Q8_0 / F32 opens as the same model (config, tokenizer, tensor names
 * and order, metadata) with values within the type's rounding, F32 -> F32 and Q8_0 -> Q8_0 leave the
 * tensor data byte-identical, the alignment is kept; an HF folder becomes a GGUF of the same tensors,
 * tokenizer and logits; refusals name the file. With tools/llama_cpp installed, llama.cpp loads and runs
 * the converted files (skipped otherwise: CI never needs it).
 */
import assert from "node:assert/strict";
import {
  convert,
  ConvertError,
  encodeTensor,
  LLAMA_FTYPE,
  parseCli,
  permuteRopeRows,
  quantizeQ8_0,
  type TargetType,
} from "../scripts/convert_gguf.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import { f16ToF32Table, f32ToF16Bits } from "../src/model/dtype.ts";
import { openCheckpoint, openModelFolder } from "../src/model/folder.ts";
import { dequantize } from "../src/model/ggml_quants.ts";
import { GgufFile } from "../src/model/gguf.ts";
import { unpermuteRopeRows } from "../src/model/gguf_checkpoint.ts";
import { benchLlamaCpp, isLlamaCppRow } from "../src/bench/llama_cpp.ts";
import { ggufFromHf, llamaCppPermute, type MetaKv, T } from "./fixtures/gguf_model.ts";
import { randomTensors, SMALL_CONFIG, smallConfig, writeModelFolder } from "./fixtures/random_model.ts";
import { maxRelErr } from "./fixtures/numeric.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const FIX = `${ROOT}tests/fixtures/gguf/`;
const TINY = `${ROOT}weights/tiny/target`;

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Run `f` with a fresh temp folder, removed afterwards. */
async function inTemp(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "convert_gguf_" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const quiet = () => {};
const conv = (input: string, output: string, type: TargetType, extra: Record<string, unknown> = {}) =>
  convert({ input, output, type, warn: quiet, ...extra });

/** q of a Q8_0 block as signed ints, and its f16 scale bits. */
function block(bytes: Uint8Array, b: number): { d: number; q: number[] } {
  const o = b * 34;
  return {
    d: bytes[o] | (bytes[o + 1] << 8),
    q: Array.from(bytes.subarray(o + 2, o + 34), (x) => (x << 24) >> 24),
  };
}

/** A 32-element block: `head` then zeros. */
const blk = (head: number[]) => Array.from({ length: 32 }, (_, i) => head[i] ?? 0);

Deno.test("convert_gguf: Q8_0 follows quantize_row_q8_0_ref on hand-picked values", () => {
  const x = Float32Array.from([
    // amax 254 (a negative extreme): d = 2 exactly, id = 0.5; ties round away from zero (roundf).
    ...blk([-254, 253, 5, -5, 3, -3, 1, -1, 0.5, 2, 254]),
    // all zeros: d = 0, id = 0, every q 0.
    ...blk([]),
    // amax 127: d = 1; -0.5 -> -1 (Math.round would give -0), 126.5 -> 127, just under a tie rounds down.
    ...blk([127, -0.5, 126.5, -126.5, 1.4999999, -1.4999999, -0]),
    // d = 1 + 2^-11 is a tie between two f16 values: stored as the even one, 1.0 (0x3c00); d = 1 + 3*2^-11 -> 0x3c02.
    ...blk([127 * (1 + 2 ** -11), -63.5]),
    ...blk([-127 * (1 + 3 * 2 ** -11)]),
    // amax 1e-6: d = 7.9e-9 is below f16's range (stored 0), yet q uses the f32 d: +-127; 0.5e-6 * id is
    // 63.4999.. in f32 (neither value is exact), so 63, not 64 — what ggml's C code gives too.
    ...blk([1e-6, -1e-6, 0.5e-6]),
  ]);
  const bytes = quantizeQ8_0(x);
  assert.equal(bytes.byteLength, 6 * 34);
  assert.deepEqual(block(bytes, 0), { d: 0x4000, q: blk([-127, 127, 3, -3, 2, -2, 1, -1, 0, 1, 127]) });
  assert.deepEqual(block(bytes, 1), { d: 0, q: blk([]) });
  assert.deepEqual(block(bytes, 2), { d: 0x3c00, q: blk([127, -1, 127, -127, 1, -1, 0]) });
  // -63.5 * fround(1 / (1 + 2^-11)) = -63.469 -> -63.
  assert.deepEqual(block(bytes, 3), { d: 0x3c00, q: blk([127, -63]) });
  assert.deepEqual(block(bytes, 4), { d: 0x3c02, q: blk([-127]) });
  assert.deepEqual(block(bytes, 5), { d: 0, q: blk([127, -127, 63]) });
  assert.throws(() => quantizeQ8_0(new Float32Array(33)), /not whole 32-element blocks/);
  // F16: round to nearest, ties to even.
  const f16 = encodeTensor("F16", Float32Array.of(1 + 2 ** -11, 1 + 3 * 2 ** -11, -65520, 2 ** -25));
  assert.deepEqual(Array.from(new Uint16Array(f16.buffer)), [0x3c00, 0x3c02, 0xfc00, 0x0000]);
});

const GGML_LIB =
  `${ROOT}tools/llama_cpp/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so`;
Deno.test({
  name: "convert_gguf: Q8_0 and F16 byte for byte as ggml's own C code (node-llama-cpp's libggml-base)",
  ignore: !(await exists(GGML_LIB)),
  fn: () => {
    const lib = Deno.dlopen(GGML_LIB, {
      quantize_row_q8_0_ref: { parameters: ["buffer", "buffer", "i64"], result: "void" },
      ggml_fp32_to_fp16_row: { parameters: ["buffer", "buffer", "i64"], result: "void" },
    });
    try {
      const n = 32 * 4000;
      const x = new Float32Array(n);
      let s = 7;
      const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
      for (let b = 0; b < n / 32; b++) {
        const kind = b % 4, scale = Math.exp((rnd() - 0.5) * 30);
        for (let i = 0; i < 32; i++) {
          const k = b * 32 + i;
          if (kind === 0) x[k] = (rnd() - 0.5) * scale;
          // Halves on power-of-two scales: exact ties of x * id.
          else if (kind === 1) x[k] = (Math.floor(rnd() * 255) - 127) / 2 * 2 ** Math.floor(rnd() * 10 - 5);
          else if (kind === 2) {
            x[k] = i === 0 ? -scale : (Math.round((rnd() - 0.5) * 254) + 0.5) * scale / 127;
          } else x[k] = rnd() < 0.3 ? 0 : (rnd() - 0.5) * 1e-6 * scale;
        }
      }
      const want = new Uint8Array(n / 32 * 34);
      lib.symbols.quantize_row_q8_0_ref(x, want, BigInt(n));
      assert.deepEqual(quantizeQ8_0(x), want);
      const h = new Uint16Array(n);
      lib.symbols.ggml_fp32_to_fp16_row(x, h, BigInt(n));
      assert.deepEqual(new Uint16Array(encodeTensor("F16", x).buffer), h);
    } finally {
      lib.close();
    }
  },
});

// A small llama model whose rows are whole Q8_0 blocks, with the bundled draft's tokenizer (2048 tokens).
const RAW = {
  ...SMALL_CONFIG,
  vocab_size: 2048,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
};
const TEXT = "And Joseph said unto them, Do not interpretations belong to God? tell me them, I pray you. 42!";

/** tokenizer.ggml.* entries of the bundled draft tokenizer (what a llama.cpp converter writes for it). */
async function tokenizerKv(): Promise<MetaKv[]> {
  const tj = JSON.parse(await Deno.readTextFile(`${ROOT}weights/tiny/draft/tokenizer.json`));
  const tc = JSON.parse(await Deno.readTextFile(`${ROOT}weights/tiny/draft/tokenizer_config.json`));
  const tokens: string[] = [];
  for (const [t, id] of Object.entries(tj.model.vocab as Record<string, number>)) tokens[id] = t;
  const special = new Set((tj.added_tokens as { id: number }[]).map((a) => a.id));
  const kv: MetaKv[] = [
    { key: "tokenizer.ggml.model", type: T.string, value: "gpt2" },
    { key: "tokenizer.ggml.pre", type: T.string, value: "gpt2" },
    { key: "tokenizer.ggml.tokens", type: T.array, elementType: T.string, value: tokens },
    {
      key: "tokenizer.ggml.token_type",
      type: T.array,
      elementType: T.i32,
      value: tokens.map((_, i) => special.has(i) ? 3 : 1),
    },
    {
      key: "tokenizer.ggml.merges",
      type: T.array,
      elementType: T.string,
      value: (tj.model.merges as string[][]).map((m) => m.join(" ")),
    },
    { key: "tokenizer.ggml.add_bos_token", type: T.bool, value: true },
  ];
  if (typeof tc.chat_template === "string") {
    kv.push({ key: "tokenizer.chat_template", type: T.string, value: tc.chat_template });
  }
  return kv;
}

/** A llama GGUF fixture (tests/fixtures/gguf_model.ts' independent writer) with matrices of `type`. */
async function fixture(dir: string, type: "F32" | "F16" | "Q8_0", seed = 5): Promise<string> {
  const path = `${dir}/src.${type}.gguf`;
  const { bytes } = ggufFromHf(RAW, randomTensors(smallConfig(RAW), seed), {
    matrixType: type,
    extraKv: await tokenizerKv(),
  });
  await Deno.writeFile(path, bytes);
  return path;
}

const bigintJson = (v: unknown) => JSON.stringify(v, (_k, x) => typeof x === "bigint" ? `${x}n` : x);

/** Metadata equal except general.file_type, which is the target's ftype. */
function assertSameMetadata(src: GgufFile, out: GgufFile, type: TargetType): void {
  const keys = [...src.metadata.keys()].filter((k) => k !== "general.file_type");
  assert.deepEqual([...out.metadata.keys()].filter((k) => k !== "general.file_type"), keys);
  for (const k of keys) assert.equal(bigintJson(out.metadata.get(k)), bigintJson(src.metadata.get(k)), k);
  assert.deepEqual(out.metadata.get("general.file_type"), { type: "u32", value: LLAMA_FTYPE[type] });
}

/** Every tensor: same name, order and shape; norms F32, the rest `type`; values within its rounding. */
async function assertTensors(src: GgufFile, out: GgufFile, type: TargetType): Promise<void> {
  assert.deepEqual([...out.tensors.keys()], [...src.tensors.keys()]);
  const h = f16ToF32Table();
  for (const s of src.tensors.values()) {
    const o = out.get(s.name)!;
    assert.deepEqual(o.shape, s.shape, s.name);
    assert.equal(o.type, s.shape.length === 1 ? "F32" : type, s.name);
    assert.equal((o.offset - out.dataStart) % out.alignment, 0, `${s.name} offset aligned`);
    const x = await src.readF32(s.name), y = await out.readF32(s.name);
    if (o.type === "F32") {
      assert.deepEqual(y, x, s.name);
    } else if (o.type === "F16") {
      // Exactly the nearest f16, so within half an f16 ulp (2^-11 relative) of the source.
      assert.deepEqual(y, Float32Array.from(f32ToF16Bits(x), (b) => h[b]), s.name);
      for (let i = 0; i < x.length; i++) {
        assert.ok(Math.abs(y[i] - x[i]) <= Math.abs(x[i]) * 2 ** -11 + 2 ** -25, `${s.name}[${i}]`);
      }
    } else {
      assert.deepEqual(y, dequantize("Q8_0", quantizeQ8_0(x), x.length), s.name);
      // Half a step d = amax/127, plus the f16 rounding of d over 127 steps.
      for (let b = 0; b < x.length / 32; b++) {
        let amax = 0;
        for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]));
        for (let i = b * 32; i < b * 32 + 32; i++) {
          assert.ok(
            Math.abs(y[i] - x[i]) <= (amax / 127) * (0.5 + 127 * 2 ** -11) + 1e-30,
            `${s.name}[${i}]`,
          );
        }
      }
    }
  }
}

for (const type of ["F16", "Q8_0"] as const) {
  Deno.test(`convert_gguf: a llama GGUF to ${type} is the same model within ${type}'s rounding`, async () => {
    await inTemp(async (dir) => {
      const src = await fixture(dir, "F32");
      const out = `${dir}/out.${type}.gguf`;
      const r = await conv(src, out, type);
      assert.equal(r.source, "gguf");
      assert.equal(r.bytes, (await Deno.stat(out)).size);
      const a = await openModelFolder(src), b = await openModelFolder(out);
      const fa = await GgufFile.open(src), fb = await GgufFile.open(out);
      try {
        assert.deepEqual(b.config, a.config);
        assert.equal(b.tokenizer.vocabSize, a.tokenizer.vocabSize);
        assert.deepEqual(b.tokenizer.encode(TEXT), a.tokenizer.encode(TEXT));
        const chat = [{ role: "user" as const, content: TEXT }];
        assert.deepEqual(b.tokenizer.encodeChat(chat), a.tokenizer.encodeChat(chat));
        assert.deepEqual(b.checkpoint.names(), a.checkpoint.names());
        assertSameMetadata(fa, fb, type);
        await assertTensors(fa, fb, type);
        // q/k rows stay in the stored (llama.cpp) order: the un-permuted HF rows agree as well.
        const q = "model.layers.1.self_attn.q_proj.weight";
        const xa = await a.checkpoint.readF32(q), xb = await b.checkpoint.readF32(q);
        for (let i = 0; i < xa.length; i++) assert.ok(Math.abs(xa[i] - xb[i]) < 0.02, `${q}[${i}]`);
      } finally {
        for (const m of [a, b]) m.checkpoint.close();
        fa.close();
        fb.close();
      }
    });
  });
}

Deno.test("convert_gguf: F32 -> F32 and Q8_0 -> Q8_0 leave the tensor data byte-identical", async () => {
  await inTemp(async (dir) => {
    for (const type of ["F32", "Q8_0"] as const) {
      const src = await fixture(dir, type);
      const out = `${dir}/out.${type}.gguf`;
      await conv(src, out, type);
      const fa = await GgufFile.open(src), fb = await GgufFile.open(out);
      try {
        for (const t of fa.tensors.values()) {
          assert.deepEqual(await fb.readRaw(t.name), await fa.readRaw(t.name), `${type} ${t.name}`);
        }
        // Same order, same 32-byte padding: the whole data section is the same bytes.
        const [da, db] = [await Deno.readFile(src), await Deno.readFile(out)];
        assert.deepEqual(db.subarray(fb.dataStart), da.subarray(fa.dataStart), type);
        assertSameMetadata(fa, fb, type);
      } finally {
        fa.close();
        fb.close();
      }
    }
  });
});

Deno.test("convert_gguf: every source type, general.alignment 64 and nested metadata kept (all_types.gguf)", async () => {
  await inTemp(async (dir) => {
    const src = await GgufFile.open(`${FIX}all_types.gguf`);
    try {
      assert.equal(src.alignment, 64);
      for (const type of ["F16", "Q8_0", "F32"] as const) {
        const out = `${dir}/all.${type}.gguf`;
        await conv(`${FIX}all_types.gguf`, out, type);
        const f = await GgufFile.open(out);
        try {
          assert.equal(f.alignment, 64);
          assert.equal(f.dataStart % 64, 0);
          assertSameMetadata(src, f, type);
          assert.deepEqual(f.value("test.array_nested"), [[1, 2], [3]]);
          assert.equal(typeof f.value("test.u64"), "bigint");
          await assertTensors(src, f, type);
        } finally {
          f.close();
        }
      }
    } finally {
      src.close();
    }
  });
});

Deno.test("convert_gguf: permuteRopeRows is llama.cpp's permutation and unpermuteRopeRows' inverse", () => {
  const rows = 12, cols = 3, heads = 2;
  const x = Float32Array.from({ length: rows * cols }, (_, i) => i);
  const p = permuteRopeRows(x, rows, heads);
  assert.deepEqual(p, llamaCppPermute(x, rows, cols, heads));
  const back = unpermuteRopeRows(new Uint8Array(p.buffer), rows, heads);
  assert.deepEqual(new Float32Array(back.buffer), x);
});

async function logits(path: string): Promise<Float32Array> {
  const c = await openCheckpoint(path);
  try {
    const ids = [1, 17, 40, 5, 63, 22, 9, 70, 3];
    return await (await loadCpuModel(c)).forward({
      tokens: Int32Array.from(ids),
      positions: Int32Array.from(ids, (_, i) => i),
    });
  } finally {
    c.checkpoint.close();
  }
}

Deno.test("convert_gguf: an HF folder becomes a GGUF of the same tensors, tokenizer and logits", async () => {
  await inTemp(async (dir) => {
    const hf = `${dir}/hf`;
    await writeModelFolder(hf, RAW, randomTensors(smallConfig(RAW), 9), { withTokenizer: true });
    const a = await openModelFolder(hf);
    try {
      for (const type of ["F32", "Q8_0"] as const) {
        const out = `${dir}/hf.${type}.gguf`;
        const r = await conv(hf, out, type);
        assert.equal(r.source, "safetensors");
        const b = await openModelFolder(out);
        try {
          const { rmsNormEps, ...rest } = b.config;
          const { rmsNormEps: eps, ...want } = a.config;
          assert.deepEqual(rest, want);
          assert.equal(rmsNormEps, Math.fround(eps), "stored as f32");
          assert.deepEqual(b.tokenizer.encode(TEXT), a.tokenizer.encode(TEXT));
          assert.equal(
            b.tokenizer.decode(a.tokenizer.encode(TEXT)),
            a.tokenizer.decode(a.tokenizer.encode(TEXT)),
          );
          assert.deepEqual(b.checkpoint.names().sort(), a.checkpoint.names().sort());
          for (const n of a.checkpoint.names()) {
            const x = await a.checkpoint.readF32(n), y = await b.checkpoint.readF32(n);
            // Rows move whole, so quantizing HF rows gives the GGUF's values (q/k permuted and back).
            const want = type === "F32" || a.checkpoint.get(n)!.shape.length === 1
              ? x
              : dequantize("Q8_0", quantizeQ8_0(x), x.length);
            assert.deepEqual(y, want, `${type} ${n}`);
          }
        } finally {
          b.checkpoint.close();
        }
        if (type === "F32") {
          const e = maxRelErr(await logits(out), await logits(hf));
          assert.ok(e < 1e-5, `logits rel err ${e}`);
        }
      }
    } finally {
      a.checkpoint.close();
    }
  });
});

Deno.test("convert_gguf: the bundled tiny target (F16 safetensors) to F16 GGUF is bit-exact, same tokenizer", async () => {
  await inTemp(async (dir) => {
    const out = `${dir}/target.F16.gguf`;
    await conv(TINY, out, "F16");
    const a = await openModelFolder(TINY), b = await openModelFolder(out);
    const f = await GgufFile.open(out);
    try {
      assert.equal(f.get("output.weight")?.type, "F16");
      assert.equal(f.value("tokenizer.ggml.pre"), "gpt-2");
      for (const n of a.checkpoint.names()) {
        assert.deepEqual(await b.checkpoint.readF32(n), await a.checkpoint.readF32(n), n);
      }
      const text = (await Deno.readTextFile(`${ROOT}weights/tiny/heldout.txt`)).slice(0, 20000);
      assert.deepEqual(b.tokenizer.encode(text), a.tokenizer.encode(text));
      assert.deepEqual(b.config.eosTokenIds, a.config.eosTokenIds);
      assert.equal(b.config.bosTokenId, a.config.bosTokenId);
    } finally {
      f.close();
      a.checkpoint.close();
      b.checkpoint.close();
    }
  });
});

Deno.test("convert_gguf: a tied BF16 folder (the bundled draft) drops lm_head, F32 values exact", async () => {
  await inTemp(async (dir) => {
    const draft = `${ROOT}weights/tiny/draft`;
    const out = `${dir}/draft.F32.gguf`;
    await conv(draft, out, "F32");
    const a = await openModelFolder(draft), b = await openModelFolder(out);
    try {
      assert.ok(b.config.tieWordEmbeddings);
      const f = await GgufFile.open(out);
      assert.equal(f.get("output.weight"), undefined);
      assert.equal(f.get("token_embd.weight")?.type, "F32");
      f.close();
      for (const n of a.checkpoint.names().filter((n) => n !== "lm_head.weight")) {
        assert.deepEqual(await b.checkpoint.readF32(n), await a.checkpoint.readF32(n), n);
      }
      assert.deepEqual(b.tokenizer.encode(TEXT), a.tokenizer.encode(TEXT));
    } finally {
      a.checkpoint.close();
      b.checkpoint.close();
    }
  });
});

Deno.test("convert_gguf: refusals name the file; --force replaces; the CLI exits 2 with the message", async () => {
  await inTemp(async (dir) => {
    const src = await fixture(dir, "F32");
    await assert.rejects(conv(`${dir}/nope.gguf`, `${dir}/o.gguf`, "F16"), (e: Error) => {
      assert.ok(e instanceof ConvertError);
      assert.match(e.message, new RegExp(`${dir}/nope.gguf: no such file or folder`));
      return true;
    });
    await assert.rejects(
      conv(src, `${dir}/o.gguf`, "Q4_0" as TargetType),
      /unknown --type "Q4_0" \(supported: F32, F16, Q8_0\)/,
    );
    await assert.rejects(conv(src, `${dir}/o.bin`, "F16"), /o\.bin: the output must be a \.gguf file/);
    await Deno.writeTextFile(`${dir}/o.gguf`, "old");
    await assert.rejects(
      conv(src, `${dir}/o.gguf`, "F16"),
      new RegExp(`${dir}/o.gguf: already exists \\(pass --force`),
    );
    assert.equal(await Deno.readTextFile(`${dir}/o.gguf`), "old", "untouched");
    await conv(src, `${dir}/o.gguf`, "F16", { force: true });
    (await GgufFile.open(`${dir}/o.gguf`)).close();
    // Nothing left behind but the outputs (the temporary file was renamed).
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names.sort(), ["o.gguf", "src.F32.gguf"]);
    // A tokenizer neither reader could share is refused by name.
    const hf = `${dir}/hf`;
    await writeModelFolder(hf, RAW, randomTensors(smallConfig(RAW), 2), { withTokenizer: true });
    const tj = JSON.parse(await Deno.readTextFile(`${hf}/tokenizer.json`));
    tj.normalizer = { type: "NFC" };
    await Deno.writeTextFile(`${hf}/tokenizer.json`, JSON.stringify(tj));
    await assert.rejects(
      conv(hf, `${dir}/hf.gguf`, "F16"),
      /hf\/tokenizer\.json: a normalizer .* is not supported/,
    );

    assert.deepEqual(parseCli(["--in", "a", "--out=b.gguf", "--type", "q8_0", "--force"]), {
      input: "a",
      output: "b.gguf",
      type: "Q8_0",
      force: true,
    });
    assert.throws(() => parseCli(["--in", "a", "--type", "F16"]), /missing --out/);
    assert.throws(() => parseCli(["--in"]), /--in needs a value/);
    const cli = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `${ROOT}scripts/convert_gguf.ts`,
        "--in",
        src,
        "--out",
        `${dir}/o.gguf`,
        "--type",
        "F16",
      ],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(cli.code, 2);
    assert.match(new TextDecoder().decode(cli.stderr), /convert_gguf: .*o\.gguf: already exists/);
  });
});

// llama.cpp through node-llama-cpp (tools/llama_cpp): only where it is installed, never in CI.
const LLAMA_CPP = `${ROOT}tools/llama_cpp`;
const haveLlamaCpp = await exists(`${LLAMA_CPP}/node_modules/node-llama-cpp/package.json`);
const SMOLLM2 = `${ROOT}weights/smollm2/SmolLM2-135M-Instruct`;

async function referenceMjs(args: string[]): Promise<Record<string, unknown>> {
  const out = await new Deno.Command(Deno.env.get("NODE") ?? "node", {
    args: [`${LLAMA_CPP}/reference.mjs`, "--backends", "cpu", "--threads", "1", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr).slice(-2000));
  const b = JSON.parse(new TextDecoder().decode(out.stdout)).backends[0];
  assert.ok(!b.error, b.error);
  return b;
}

Deno.test({
  name:
    "convert_gguf (llama.cpp): the tiny target as F16 GGUF decodes the golden tokens; gpt-2 tokenizes as HF",
  ignore: !haveLlamaCpp,
  fn: async () => {
    await inTemp(async (dir) => {
      const out = `${dir}/target.F16.gguf`;
      // llama.cpp's own name of GPT-2's regex, the default (this engine reads it like "gpt2").
      await conv(TINY, out, "F16", { pre: "gpt-2" });
      const golden = JSON.parse(await Deno.readTextFile(`${ROOT}weights/tiny/golden.json`));
      const tiny = await openModelFolder(TINY);
      const held = await Deno.readTextFile(`${ROOT}weights/tiny/heldout.txt`);
      const texts = [
        TEXT,
        "It's (x) ... ?! 3.14 don't—you'll",
        held.slice(0, 3000),
        held.slice(40000, 43000),
      ];
      const prompts = {
        prompts: [
          ...golden.cases.map((c: { prompt: string; prompt_ids: number[]; target: number[] }, i: number) => ({
            name: `case${i}`,
            ids: c.prompt_ids,
            generated_ids: c.target,
          })),
          // node-llama-cpp's tokenize() adds no BOS: compare with the engine's ids without one.
          ...texts.map((text, i) => ({
            name: `text${i}`,
            text,
            ids: tiny.tokenizer.encode(text, { addBos: false }),
          })),
        ],
      };
      tiny.checkpoint.close();
      await Deno.writeTextFile(`${dir}/prompts.json`, JSON.stringify(prompts));
      const b = await referenceMjs([
        "--model",
        out,
        "--prompts",
        `${dir}/prompts.json`,
        "--greedy",
        "32",
        "--bench-tokens",
        "0",
      ]) as {
        tokenization: { name: string; matches: boolean }[];
        comparison: { tokensAgreed: number; tokensCompared: number };
      };
      assert.equal(b.tokenization.length, texts.length);
      for (const t of b.tokenization) {
        assert.ok(t.matches, `llama.cpp tokenizes ${t.name} as the engine does`);
      }
      // F16 weights exactly as the folder's: llama.cpp's greedy follows the float64 reference (ties aside).
      const c = b.comparison;
      assert.ok(c.tokensAgreed >= 0.9 * c.tokensCompared, `${c.tokensAgreed} / ${c.tokensCompared} agree`);
    });
  },
});

for (const type of ["F16", "Q8_0"] as const) {
  Deno.test({
    name: `convert_gguf (llama.cpp): node-llama-cpp loads and decodes the converted SmolLM2 ${type}`,
    ignore: !haveLlamaCpp || !(await exists(`${SMOLLM2}.Q4_1.gguf`)),
    fn: async () => {
      // Converted here from the fetched Q4_1 file (~2 s), so a clean checkout tests it too.
      await inTemp(async (dir) => {
        const out = `${dir}/SmolLM2.${type}.gguf`;
        await conv(`${SMOLLM2}.Q4_1.gguf`, out, type);
        const r = await benchLlamaCpp({ backend: "cpu", threads: 1, model: out, tokens: 8, runs: 1 });
        assert.ok(isLlamaCppRow(r), JSON.stringify(r));
        assert.ok(r.tokPerS > 0);
      });
    },
  });
}
