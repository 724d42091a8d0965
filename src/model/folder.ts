/**
 * Opening a Hugging Face Llama-family folder (config.json, *.safetensors, tokenizer.json): the one code
 * path for the bundled tiny models and for any model a user brings.
 *
 * @module
 */

import { loadConfig, type ModelConfig } from "./config.ts";
import { SafetensorsModel } from "./safetensors.ts";
import { ModelTokenizer } from "./tokenizer.ts";
import { validateCheckpoint } from "./weights.ts";

/** Path of the bundled default target model, resolved against this source file (works when compiled). */
export const DEFAULT_TARGET_DIR = new URL("../../weights/tiny/target", import.meta.url).pathname;
/** Path of the bundled default draft model. */
export const DEFAULT_DRAFT_DIR = new URL("../../weights/tiny/draft", import.meta.url).pathname;

/** A validated config + checkpoint (weights not yet read). */
export interface Checkpoint {
  dir: string;
  config: ModelConfig;
  checkpoint: SafetensorsModel;
}

/** An opened, validated model folder: checkpoint and tokenizer. */
export interface ModelFolder extends Checkpoint {
  tokenizer: ModelTokenizer;
}

/** Open and validate config.json and the weights of `dir` (every expected tensor, with its shape). */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const config = await loadConfig(dir);
  const checkpoint = await SafetensorsModel.open(dir);
  try {
    validateCheckpoint(checkpoint, config, dir);
  } catch (e) {
    checkpoint.close();
    throw e;
  }
  return { dir, config, checkpoint };
}

/** Open and validate `dir`: config, every shard header, every expected tensor's presence and shape, tokenizer. */
export async function openModelFolder(dir: string): Promise<ModelFolder> {
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
    if (tokenizer.vocabSize > config.vocabSize) {
      throw new RangeError(
        `${dir}: tokenizer.json has ${tokenizer.vocabSize} tokens but config.json vocab_size is ${config.vocabSize}`,
      );
    }
    return { dir, config, checkpoint, tokenizer };
  } catch (e) {
    checkpoint.close();
    throw e;
  }
}
