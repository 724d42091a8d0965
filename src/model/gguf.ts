/**
 * A validating, seek-based GGUF reader (versions 2 and 3). Only the header — metadata and tensor
 * infos — is read up front; each tensor's bytes are read on demand by byte range, so loading one tensor
 * never reads the whole file.
 *
 * Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata
 * (string key, u32 value type, value), the tensor infos (string name, u32 n_dims, u64 ne[n_dims] with
 * ne[0] the fastest-varying, u32 ggml type, u64 offset), padding to `general.alignment` (default 32),
 * then the data section; tensor offsets are relative to it and multiples of the alignment. Strings are
 * u64 length + UTF-8 bytes; arrays are u32 element type + u64 count + elements (arrays may nest).
 *
 * Checks: magic, version, counts bounded by the file size, every value type, UTF-8, duplicate keys and
 * names, alignment a power of two, dims >= 1, whole blocks per row, offsets aligned and inside the file,
 * no two tensors overlapping, element count x type size = byte length. Errors are
 * {@link CheckpointError}s naming the file, the key or tensor, and the numbers.
 *
 * @module
 */

import { CheckpointError, openForReading, readRange } from "./safetensors.ts";
import {
  dequantize,
  GGML_TYPES,
  ggmlByteLength,
  type GgmlType,
  ggmlTypeById,
  ggmlTypeName,
} from "./ggml_quants.ts";

/** A metadata value: integers as numbers (bigint beyond 2^53), strings, booleans, nested arrays. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** GGUF metadata value types, by id. */
const VALUE_TYPES = [
  "u8",
  "i8",
  "u16",
  "i16",
  "u32",
  "i32",
  "f32",
  "bool",
  "string",
  "array",
  "u64",
  "i64",
  "f64",
] as const;
/** A metadata value type name. */
export type GgufValueType = typeof VALUE_TYPES[number];

/** One metadata entry. */
export interface GgufEntry {
  type: GgufValueType;
  /** For arrays: the element type (the outermost one for nested arrays). */
  elementType?: GgufValueType;
  value: GgufValue;
}

/** One tensor's info. */
export interface GgufTensorInfo {
  name: string;
  type: GgmlType;
  /** Dimensions in row-major (PyTorch / Hugging Face) order: GGUF's ne reversed, e.g. [rows, cols]. */
  shape: number[];
  /** Elements. */
  count: number;
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
}

/** The largest header this reader accepts (a corrupt count would otherwise allocate without bound). */
export const MAX_GGUF_HEADER_BYTES = 512 * 1024 * 1024;
const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32

/** Sequential reads over the header, fetched from the file in growing chunks. */
class HeaderCursor {
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  /** Absolute file offset of the next byte. */
  pos = 0;

  constructor(private readonly file: Deno.FsFile, private readonly path: string, readonly size: number) {}

  /** Make bytes [pos, pos + n) available (reading ahead), or throw naming what was being read. */
  private async need(n: number, what: string): Promise<void> {
    if (this.pos + n > this.size) {
      throw new CheckpointError(
        `${this.path}: unexpected end of file reading ${what} (${n} bytes at offset ${this.pos}, file is ${this.size} bytes)`,
      );
    }
    if (this.pos + n <= this.buf.byteLength) return;
    if (this.pos + n > MAX_GGUF_HEADER_BYTES) {
      throw new CheckpointError(
        `${this.path}: header exceeds the limit of ${MAX_GGUF_HEADER_BYTES} bytes reading ${what} (corrupt count?)`,
      );
    }
    const want = Math.min(this.size, Math.max(this.pos + n, 2 * this.buf.byteLength, 1 << 20));
    const next = new Uint8Array(want);
    next.set(this.buf);
    await this.file.seek(this.buf.byteLength, Deno.SeekMode.Start);
    let got = this.buf.byteLength;
    while (got < want) {
      const r = await this.file.read(next.subarray(got));
      if (r === null) break;
      got += r;
    }
    if (got < this.pos + n) {
      throw new CheckpointError(`${this.path}: file ended while reading ${what} (changed on disk?)`);
    }
    this.buf = next.subarray(0, got);
    this.view = new DataView(this.buf.buffer, 0, got);
  }

