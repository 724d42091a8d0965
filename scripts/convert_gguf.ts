/**
 * Convert a llama model to a GGUF file of one element type, so llama.cpp (node-llama-cpp,
 * tools/llama_cpp/) and this engine read the very same file:
 *
 *   deno run -A scripts/convert_gguf.ts --in PATH --out FILE.gguf --type F16|Q8_0|F32 [--force] [--pre NAME]
 *
 * `--in` is a GGUF file or a Hugging Face safetensors folder (config.json, *.safetensors,
 * tokenizer.json, optionally tokenizer_config.json and generation_config.json).
 *
 * From a GGUF: every metadata entry is copied byte for byte (nested arrays included), except
 * `general.file_type`, set to the new type's llama.cpp ftype (F32 = 0, F16 = 1, Q8_0 = 7; added when
 * absent). Tensors keep their names, their order and their stored (GGUF) row order — q/k rows stay in
 * llama.cpp's RoPE order, nothing is un-permuted: each is dequantized to its exact f32 values
 * (ggml_quants.ts, the values ggml computes with) and re-encoded: 1-D tensors (norms) as F32, every
 * other tensor in the target type.
 *
 * From a safetensors folder: a llama GGUF as llama.cpp's convert_hf_to_gguf.py writes one — the
 * `llama.*` hyper-parameters from config.json, the byte-level BPE tokenizer of tokenizer.json as
 * `tokenizer.ggml.*` (tokens padded to the vocab size with `[PADn]` unused tokens, token types from the
 * added tokens: special = control, other = user-defined), the chat template of tokenizer_config.json,
 * tensors renamed HF -> GGUF (gguf_checkpoint.ts) with llama.cpp's q/k row permutation applied (HF row
 * h*hd + j goes to GGUF row ropeSourceRow's inverse, so GgufCheckpoint's un-permutation gives the HF rows
 * back). Only tokenizers this engine and llama.cpp both read are written: model BPE, no normalizer, no
 * byte fallback, a ByteLevel pre-tokenizer with GPT-2's regex (optionally after single-digit splitting,
 * "smollm"); anything else is refused by name. The pre-tokenizer name (`tokenizer.ggml.pre`) for the
 * plain GPT-2 regex is "default" unless `--pre` says otherwise (see {@link GPT2_PRE_DEFAULT}).
 *
 * Encodings (as llama.cpp's): F16 = round-to-nearest-even of the f32 value; Q8_0 = ggml-quants.c
 * `quantize_row_q8_0_ref` in f32 arithmetic — per 32-element block amax = max|x|, d = amax / 127,
 * id = d ? 1/d : 0, q = roundf(x * id) (ties away from zero), d stored as f16 (round-to-nearest-even);
 * q uses the f32 d, not the stored f16 one. A tensor whose rows are not whole 32-element blocks falls
 * back to F16 for Q8_0 (as convert_hf_to_gguf.py does), with a warning.
 *
 * Layout: GGUF v3; the data section and every tensor offset are multiples of `general.alignment` (the
 * source's, default 32), each tensor padded with zeros to it. The output is written to a temporary file
 * beside it and renamed into place; an existing output is refused unless `--force`.
 *
 * @module
 */

import { loadConfig, type ModelConfig } from "../src/model/config.ts";
import { f32ToF16Bits } from "../src/model/dtype.ts";
import { GGML_TYPES, ggmlByteLength, quantizeQ8_0 } from "../src/model/ggml_quants.ts";
import { GgufFile, type GgufValueType } from "../src/model/gguf.ts";
import { GGUF_GLOBAL_NAMES, GGUF_LAYER_NAMES, ropeSourceRow } from "../src/model/gguf_checkpoint.ts";
import { SafetensorsModel } from "../src/model/safetensors.ts";
import { llamaTensorSpec, specTensors, validateCheckpoint } from "../src/model/weights.ts";

/** The element types this converter writes. */
export const TARGET_TYPES = ["F32", "F16", "Q8_0"] as const;
/** A target element type. */
export type TargetType = typeof TARGET_TYPES[number];

