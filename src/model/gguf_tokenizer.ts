/**
 * A GGUF file's tokenizer (`tokenizer.ggml.*`) as a {@link ModelTokenizer}: the byte-level BPE
 * ("gpt2" model) rebuilt as a Hugging Face tokenizer.json object for @huggingface/tokenizers — tokens
 * (already in GPT-2's byte-to-unicode alphabet), merges, special tokens from the token types — and the
 * chat template from `tokenizer.chat_template`.
 *
 * The pre-tokenizer is not stored as a regex in GGUF, only named (`tokenizer.ggml.pre`); the ones this
 * project knows are rebuilt as the original tokenizer.json had them, any other is refused by name.
 *
 * @module
 */

import type { GgufFile } from "./gguf.ts";
import { ModelTokenizer, TokenizerError } from "./tokenizer.ts";

/** GGUF token types (llama.cpp's llama_token_type). */
const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** ByteLevel splitting with GPT-2's regex, no prefix space (what every GPT-2-style tokenizer starts with). */
const BYTE_LEVEL = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };

/**
 * Pre-tokenizers by `tokenizer.ggml.pre` name, as the models' own tokenizer.json files define them:
 * "smollm" (SmolLM / SmolLM2, the cosmo2 tokenizer) splits every digit apart before GPT-2's regex; "gpt-2"
 * is llama.cpp's name for GPT-2's own regex (what scripts/convert_gguf.ts writes).
 */
const PRE_TOKENIZERS: Record<string, unknown> = {
  gpt2: BYTE_LEVEL,
  "gpt-2": BYTE_LEVEL,
  default: BYTE_LEVEL,
  smollm: { type: "Sequence", pretokenizers: [{ type: "Digits", individual_digits: true }, BYTE_LEVEL] },
};

/**
 * Texts of control tokens that end a generation besides the file's eos/eot ids (llama.cpp treats the
 * same texts as end-of-generation): a chat model may end a turn with one and a base model a document.
 */
const END_OF_GENERATION = new Set([
  "<|endoftext|>",
  "<|im_end|>",
  "<|eot_id|>",
  "<|eom_id|>",
  "<|end|>",
  "<end_of_turn>",
  "</s>",
]);

/** Build the tokenizer of `file`; `extraEos` are more ids that end generation. */
export function tokenizerFromGguf(file: GgufFile, extraEos: number[] = []): ModelTokenizer {
  const where = file.path;
  const model = file.string("tokenizer.ggml.model");
  if (model !== "gpt2") {
    throw new TokenizerError(
      `${where}: tokenizer.ggml.model "${model}" is not supported (only "gpt2", byte-level BPE)`,
    );
  }
  const pre = file.metadata.has("tokenizer.ggml.pre") ? file.string("tokenizer.ggml.pre") : "default";
  const preTokenizer = PRE_TOKENIZERS[pre];
  if (!preTokenizer) {
    throw new TokenizerError(
      `${where}: tokenizer.ggml.pre "${pre}" is not supported (supported: ${
        Object.keys(PRE_TOKENIZERS).join(", ")
      })`,
    );
  }
  const tokens = file.strings("tokenizer.ggml.tokens");
  const merges = file.strings("tokenizer.ggml.merges");
  const types = file.metadata.has("tokenizer.ggml.token_type")
    ? file.ints("tokenizer.ggml.token_type")
    : tokens.map(() => TOKEN_TYPE.normal);
  if (types.length !== tokens.length) {
    throw new TokenizerError(
      `${where}: tokenizer.ggml.token_type has ${types.length} entries for ${tokens.length} tokens`,
    );
  }
  const vocab: Record<string, number> = {};
  const added: Record<string, unknown>[] = [];
  tokens.forEach((t, id) => {
    if (t in vocab) {
      throw new TokenizerError(`${where}: tokenizer.ggml.tokens has "${t}" twice (ids ${vocab[t]}, ${id})`);
    }
    vocab[t] = id;
    if (types[id] === TOKEN_TYPE.control || types[id] === TOKEN_TYPE.userDefined) {
      added.push({
        id,
        content: t,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: types[id] === TOKEN_TYPE.control,
      });
    }
  });
  const json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const id = (key: string) => file.metadata.has(key) ? file.uint(key) : undefined;
  const tokenAt = (key: string) => {
    const i = id(key);
    if (i === undefined) return undefined;
    if (i >= tokens.length) {
      throw new TokenizerError(`${where}: ${key} ${i} is outside the ${tokens.length} tokens`);
    }
    return tokens[i];
  };
  const eos = new Set(extraEos);
  for (
    const key of ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
  ) {
    const i = id(key);
    if (i !== undefined && i < tokens.length) eos.add(i);
  }
  tokens.forEach((t, i) => {
    if (types[i] === TOKEN_TYPE.control && END_OF_GENERATION.has(t)) eos.add(i);
  });
  const cfg: Record<string, unknown> = {
    // Decoding is the exact inverse of the bytes (as llama.cpp and transformers do for these files):
    // no "clean-up" that would eat the space in "What?! ..." or "x != y".
    clean_up_tokenization_spaces: false,
    bos_token: tokenAt("tokenizer.ggml.bos_token_id"),
    eos_token: tokenAt("tokenizer.ggml.eos_token_id"),
    // GGUF's default (llama.cpp): a BOS is added unless the file says otherwise.
    add_bos_token: file.metadata.has("tokenizer.ggml.add_bos_token")
      ? file.bool("tokenizer.ggml.add_bos_token")
      : true,
  };
  if (file.metadata.has("tokenizer.chat_template")) {
    cfg.chat_template = file.string("tokenizer.chat_template");
  }
  return ModelTokenizer.fromJson(json, cfg, {
    source: `${where} (tokenizer.ggml.*)`,
    configSource: `${where} (tokenizer.chat_template)`,
    extraEos: [...eos],
  });
}