  async u32(what: string): Promise<number> {
    await this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A u64 that must be a safe integer (counts, lengths, dims, offsets). */
  async u64(what: string): Promise<number> {
    await this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new CheckpointError(`${this.path}: ${what} is ${v}, beyond any file this reader can hold`);
    }
    return Number(v);
  }

  async string(what: string): Promise<string> {
    const len = await this.u64(`${what} length`);
    await this.need(len, what);
    const bytes = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new CheckpointError(`${this.path}: ${what} is not valid UTF-8`);
    }
  }

  /** One value of `type` (arrays recursively). */
  async value(type: GgufValueType, what: string): Promise<GgufValue> {
    // `need` may replace the buffer and its view: read through the view it leaves, never an earlier one.
    const fixed = async (n: number, get: (v: DataView, o: number) => GgufValue) => {
      await this.need(n, what);
      const x = get(this.view, this.pos);
      this.pos += n;
      return x;
    };
    switch (type) {
      case "u8":
        return await fixed(1, (v, o) => v.getUint8(o));
      case "i8":
        return await fixed(1, (v, o) => v.getInt8(o));
      case "u16":
        return await fixed(2, (v, o) => v.getUint16(o, true));
      case "i16":
        return await fixed(2, (v, o) => v.getInt16(o, true));
      case "u32":
        return await fixed(4, (v, o) => v.getUint32(o, true));
      case "i32":
        return await fixed(4, (v, o) => v.getInt32(o, true));
      case "f32":
        return await fixed(4, (v, o) => v.getFloat32(o, true));
      case "f64":
        return await fixed(8, (v, o) => v.getFloat64(o, true));
      case "bool": {
        const b = await fixed(1, (v, o) => v.getUint8(o));
        if (b !== 0 && b !== 1) throw new CheckpointError(`${this.path}: ${what} is a bool of value ${b}`);
        return b === 1;
      }
      case "u64":
      case "i64": {
        const big = await fixed(
          8,
          (v, o) => type === "u64" ? v.getBigUint64(o, true) : v.getBigInt64(o, true),
        ) as bigint;
        const safe = big <= BigInt(Number.MAX_SAFE_INTEGER) && big >= BigInt(Number.MIN_SAFE_INTEGER);
        return safe ? Number(big) : big;
      }
      case "string":
        return await this.string(what);
      case "array": {
        const et = await this.valueType(`${what} element type`);
        const n = await this.u64(`${what} length`);
        // Every element takes at least one byte: a count beyond the file is corrupt, not a huge array.
        if (n > this.size - this.pos) {
          throw new CheckpointError(
            `${this.path}: ${what} claims ${n} elements but only ${this.size - this.pos} bytes remain`,
          );
        }
        const out: GgufValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = await this.value(et, what);
        return out;
      }
    }
  }

  /** The value type id at the cursor, without moving it (an array's element type). */
  async peekValueType(what: string): Promise<GgufValueType> {
    const t = await this.valueType(what);
    this.pos -= 4;
    return t;
  }

  async valueType(what: string): Promise<GgufValueType> {
    const id = await this.u32(what);
    const t = VALUE_TYPES[id];
    if (t === undefined) {
      throw new CheckpointError(
        `${this.path}: ${what} is ${id}, not a GGUF value type (0..${VALUE_TYPES.length - 1})`,
      );
    }
    return t;
  }
}

/** An open GGUF file: validated metadata and tensor infos, tensors read on demand. */
export class GgufFile {
  private reads: Promise<unknown> = Promise.resolve();

  private constructor(
    /** Path of the file. */
    readonly path: string,
    private readonly file: Deno.FsFile,
    /** Size when opened; reads re-check it to catch a file changed mid-run. */
    readonly size: number,
    readonly version: number,
    /** Data-section alignment (general.alignment, default 32). */
    readonly alignment: number,
    /** Absolute offset of the data section. */
    readonly dataStart: number,
    /** Every metadata entry, by key, in file order. */
    readonly metadata: ReadonlyMap<string, GgufEntry>,
    /** Every tensor, by name, in file order. */
    readonly tensors: ReadonlyMap<string, GgufTensorInfo>,
  ) {}

