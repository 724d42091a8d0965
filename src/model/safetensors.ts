/**
 * A validating, seek-based safetensors reader. Only the header is read up front; each tensor's byte
 * range is read on demand with seek + read, so loading one tensor never reads the whole file (the paged
 * weight loader depends on that). Sharded checkpoints (model.safetensors.index.json) are one
 * {@link SafetensorsModel} over several files.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the data section;
 * offsets are relative to the start of the data section.
 *
 * @module
 */

import { type DType, DTYPE_BYTES, isDType, toF32 } from "./dtype.ts";
import type { TensorStore } from "./tensor_store.ts";

/** The HF reference implementation refuses headers above 100 MB; so do we (a corrupt length is huge). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** One tensor's entry in a safetensors header, with the file it lives in. */
export interface TensorInfo {
  /** Tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute byte offset of the first element in `file`. */
  offset: number;
  byteLength: number;
  /** Path of the .safetensors file holding it. */
  file: string;
}

/** An error in a checkpoint file; the message names the file and, where one is involved, the tensor. */
export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CheckpointError";
  }
}

/** Read exactly `length` bytes at `offset` (into `into` when given), or throw naming the file. */
export async function readRange(
  f: Deno.FsFile,
  path: string,
  offset: number,
  length: number,
  into?: Uint8Array,
): Promise<Uint8Array> {
  const buf = into ?? new Uint8Array(length);
  if (buf.byteLength !== length) {
    throw new RangeError(`${path}: destination of ${buf.byteLength} bytes for a ${length}-byte read`);
  }
  await f.seek(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < length) {
    const n = await f.read(buf.subarray(got));
    if (n === null) {
      throw new CheckpointError(
        `${path}: unexpected end of file reading ${length} bytes at offset ${offset} (got ${got}); ` +
          `was the file truncated or changed on disk?`,
      );
    }
    got += n;
  }
  return buf;
}

/** Open `path` read-only, or throw a {@link CheckpointError} naming it. */
export async function openForReading(path: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(path, { read: true });
  } catch (e) {
    throw new CheckpointError(`${path}: cannot open: ${(e as Error).message}`);
  }
}