/** llama.cpp's `llama_ftype` of a file whose matrices are all of the type (general.file_type). */
export const LLAMA_FTYPE: Readonly<Record<TargetType, number>> = { F32: 0, F16: 1, Q8_0: 7 };

/**
 * `tokenizer.ggml.pre` written for a plain GPT-2 ByteLevel pre-tokenizer: llama.cpp's name for GPT-2's
 * regex, which this engine's reader (gguf_tokenizer.ts) also reads as GPT-2's regex ("default" would be
 * read by llama.cpp as its default BPE regexes, which split `'s` and ` (` differently).
 */
export const GPT2_PRE_DEFAULT = "gpt-2";

/** A conversion that cannot be done; the message names the file. */
export class ConvertError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConvertError";
  }
}

// ---------------------------------------------------------------------------------------------------
// Encoders

export { quantizeQ8_0 };

/** `x` encoded as `type` (F32 bytes as they are, F16 round-to-nearest-even, Q8_0 as ggml). */
export function encodeTensor(type: TargetType, x: Float32Array): Uint8Array {
  switch (type) {
    case "F32":
      return new Uint8Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength));
    case "F16":
      return new Uint8Array(f32ToF16Bits(x).buffer);
    case "Q8_0":
      return quantizeQ8_0(x);
  }
}

// ---------------------------------------------------------------------------------------------------
// GGUF serialization

const VALUE_TYPE_IDS: Record<GgufValueType, number> = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
};
const FIXED_SIZE: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  10: 8,
  11: 8,
  12: 8,
};

/** Little-endian byte builder. */
class Bytes {
  private parts: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array): void {
    this.parts.push(b);
    this.length += b.byteLength;
  }
  private fixed(n: number, set: (v: DataView) => void): void {
    const b = new Uint8Array(n);
    set(new DataView(b.buffer));
    this.push(b);
  }
  u32(v: number): void {
    this.fixed(4, (d) => d.setUint32(0, v, true));
  }
  u64(v: number | bigint): void {
    this.fixed(8, (d) => d.setBigUint64(0, BigInt(v), true));
  }
  str(s: string): void {
    const e = new TextEncoder().encode(s);
    this.u64(e.byteLength);
    this.push(e);
  }
  /** One scalar of `type`. */
  scalar(type: GgufValueType, v: unknown): void {
    switch (type) {
      case "u8":
        return this.push(Uint8Array.of(v as number));
      case "i8":
        return this.fixed(1, (d) => d.setInt8(0, v as number));
      case "u16":
        return this.fixed(2, (d) => d.setUint16(0, v as number, true));
      case "i16":
        return this.fixed(2, (d) => d.setInt16(0, v as number, true));
      case "u32":
        return this.u32(v as number);
      case "i32":
        return this.fixed(4, (d) => d.setInt32(0, v as number, true));
      case "f32":
        return this.fixed(4, (d) => d.setFloat32(0, v as number, true));
      case "bool":
        return this.push(Uint8Array.of(v ? 1 : 0));
      case "string":
        return this.str(v as string);
      case "u64":
        return this.u64(v as number | bigint);
      case "i64":
        return this.fixed(8, (d) => d.setBigInt64(0, BigInt(v as number | bigint), true));
      case "f64":
        return this.fixed(8, (d) => d.setFloat64(0, v as number, true));
      case "array":
        throw new RangeError("nested arrays are copied, not built");
    }
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return out;
  }
}

/** A metadata entry built here: a scalar, or an array of scalars. */
type NewKv = { key: string; type: Exclude<GgufValueType, "array">; value: unknown } | {
  key: string;
  type: "array";
  elementType: Exclude<GgufValueType, "array">;
  value: unknown[];
};