  /** Open and validate `path`. Throws {@link CheckpointError} naming the file and the entry. */
  static async open(path: string): Promise<GgufFile> {
    const file = await openForReading(path);
    try {
      const size = (await file.stat()).size;
      const c = new HeaderCursor(file, path, size);
      const magic = await c.u32("the magic number");
      if (magic !== MAGIC) {
        throw new CheckpointError(
          `${path}: not a GGUF file (magic 0x${magic.toString(16).padStart(8, "0")}, expected "GGUF")`,
        );
      }
      const version = await c.u32("the version");
      if (version !== 2 && version !== 3) {
        throw new CheckpointError(`${path}: GGUF version ${version} is not supported (2 and 3 are)`);
      }
      const nTensors = await c.u64("the tensor count");
      const nKv = await c.u64("the metadata count");
      // A tensor info takes >= 28 bytes, a metadata entry >= 13: bound the counts by the file.
      if (nTensors * 28 + nKv * 13 > size) {
        throw new CheckpointError(
          `${path}: ${nTensors} tensors and ${nKv} metadata entries cannot fit in ${size} bytes (corrupt header?)`,
        );
      }
      const metadata = new Map<string, GgufEntry>();
      for (let i = 0; i < nKv; i++) {
        const key = await c.string(`metadata key ${i}`);
        if (metadata.has(key)) throw new CheckpointError(`${path}: metadata key "${key}" appears twice`);
        const type = await c.valueType(`the type of metadata "${key}"`);
        const elementType = type === "array"
          ? await c.peekValueType(`the element type of "${key}"`)
          : undefined;
        const value = await c.value(type, `metadata "${key}"`);
        metadata.set(key, elementType ? { type, elementType, value } : { type, value });
      }
      const alignEntry = metadata.get("general.alignment");
      let alignment = 32;
      if (alignEntry) {
        const a = alignEntry.value;
        if (alignEntry.type !== "u32" || typeof a !== "number" || a < 1 || (a & (a - 1)) !== 0) {
          throw new CheckpointError(
            `${path}: general.alignment must be a u32 power of two, got ${alignEntry.type} ${String(a)}`,
          );
        }
        alignment = a;
      }
      const infos: { name: string; ne: number[]; typeId: number; rel: number }[] = [];
      const seen = new Set<string>();
      for (let i = 0; i < nTensors; i++) {
        const name = await c.string(`tensor name ${i}`);
        if (seen.has(name)) throw new CheckpointError(`${path}: tensor "${name}" appears twice`);
        seen.add(name);
        const nDims = await c.u32(`the dimension count of tensor "${name}"`);
        if (nDims < 1 || nDims > 4) {
          throw new CheckpointError(`${path}: tensor "${name}" has ${nDims} dimensions (1..4 allowed)`);
        }
        const ne: number[] = [];
        for (let d = 0; d < nDims; d++) ne.push(await c.u64(`dimension ${d} of tensor "${name}"`));
        if (ne.some((x) => x < 1)) {
          throw new CheckpointError(`${path}: tensor "${name}" has an empty dimension (ne = [${ne}])`);
        }
        const typeId = await c.u32(`the type of tensor "${name}"`);
        const rel = await c.u64(`the offset of tensor "${name}"`);
        infos.push({ name, ne, typeId, rel });
      }
      const dataStart = Math.ceil(c.pos / alignment) * alignment;
      const tensors = new Map<string, GgufTensorInfo>();
      for (const { name, ne, typeId, rel } of infos) {
        const type = ggmlTypeById(typeId);
        if (!type) {
          throw new CheckpointError(
            `${path}: tensor "${name}" has ggml type ${ggmlTypeName(typeId)}, which this reader does not ` +
              `support (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)`,
          );
        }
        const count = ne.reduce((a, b) => a * b, 1);
        if (!Number.isSafeInteger(count)) throw new CheckpointError(`${path}: tensor "${name}" is too large`);
        const block = GGML_TYPES[type].blockSize;
        if (ne[0] % block !== 0) {
          throw new CheckpointError(
            `${path}: tensor "${name}" (${type}, ne = [${ne}]) has rows of ${ne[0]} elements, not whole ` +
              `${block}-element blocks`,
          );
        }
        const byteLength = ggmlByteLength(type, count);
        if (rel % alignment !== 0) {
          throw new CheckpointError(
            `${path}: tensor "${name}" offset ${rel} is not a multiple of the alignment ${alignment}`,
          );
        }
        const offset = dataStart + rel;
        if (offset + byteLength > size) {
          throw new CheckpointError(
            `${path}: tensor "${name}" (${type}, ${count} elements = ${byteLength} bytes at data offset ${rel}) ` +
              `runs past the end of the ${size}-byte file (truncated?)`,
          );
        }
        tensors.set(name, { name, type, shape: [...ne].reverse(), count, offset, byteLength });
      }
      const sorted = [...tensors.values()].sort((a, b) => a.offset - b.offset);
      for (let i = 1; i < sorted.length; i++) {
        const prev = sorted[i - 1];
        if (sorted[i].offset < prev.offset + prev.byteLength) {
          throw new CheckpointError(`${path}: tensors "${prev.name}" and "${sorted[i].name}" overlap`);
        }
      }
      return new GgufFile(path, file, size, version, alignment, dataStart, metadata, tensors);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** A metadata entry's value, or undefined. */
  value(key: string): GgufValue | undefined {
    return this.metadata.get(key)?.value;
  }

  /** A required string. */
  string(key: string): string {
    return this.typed(key, "a string", (e) => e.type === "string") as string;
  }

  /** A required non-negative integer (any integer type). */
  uint(key: string): number {
    const v = this.typed(key, "an unsigned integer", (e) => INTS.has(e.type) && typeof e.value === "number");
    if ((v as number) < 0) {
      throw new CheckpointError(`${this.path}: metadata "${key}" is ${v}, expected >= 0`);
    }
    return v as number;
  }

  /** A required number (integer or float). */
  number(key: string): number {
    return this.typed(key, "a number", (e) => typeof e.value === "number") as number;
  }

  /** A required boolean. */
  bool(key: string): boolean {
    return this.typed(key, "a bool", (e) => e.type === "bool") as boolean;
  }

  /** A required array of strings. */
  strings(key: string): string[] {
    return this.typed(
      key,
      "an array of strings",
      (e) => e.type === "array" && e.elementType === "string",
    ) as string[];
  }

  /** A required array of integers. */
  ints(key: string): number[] {
    return this.typed(
      key,
      "an array of integers",
      (e) =>
        e.type === "array" && INTS.has(e.elementType!) &&
        (e.value as GgufValue[]).every((x) => typeof x === "number"),
    ) as number[];
  }

  private typed(key: string, what: string, ok: (e: GgufEntry) => boolean): GgufValue {
    const e = this.metadata.get(key);
    if (!e) throw new CheckpointError(`${this.path}: metadata "${key}" is missing`);
    if (!ok(e)) {
      throw new CheckpointError(
        `${this.path}: metadata "${key}" must be ${what}, got ${e.type}${
          e.elementType ? ` of ${e.elementType}` : ""
        }`,
      );
    }
    return e.value;
  }

  /** Info of tensor `name`, or undefined. */
  get(name: string): GgufTensorInfo | undefined {
    return this.tensors.get(name);
  }

  /** Raw bytes of tensor `name` (one seek + read; reads on this file are serialised). */
  readRaw(name: string): Promise<Uint8Array> {
    const t = this.tensors.get(name);
    if (!t) return Promise.reject(new CheckpointError(`${this.path}: no tensor "${name}"`));
    // Concurrent seek + read pairs on one handle would interleave and return each other's bytes.
    const run = this.reads.then(() => this.readRange(t));
    this.reads = run.catch(() => {});
    return run;
  }

  /** Tensor `name` dequantized to f32, in row-major order. */
  async readF32(name: string): Promise<Float32Array> {
    const t = this.tensors.get(name);
    if (!t) throw new CheckpointError(`${this.path}: no tensor "${name}"`);
    return dequantize(t.type, await this.readRaw(name), t.count);
  }

  private async readRange(t: GgufTensorInfo): Promise<Uint8Array> {
    const size = (await this.file.stat()).size;
    if (size !== this.size) {
      throw new CheckpointError(
        `${this.path}: the file changed on disk (${this.size} bytes when opened, now ${size}); reading tensor "${t.name}"`,
      );
    }
    return await readRange(this.file, this.path, t.offset, t.byteLength);
  }

  /** Close the file. */
  close(): void {
    try {
      this.file.close();
    } catch {
      // already closed
    }
  }
}

const INTS = new Set<GgufValueType>(["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"]);