/** One open .safetensors file: its validated header and on-demand tensor reads. */
export class SafetensorsFile {
  private constructor(
    /** Path of the file. */
    readonly path: string,
    private readonly file: Deno.FsFile,
    /** Size of the file when it was opened; reads re-check it to catch files changed mid-run. */
    readonly size: number,
    /** Every tensor in the header, by name. */
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    /** The optional `__metadata__` string map. */
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /** Open `path`, read and validate its header. Throws {@link CheckpointError} naming file and tensor. */
  static async open(path: string): Promise<SafetensorsFile> {
    const file = await openForReading(path);
    try {
      const size = (await file.stat()).size;
      if (size < 8) {
        throw new CheckpointError(`${path}: file is ${size} bytes, too short for a safetensors header`);
      }
      const lenBytes = await readRange(file, path, 0, 8);
      const headerLen = Number(new DataView(lenBytes.buffer).getBigUint64(0, true));
      if (headerLen > MAX_HEADER_BYTES) {
        throw new CheckpointError(
          `${path}: header length ${headerLen} exceeds the limit of ${MAX_HEADER_BYTES} bytes (corrupt file?)`,
        );
      }
      if (8 + headerLen > size) {
        throw new CheckpointError(
          `${path}: header length ${headerLen} runs past the end of the ${size}-byte file`,
        );
      }
      const headerBytes = await readRange(file, path, 8, headerLen);
      let header: unknown;
      try {
        header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
      } catch (e) {
        throw new CheckpointError(`${path}: header is not valid UTF-8 JSON: ${(e as Error).message}`);
      }
      if (typeof header !== "object" || header === null || Array.isArray(header)) {
        throw new CheckpointError(`${path}: header must be a JSON object`);
      }
      const dataStart = 8 + headerLen;
      const dataSize = size - dataStart;
      const tensors = new Map<string, TensorInfo>();
      let metadata: Record<string, string> = {};
      for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
        if (name === "__metadata__") {
          metadata = (raw ?? {}) as Record<string, string>;
          continue;
        }
        tensors.set(name, parseEntry(path, name, raw, dataStart, dataSize));
      }
      checkNoOverlap(path, [...tensors.values()]);
      return new SafetensorsFile(path, file, size, tensors, metadata);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Info of tensor `name`, or undefined. */
  get(name: string): TensorInfo | undefined {
    return this.tensors.get(name);
  }

  /**
   * Read the raw bytes of tensor `name` (one seek + read of exactly its byte range), into `into` when
   * given (it must be exactly the tensor's size: the pager reuses one staging buffer per tensor).
   */
  readRaw(name: string, into?: Uint8Array): Promise<Uint8Array> {
    // Reads are serialised per file: each is a seek + read on the one shared handle, and two interleaved
    // reads would get each other's bytes (the pager reads while other code may load tensors).
    const result = this.lock.then(() => this.readRawNow(name, into));
    this.lock = result.then(() => {}, () => {});
    return result;
  }
  private lock: Promise<void> = Promise.resolve();

  private async readRawNow(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const t = this.tensors.get(name);
    if (!t) throw new CheckpointError(`${this.path}: no tensor "${name}"`);
    const now = (await this.file.stat()).size;
    if (now !== this.size) {
      throw new CheckpointError(
        `${this.path}: file changed on disk while in use (was ${this.size} bytes, now ${now}); ` +
          `cannot read tensor "${name}"`,
      );
    }
    try {
      return await readRange(this.file, this.path, t.offset, t.byteLength, into);
    } catch (e) {
      throw new CheckpointError(`${(e as Error).message} (tensor "${name}")`);
    }
  }

  /** Read tensor `name` converted to f32. */
  async readF32(name: string): Promise<Float32Array> {
    return toF32(await this.readRaw(name), this.tensors.get(name)!.dtype);
  }

  /** Close the file handle. */
  close(): void {
    try {
      this.file.close();
    } catch {
      // already closed
    }
  }
}

function parseEntry(
  path: string,
  name: string,
  raw: unknown,
  dataStart: number,
  dataSize: number,
): TensorInfo {
  const where = `${path}: tensor "${name}"`;
  if (typeof raw !== "object" || raw === null) throw new CheckpointError(`${where}: entry must be an object`);
  const { dtype, shape, data_offsets } = raw as Record<string, unknown>;
  if (typeof dtype !== "string") throw new CheckpointError(`${where}: missing dtype`);
  if (!isDType(dtype)) {
    throw new CheckpointError(`${where}: unsupported dtype ${dtype} (supported: F32, F16, BF16)`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new CheckpointError(
      `${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`,
    );
  }
  if (
    !Array.isArray(data_offsets) || data_offsets.length !== 2 ||
    !data_offsets.every((d) => Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new CheckpointError(
      `${where}: data_offsets must be [begin, end], got ${JSON.stringify(data_offsets)}`,
    );
  }
  const [begin, end] = data_offsets as number[];
  if (end < begin) throw new CheckpointError(`${where}: data_offsets [${begin}, ${end}] end before begin`);
  if (end > dataSize) {
    throw new CheckpointError(
      `${where}: data_offsets [${begin}, ${end}] run past the data section (${dataSize} bytes); file truncated?`,
    );
  }
  const count = (shape as number[]).reduce((a, b) => a * b, 1);
  const expected = count * DTYPE_BYTES[dtype];
  if (end - begin !== expected) {
    throw new CheckpointError(
      `${where}: shape [${shape}] x ${dtype} is ${expected} bytes but data_offsets span ${end - begin}`,
    );
  }
  return {
    name,
    dtype,
    shape: shape as number[],
    offset: dataStart + begin,
    byteLength: end - begin,
    file: path,
  };
}

function checkNoOverlap(path: string, ts: TensorInfo[]): void {
  const sorted = [...ts].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (sorted[i].offset < prev.offset + prev.byteLength) {
      throw new CheckpointError(
        `${path}: tensors "${prev.name}" and "${sorted[i].name}" overlap in the data section`,
      );
    }
  }
}

/**
 * All tensors of a checkpoint folder: `model.safetensors`, or the shards listed by
 * `model.safetensors.index.json`, or (fallback) every `*.safetensors` file in the folder.
 */
export class SafetensorsModel implements TensorStore {
  /** A folder's config lives in config.json beside the shards. */
  readonly format = "safetensors";

  private constructor(
    /** Open files, one per shard. */
    readonly files: SafetensorsFile[],
    private readonly index: Map<string, SafetensorsFile>,
  ) {}

  /** Open every shard of the checkpoint in `dir` and cross-check the index. */
  static async open(dir: string): Promise<SafetensorsModel> {
    const indexPath = `${dir}/model.safetensors.index.json`;
    let shardNames: string[];
    let weightMap: Record<string, string> | undefined;
    if (await exists(indexPath)) {
      let idx: { weight_map?: Record<string, string> };
      try {
        idx = JSON.parse(await Deno.readTextFile(indexPath));
      } catch (e) {
        throw new CheckpointError(`${indexPath}: not valid JSON: ${(e as Error).message}`);
      }
      if (!idx.weight_map || typeof idx.weight_map !== "object") {
        throw new CheckpointError(`${indexPath}: missing "weight_map" object`);
      }
      weightMap = idx.weight_map;
      shardNames = [...new Set(Object.values(weightMap))].sort();
      for (const s of shardNames) {
        if (typeof s !== "string" || s.includes("/") || s.includes("\\") || s.startsWith(".")) {
          throw new CheckpointError(`${indexPath}: invalid shard file name ${JSON.stringify(s)}`);
        }
      }
    } else if (await exists(`${dir}/model.safetensors`)) {
      shardNames = ["model.safetensors"];
    } else {
      shardNames = [];
      try {
        for await (const e of Deno.readDir(dir)) {
          if (e.isFile && e.name.endsWith(".safetensors")) shardNames.push(e.name);
        }
      } catch (e) {
        throw new CheckpointError(`${dir}: cannot read model folder: ${(e as Error).message}`);
      }
      shardNames.sort();
      if (shardNames.length === 0) throw new CheckpointError(`${dir}: no *.safetensors files found`);
    }
    const files: SafetensorsFile[] = [];
    try {
      for (const s of shardNames) files.push(await SafetensorsFile.open(`${dir}/${s}`));
      const index = new Map<string, SafetensorsFile>();
      for (const f of files) {
        for (const name of f.tensors.keys()) {
          const other = index.get(name);
          if (other) {
            throw new CheckpointError(`tensor "${name}" appears in both ${other.path} and ${f.path}`);
          }
          index.set(name, f);
        }
      }
      if (weightMap) {
        for (const [name, shard] of Object.entries(weightMap)) {
          const f = index.get(name);
          if (!f) throw new CheckpointError(`${indexPath}: tensor "${name}" is not in ${dir}/${shard}`);
          if (f.path !== `${dir}/${shard}`) {
            throw new CheckpointError(
              `${indexPath}: tensor "${name}" is listed in ${shard} but found in ${f.path}`,
            );
          }
        }
      }
      return new SafetensorsModel(files, index);
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
  }

  /** Tensor info by name, or undefined. */
  get(name: string): TensorInfo | undefined {
    return this.index.get(name)?.get(name);
  }

  /** All tensor names. */
  names(): string[] {
    return [...this.index.keys()];
  }

  /** Raw bytes of `name` (into `into`, exactly the tensor's size, when given). */
  async readRaw(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const f = this.index.get(name);
    if (!f) throw new CheckpointError(`checkpoint has no tensor "${name}"`);
    return await f.readRaw(name, into);
  }

  /** Tensor `name` as f32. */
  async readF32(name: string): Promise<Float32Array> {
    const f = this.index.get(name);
    if (!f) throw new CheckpointError(`checkpoint has no tensor "${name}"`);
    return await f.readF32(name);
  }

  /**
   * Per shard: its file name, size and tensor table (names, dtypes, shapes, offsets): changed weights of
   * the same layout go unnoticed, the price of not hashing gigabytes at startup.
   */
  identity(): string[] {
    return this.files.flatMap((f) => [
      f.path.split("/").pop()!,
      String(f.size),
      JSON.stringify([...f.tensors.values()].map((t) => [t.name, t.dtype, t.shape, t.offset])),
    ]);
  }

  /** Close every shard. */
  close(): void {
    for (const f of this.files) f.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