/** Serialize a metadata entry (key, type id, value). */
function kvBytes(e: NewKv): Uint8Array {
  const w = new Bytes();
  w.str(e.key);
  w.u32(VALUE_TYPE_IDS[e.type]);
  if (e.type === "array") {
    w.u32(VALUE_TYPE_IDS[e.elementType]);
    w.u64(e.value.length);
    for (const x of e.value) w.scalar(e.elementType, x);
  } else w.scalar(e.type, e.value);
  return w.bytes();
}

/**
 * Every metadata entry of `f` as its exact bytes in the file (key, type, value), by key: the header is
 * walked again (GgufFile.open has validated it), so entries are copied without re-encoding them.
 */
async function rawMetadata(f: GgufFile): Promise<Map<string, Uint8Array>> {
  const file = await Deno.open(f.path, { read: true });
  const head = new Uint8Array(f.dataStart);
  try {
    let got = 0;
    while (got < head.byteLength) {
      const n = await file.read(head.subarray(got));
      if (n === null) throw new ConvertError(`${f.path}: file ended inside the header (changed on disk?)`);
      got += n;
    }
  } finally {
    file.close();
  }
  const v = new DataView(head.buffer);
  const dec = new TextDecoder();
  let pos = 16; // magic, version, tensor count
  const nKv = Number(v.getBigUint64(pos, true));
  pos += 8;
  const skipValue = (type: number): void => {
    const fixed = FIXED_SIZE[type];
    if (fixed !== undefined) pos += fixed;
    else if (type === 8) pos += 8 + Number(v.getBigUint64(pos, true));
    else if (type === 9) {
      const et = v.getUint32(pos, true), n = Number(v.getBigUint64(pos + 4, true));
      pos += 12;
      if (FIXED_SIZE[et] !== undefined) pos += n * FIXED_SIZE[et];
      else for (let i = 0; i < n; i++) skipValue(et);
    } else throw new ConvertError(`${f.path}: metadata value type ${type} at offset ${pos}`);
  };
  const out = new Map<string, Uint8Array>();
  for (let i = 0; i < nKv; i++) {
    const start = pos;
    const len = Number(v.getBigUint64(pos, true));
    const key = dec.decode(head.subarray(pos + 8, pos + 8 + len));
    pos += 8 + len;
    const type = v.getUint32(pos, true);
    pos += 4;
    skipValue(type);
    out.set(key, head.slice(start, pos));
  }
  if (out.size !== f.metadata.size) {
    throw new ConvertError(
      `${f.path}: ${out.size} metadata entries walked, the reader found ${f.metadata.size}`,
    );
  }
  return out;
}

/** One tensor to write: GGUF name and ne (fastest-varying first), element type, its f32 values on demand. */
interface OutTensor {
  name: string;
  ne: number[];
  type: TargetType;
  values: () => Promise<Float32Array>;
}

/** What a conversion writes: metadata entries (serialized), the alignment, and the tensors. */
interface Plan {
  kv: Uint8Array[];
  alignment: number;
  tensors: OutTensor[];
}

/** The type a tensor of `ne` gets for target `type`: norms F32, Q8_0 only for rows of whole blocks. */
function tensorType(name: string, ne: number[], type: TargetType, warn: (s: string) => void): TargetType {
  if (ne.length === 1) return "F32";
  if (type === "Q8_0" && ne[0] % GGML_TYPES.Q8_0.blockSize !== 0) {
    warn(`tensor "${name}" has rows of ${ne[0]} elements, not whole 32-element blocks: written as F16`);
    return "F16";
  }
  return type;
}

const ceilTo = (n: number, a: number) => Math.ceil(n / a) * a;

/** Write all of `b` to `f`. */
async function writeAll(f: Deno.FsFile, b: Uint8Array): Promise<void> {
  let at = 0;
  while (at < b.byteLength) at += await f.write(b.subarray(at));
}

/**
 * Write `plan` as GGUF v3 to `out` through a temporary file beside it, renamed into place once complete
 * (removed on failure). Returns the file size.
 */
