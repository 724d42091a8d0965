/**
 * Opening a model: a Hugging Face Llama-family folder (config.json, *.safetensors, tokenizer.json) or a
 * llama GGUF file (config, tokenizer and tensors in one file): the one code path for the bundled tiny
 * models and for any model a user brings. Both become the same {@link Checkpoint}: a config and a
 * {@link TensorStore} of HF-named tensors, so no backend or surface knows which it was.
 *
 * @module
 */

import { loadConfig, type ModelConfig } from "./config.ts";
import { GgufFile } from "./gguf.ts";
import { ggufConfig } from "./gguf_config.ts";
import { GgufCheckpoint } from "./gguf_checkpoint.ts";
import { CheckpointError, SafetensorsModel } from "./safetensors.ts";
import type { TensorStore } from "./tensor_store.ts";
import { tokenizerFromGguf } from "./gguf_tokenizer.ts";
import { ModelTokenizer } from "./tokenizer.ts";
import { validateCheckpoint } from "./weights.ts";

/** Path of the bundled default target model, resolved against this source file (works when compiled). */
export const DEFAULT_TARGET_DIR = new URL("../../weights/tiny/target", import.meta.url).pathname;
/** Path of the bundled default draft model. */
export const DEFAULT_DRAFT_DIR = new URL("../../weights/tiny/draft", import.meta.url).pathname;

/** A validated config + checkpoint (weights not yet read). */
export interface Checkpoint {
  /** What was opened: the HF folder or the .gguf file (names the model in messages and /v1/models). */
  path: string;
  /**
   * The folder of the model's side files (caches beside the draft, heldout.txt): the HF folder itself,
   * or the folder holding the .gguf file.
   */
  dir: string;
  config: ModelConfig;
  checkpoint: TensorStore;
}

/** An opened, validated model folder: checkpoint and tokenizer. */
export interface ModelFolder extends Checkpoint {
  tokenizer: ModelTokenizer;
}

/** True when `path` names a GGUF model file (by its extension, as llama.cpp's tools name them). */
export function isGgufPath(path: string): boolean {
  return /\.gguf$/i.test(path);
}

/** `path` as a GGUF file, or undefined when it is a folder (or missing: the folder path then says so). */
async function ggufPath(path: string): Promise<string | undefined> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    return isGgufPath(path) ? path : undefined;
  }
  if (info.isDirectory) return undefined;
  if (!isGgufPath(path)) {
    throw new CheckpointError(
      `${path}: not a model: expected a Hugging Face folder (config.json, *.safetensors) or a .gguf file`,
    );
  }
  return path;
}

/** The folder holding `file`. */
function folderOf(file: string): string {
  const slash = file.replace(/\/+$/, "").lastIndexOf("/");
  return slash < 0 ? "." : file.slice(0, slash) || "/";
}

/** Open and validate a GGUF file: metadata -> config, tensors -> HF names, every expected tensor. */
async function openGguf(path: string): Promise<Checkpoint & { gguf: GgufFile }> {
  const gguf = await GgufFile.open(path);
  try {
    const config = ggufConfig(gguf);
    const checkpoint = GgufCheckpoint.fromFile(gguf, config);
    validateCheckpoint(checkpoint, config, path);
    return { path, dir: folderOf(path), config, checkpoint, gguf };
  } catch (e) {
    gguf.close();
    throw e;
  }
}

/**
 * Open and validate a model's config and weights (every expected tensor, with its shape): `path` is an
 * HF folder or a .gguf file.
 */
export async function openCheckpoint(path: string): Promise<Checkpoint> {
  if (await ggufPath(path)) {
    const { gguf: _, ...c } = await openGguf(path);
    return c;
  }
  const dir = path;
  const config = await loadConfig(dir);
  const checkpoint = await SafetensorsModel.open(dir);
  try {
    validateCheckpoint(checkpoint, config, dir);
  } catch (e) {
    checkpoint.close();
    throw e;
  }
  return { path, dir, config, checkpoint };
}

/**
 * Open and validate a model: config, every tensor's presence and shape, tokenizer. `path` is an HF folder
 * (every shard header, tokenizer.json, generation_config.json's EOS ids) or a .gguf file (its metadata).
 */
export async function openModelFolder(path: string): Promise<ModelFolder> {
  if (await ggufPath(path)) {
    const { gguf, ...c } = await openGguf(path);
    try {
      const tokenizer = tokenizerFromGguf(gguf, c.config.eosTokenIds);
      checkVocab(path, tokenizer, c.config, "tokenizer.ggml.tokens", "the vocab size");
      return { ...c, tokenizer };
    } catch (e) {
      c.checkpoint.close();
      throw e;
    }
  }
  const dir = path;
  const { config, checkpoint } = await openCheckpoint(dir);
  try {
    let genEos: number[] = [];
    try {
      const g = JSON.parse(await Deno.readTextFile(`${dir}/generation_config.json`));
      const e = g.eos_token_id;
      genEos = Array.isArray(e) ? e.filter(Number.isInteger) : Number.isInteger(e) ? [e] : [];
    } catch {
      // generation_config.json is optional
    }
    const tokenizer = await ModelTokenizer.load(dir, [...config.eosTokenIds, ...genEos]);
    checkVocab(dir, tokenizer, config, "tokenizer.json", "config.json vocab_size");
    return { path, dir, config, checkpoint, tokenizer };
  } catch (e) {
    checkpoint.close();
    throw e;
  }
}

/**
 * Every token id must have an embedding row; with a vocab map (a pruned draft, whose tokenizer is its
 * target's), a place in the outer vocabulary the map's rows are drawn from.
 */
function checkVocab(where: string, t: ModelTokenizer, c: ModelConfig, tokens: string, vocab: string): void {
  const size = c.vocabMap?.outerVocabSize ?? c.vocabSize;
  if (t.vocabSize > size) {
    const what = c.vocabMap ? "config.json vocab_map.vocab_size" : vocab;
    throw new RangeError(`${where}: ${tokens} has ${t.vocabSize} tokens but ${what} is ${size}`);
  }
}