async function writePlan(plan: Plan, out: string): Promise<number> {
  const { alignment } = plan;
  const offsets: number[] = [];
  let rel = 0;
  for (const t of plan.tensors) {
    offsets.push(rel);
    rel = ceilTo(rel + ggmlByteLength(t.type, t.ne.reduce((a, b) => a * b, 1)), alignment);
  }
  const h = new Bytes();
  h.u32(0x46554747); // "GGUF"
  h.u32(3);
  h.u64(plan.tensors.length);
  h.u64(plan.kv.length);
  for (const kv of plan.kv) h.push(kv);
  plan.tensors.forEach((t, i) => {
    h.str(t.name);
    h.u32(t.ne.length);
    for (const x of t.ne) h.u64(x);
    h.u32(GGML_TYPES[t.type].id);
    h.u64(offsets[i]);
  });
  h.push(new Uint8Array(ceilTo(h.length, alignment) - h.length));
  const header = h.bytes();

  const slash = out.lastIndexOf("/");
  const dir = slash < 0 ? "." : out.slice(0, slash) || "/";
  const tmp = `${dir}/.${out.slice(slash + 1)}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const file = await Deno.open(tmp, { write: true, createNew: true });
  let done = false;
  try {
    await writeAll(file, header);
    let at = 0;
    for (let i = 0; i < plan.tensors.length; i++) {
      const t = plan.tensors[i];
      const x = await t.values();
      const count = t.ne.reduce((a, b) => a * b, 1);
      if (x.length !== count) {
        throw new ConvertError(`tensor "${t.name}": ${x.length} values for ne = [${t.ne}]`);
      }
      const bytes = encodeTensor(t.type, x);
      await writeAll(file, bytes);
      at = offsets[i] + bytes.byteLength;
      const next = i + 1 < offsets.length ? offsets[i + 1] : rel;
      if (next > at) await writeAll(file, new Uint8Array(next - at));
    }
    await file.sync();
    file.close();
    done = true;
    await Deno.rename(tmp, out);
    return header.byteLength + rel;
  } catch (e) {
    if (!done) file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------
// GGUF -> GGUF

async function planFromGguf(path: string, type: TargetType, warn: (s: string) => void) {
  const f = await GgufFile.open(path);
  let raw: Map<string, Uint8Array>;
  try {
    raw = await rawMetadata(f);
  } catch (e) {
    f.close();
    throw e;
  }
  const fileType = kvBytes({ key: "general.file_type", type: "u32", value: LLAMA_FTYPE[type] });
  const kv = [...f.metadata.keys()].map((k) => k === "general.file_type" ? fileType : raw.get(k)!);
  if (!f.metadata.has("general.file_type")) kv.push(fileType);
  const tensors: OutTensor[] = [...f.tensors.values()].map((t) => {
    const ne = [...t.shape].reverse();
    return { name: t.name, ne, type: tensorType(t.name, ne, type, warn), values: () => f.readF32(t.name) };
  });
  return { plan: { kv, alignment: f.alignment, tensors }, close: () => f.close() };
}

// ---------------------------------------------------------------------------------------------------
// Hugging Face folder -> GGUF

/** GGUF token types (llama.cpp's llama_token_type). */
const TOKEN_TYPE = { normal: 1, control: 3, userDefined: 4, unused: 5 } as const;

type Json = Record<string, unknown>;

async function readJson(path: string, optional = false): Promise<Json | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (optional && e instanceof Deno.errors.NotFound) return undefined;
    throw new ConvertError(`${path}: cannot read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConvertError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
}

/** True for ByteLevel with GPT-2's regex and no prefix space. */
function isGpt2ByteLevel(p: unknown): boolean {
  const o = p as Json | null;
  return !!o && o.type === "ByteLevel" && o.add_prefix_space !== true && o.use_regex !== false;
}

/** The llama.cpp pre-tokenizer name of tokenizer.json's `pre_tokenizer`, or a refusal naming the file. */
function preTokenizerName(where: string, pre: unknown, gpt2Name: string): string {
  if (isGpt2ByteLevel(pre)) return gpt2Name;
  const o = pre as Json | null;
  const seq = o?.type === "Sequence" ? o.pretokenizers as Json[] | undefined : undefined;
  if (
    seq?.length === 2 && seq[0]?.type === "Digits" && seq[0].individual_digits === true &&
    isGpt2ByteLevel(seq[1])
  ) return "smollm";
  throw new ConvertError(
    `${where}: pre_tokenizer ${JSON.stringify(pre)} has no GGUF name both llama.cpp and this engine read ` +
      `(supported: ByteLevel with GPT-2's regex, optionally after Digits(individual_digits))`,
  );
}

/** A tokenizer_config.json token field ("<s>" or {content: "<s>"}) as its text. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") {
    return (v as Json).content as string;
  }
  return undefined;
}

/** `tokenizer.ggml.*` and `tokenizer.chat_template` of an HF folder's tokenizer. */
async function tokenizerKv(
  dir: string,
  config: ModelConfig,
  pre: string | undefined,
  warn: (s: string) => void,
): Promise<NewKv[]> {
  const where = `${dir}/tokenizer.json`;
  const tj = (await readJson(where))!;
  const tc = (await readJson(`${dir}/tokenizer_config.json`, true)) ?? {};
  const gen = (await readJson(`${dir}/generation_config.json`, true)) ?? {};
  const model = tj.model as Json | undefined;
  if (!model || model.type !== "BPE") {
    throw new ConvertError(
      `${where}: model type ${JSON.stringify(model?.type)} is not supported (only "BPE")`,
    );
  }
  if (tj.normalizer != null) {
    throw new ConvertError(`${where}: a normalizer (${JSON.stringify(tj.normalizer)}) is not supported`);
  }
  if (model.byte_fallback === true || model.continuing_subword_prefix || model.end_of_word_suffix) {
    throw new ConvertError(
      `${where}: BPE with byte_fallback / continuing_subword_prefix / end_of_word_suffix is not supported`,
    );
  }
  const decoder = tj.decoder as Json | null | undefined;
  if (decoder && decoder.type !== "ByteLevel") {
    throw new ConvertError(
      `${where}: decoder ${JSON.stringify(decoder.type)} is not supported (only ByteLevel)`,
    );
  }
  const preName = preTokenizerName(where, tj.pre_tokenizer, pre ?? GPT2_PRE_DEFAULT);

  const byId = new Map<number, string>();
  const put = (id: number, t: string) => {
    const old = byId.get(id);
    if (old !== undefined && old !== t) {
      throw new ConvertError(`${where}: id ${id} is both ${JSON.stringify(old)} and ${JSON.stringify(t)}`);
    }
    byId.set(id, t);
  };
  for (const [t, id] of Object.entries((model.vocab ?? {}) as Record<string, number>)) put(id, t);
  const added = (tj.added_tokens ?? []) as { id: number; content: string; special?: boolean }[];
  for (const a of added) put(a.id, a.content);
  const maxId = Math.max(-1, ...byId.keys());
  if (maxId >= config.vocabSize) {
    throw new ConvertError(
      `${where}: token id ${maxId} is beyond config.json vocab_size ${config.vocabSize} (no embedding row)`,
    );
  }
  const tokens: string[] = [];
  const types: number[] = [];
  const specialById = new Map(added.map((a) => [a.id, a.special === true]));
  let padded = 0;
  for (let id = 0; id < config.vocabSize; id++) {
    const t = byId.get(id);
    if (t === undefined) {
      tokens.push(`[PAD${id}]`);
      types.push(TOKEN_TYPE.unused);
      padded++;
      continue;
    }
    tokens.push(t);
    const special = specialById.get(id);
    types.push(
      special === undefined ? TOKEN_TYPE.normal : special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined,
    );
  }
  if (padded) warn(`${where}: ${padded} ids without a token, written as unused "[PADn]" tokens`);
  const merges = ((model.merges ?? []) as (string | string[])[]).map((m) =>
    Array.isArray(m) ? m.join(" ") : m
  );

  const idOf = (text: string | undefined) => {
    if (text === undefined) return undefined;
    const i = tokens.indexOf(text);
    return i < 0 ? undefined : i;
  };
  const bos = idOf(tokenText(tc.bos_token)) ?? config.bosTokenId ?? undefined;
  const genEos = gen.eos_token_id;
  const eos = [
    ...new Set([
      ...[idOf(tokenText(tc.eos_token))].filter((x) => x !== undefined),
      ...config.eosTokenIds,
      ...(Array.isArray(genEos) ? genEos : typeof genEos === "number" ? [genEos] : []),
    ]),
  ] as number[];
  const kv: NewKv[] = [
    { key: "tokenizer.ggml.model", type: "string", value: "gpt2" },
    { key: "tokenizer.ggml.pre", type: "string", value: preName },
    { key: "tokenizer.ggml.tokens", type: "array", elementType: "string", value: tokens },
    { key: "tokenizer.ggml.token_type", type: "array", elementType: "i32", value: types },
    { key: "tokenizer.ggml.merges", type: "array", elementType: "string", value: merges },
  ];
  const u32 = (key: string, value: number | undefined) => {
    if (value !== undefined) kv.push({ key: `tokenizer.ggml.${key}`, type: "u32", value });
  };
  u32("bos_token_id", bos);
  // Both readers end a generation at eos, eot and eom.
  u32("eos_token_id", eos[0]);
  u32("eot_token_id", eos[1]);
  u32("eom_token_id", eos[2]);
  if (eos.length > 3) warn(`${dir}: end-of-generation ids ${eos.slice(3)} have no GGUF key and are dropped`);
  u32("unknown_token_id", idOf(tokenText(tc.unk_token)) ?? idOf(model.unk_token as string | undefined));
  u32("padding_token_id", idOf(tokenText(tc.pad_token)));
  // This engine's folder reader adds a BOS unless add_bos_token is false: the same rule, written down.
  const addBos = typeof tc.add_bos_token === "boolean" ? tc.add_bos_token : bos !== undefined;
  kv.push({ key: "tokenizer.ggml.add_bos_token", type: "bool", value: addBos });
  if (typeof tc.add_eos_token === "boolean") {
    kv.push({ key: "tokenizer.ggml.add_eos_token", type: "bool", value: tc.add_eos_token });
  }
  if (typeof tc.chat_template === "string") {
    kv.push({ key: "tokenizer.chat_template", type: "string", value: tc.chat_template });
  } else if (tc.chat_template !== undefined) {
    warn(`${dir}/tokenizer_config.json: a chat_template that is not one string is not written`);
  }
  return kv;
}

/** The GGUF name of HF tensor `name`. */
function ggufName(name: string): string {
  const g = GGUF_GLOBAL_NAMES[name];
  if (g) return g;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  const rest = m && GGUF_LAYER_NAMES[m[2]];
  if (!rest) throw new ConvertError(`tensor "${name}" has no GGUF name`);
  return `blk.${m[1]}.${rest}`;
}

/**
 * llama.cpp's q/k permutation (convert_hf_to_gguf.py `permute`): GGUF row ropeSourceRow(r) takes HF row
 * r, the inverse of gguf_checkpoint.ts `unpermuteRopeRows`.
 */
export function permuteRopeRows(x: Float32Array, rows: number, heads: number): Float32Array {
  const cols = x.length / rows, headDim = rows / heads;
  if (!Number.isInteger(cols) || !Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new RangeError(`cannot split ${rows} rows of ${x.length} values into ${heads} heads of even size`);
  }
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    out.set(x.subarray(r * cols, (r + 1) * cols), ropeSourceRow(r, headDim) * cols);
  }
  return out;
}

async function planFromFolder(
  dir: string,
  type: TargetType,
  pre: string | undefined,
  warn: (s: string) => void,
) {
  const raw = (await readJson(`${dir}/config.json`))!;
  const config = await loadConfig(dir);
  if (config.ropeScaling.kind === "llama3") {
    throw new ConvertError(
      `${dir}/config.json: llama3 rope scaling needs a rope_freqs.weight tensor, which this engine's GGUF reader refuses`,
    );
  }
  const st = await SafetensorsModel.open(dir);
  try {
    validateCheckpoint(st, config, dir);
    const spec = llamaTensorSpec(config);
    const wanted = new Set(specTensors(spec).map((t) => t.name));
    for (const n of st.names()) {
      if (
        wanted.has(n) || n.endsWith(".rotary_emb.inv_freq") ||
        (n === "lm_head.weight" && config.tieWordEmbeddings)
      ) {
        continue;
      }
      throw new ConvertError(`${dir}: tensor "${n}" has no place in a llama GGUF`);
    }
    const name = typeof raw._name_or_path === "string" && raw._name_or_path
      ? raw._name_or_path.split("/").pop()!
      : dir.replace(/\/+$/, "").split("/").pop()!;
    const L = (k: string) => `llama.${k}`;
    const kv: NewKv[] = [
      { key: "general.architecture", type: "string", value: "llama" },
      { key: "general.type", type: "string", value: "model" },
      { key: "general.name", type: "string", value: name },
      { key: L("block_count"), type: "u32", value: config.nLayers },
      { key: L("context_length"), type: "u32", value: config.maxPositions },
      { key: L("embedding_length"), type: "u32", value: config.hiddenSize },
      { key: L("feed_forward_length"), type: "u32", value: config.intermediateSize },
      { key: L("attention.head_count"), type: "u32", value: config.nHeads },
      { key: L("attention.head_count_kv"), type: "u32", value: config.nKvHeads },
      { key: L("rope.freq_base"), type: "f32", value: config.ropeTheta },
      { key: L("attention.layer_norm_rms_epsilon"), type: "f32", value: config.rmsNormEps },
    ];
    if (typeof raw.head_dim === "number") {
      kv.push({ key: L("attention.key_length"), type: "u32", value: config.headDim });
      kv.push({ key: L("attention.value_length"), type: "u32", value: config.headDim });
    }
    kv.push(
      { key: "general.file_type", type: "u32", value: LLAMA_FTYPE[type] },
      { key: L("vocab_size"), type: "u32", value: config.vocabSize },
      { key: L("rope.dimension_count"), type: "u32", value: config.headDim },
    );
    if (config.ropeScaling.kind === "linear") {
      kv.push({ key: L("rope.scaling.type"), type: "string", value: "linear" });
      kv.push({ key: L("rope.scaling.factor"), type: "f32", value: config.ropeScaling.factor });
    }
    kv.push({ key: "general.quantization_version", type: "u32", value: 2 });
    kv.push(...await tokenizerKv(dir, config, pre, warn));

    const { embed, finalNorm, lmHead } = spec.global;
    const order = [
      embed,
      ...spec.layers.flatMap((l) => Object.values(l)),
      finalNorm,
      ...(lmHead ? [lmHead] : []),
    ];
    const tensors: OutTensor[] = order.map((t) => {
      const ne = [...t.shape].reverse();
      const heads = t.name.endsWith("self_attn.q_proj.weight")
        ? config.nHeads
        : t.name.endsWith("self_attn.k_proj.weight")
        ? config.nKvHeads
        : undefined;
      const gname = ggufName(t.name);
      return {
        name: gname,
        ne,
        type: tensorType(gname, ne, type, warn),
        values: async () => {
          const x = await st.readF32(t.name);
          return heads === undefined ? x : permuteRopeRows(x, t.shape[0], heads);
        },
      };
    });
    return { plan: { kv: kv.map(kvBytes), alignment: 32, tensors }, close: () => st.close() };
  } catch (e) {
    st.close();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------
// Entry points

/** Options of {@link convert}. */
export interface ConvertOptions {
  /** A .gguf file or a Hugging Face safetensors folder. */
  input: string;
  /** The .gguf file to write. */
  output: string;
  type: TargetType;
  /** Replace an existing output. */
  force?: boolean;
  /** `tokenizer.ggml.pre` for a GPT-2 ByteLevel tokenizer (folders only; default {@link GPT2_PRE_DEFAULT}). */
  pre?: string;
  /** Where warnings go (stderr). */
  warn?: (message: string) => void;
}

/** What {@link convert} wrote. */
export interface ConvertResult {
  output: string;
  bytes: number;
  /** Tensors written, by element type. */
  types: Partial<Record<TargetType, number>>;
  source: "gguf" | "safetensors";
}

/** Convert `o.input` to `o.output` (see the module doc). Throws a {@link ConvertError} naming the file. */
export async function convert(o: ConvertOptions): Promise<ConvertResult> {
  const warn = o.warn ?? ((s: string) => console.error(`convert_gguf: warning: ${s}`));
  if (!(TARGET_TYPES as readonly string[]).includes(o.type)) {
    throw new ConvertError(
      `unknown --type ${JSON.stringify(o.type)} (supported: ${TARGET_TYPES.join(", ")})`,
    );
  }
  if (!/\.gguf$/i.test(o.output)) {
    throw new ConvertError(`${o.output}: the output must be a .gguf file (readers go by the extension)`);
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(o.input);
  } catch {
    throw new ConvertError(`${o.input}: no such file or folder (the input model)`);
  }
  if (!o.force) {
    let exists = true;
    try {
      await Deno.lstat(o.output);
    } catch {
      exists = false;
    }
    if (exists) throw new ConvertError(`${o.output}: already exists (pass --force to replace it)`);
  }
  const slash = o.output.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(o.output.slice(0, slash), { recursive: true });
  const source = info.isDirectory ? "safetensors" : "gguf";
  const { plan, close } = info.isDirectory
    ? await planFromFolder(o.input.replace(/\/+$/, ""), o.type, o.pre, warn)
    : await planFromGguf(o.input, o.type, warn);
  try {
    const bytes = await writePlan(plan, o.output);
    const types: Partial<Record<TargetType, number>> = {};
    for (const t of plan.tensors) types[t.type] = (types[t.type] ?? 0) + 1;
    return { output: o.output, bytes, types, source };
  } finally {
    close();
  }
}

const USAGE =
  "usage: deno run -A scripts/convert_gguf.ts --in PATH --out FILE.gguf --type F16|Q8_0|F32 [--force] [--pre NAME]";

/** Parse the command line; throws a {@link ConvertError} with the usage for a malformed one. */
export function parseCli(args: string[]): ConvertOptions {
  const o: Partial<ConvertOptions> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const [flag, inline] = a.startsWith("--") && a.includes("=")
      ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
      : [a, undefined];
    const value = () => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new ConvertError(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    if (flag === "--in") o.input = value();
    else if (flag === "--out") o.output = value();
    else if (flag === "--type") o.type = value().toUpperCase() as TargetType;
    else if (flag === "--pre") o.pre = value();
    else if (flag === "--force") o.force = true;
    else throw new ConvertError(`unknown argument ${JSON.stringify(a)}\n${USAGE}`);
  }
  for (const k of ["input", "output", "type"] as const) {
    if (!o[k]) {
      throw new ConvertError(`missing --${k === "input" ? "in" : k === "output" ? "out" : "type"}\n${USAGE}`);
    }
  }
  return o as ConvertOptions;
}

if (import.meta.main) {
  if (Deno.args.includes("-h") || Deno.args.includes("--help")) {
    console.log(USAGE);
    Deno.exit(0);
  }
  try {
    const t0 = performance.now();
    const r = await convert(parseCli(Deno.args));
    const types = Object.entries(r.types).map(([t, n]) => `${n} ${t}`).join(", ");
    console.log(
      `wrote ${r.output} (${r.bytes} bytes; tensors: ${types}; from ${r.source}) in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s`,
    );
  } catch (e) {
    console.error(`convert_gguf: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(e instanceof ConvertError ? 2 : 1);
  }
}
