/**
 * Text <-> token ids for a Hugging Face model folder, through @huggingface/tokenizers (tokenizer.json)
 * and @huggingface/jinja (the chat template in tokenizer_config.json).
 *
 * @module
 */

import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

/** One chat message. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** A tokenizer file that cannot be used; the message names the file. */
export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TokenizerError";
  }
}

function tokenString(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return undefined;
}

const UTF8 = new TextEncoder();

/** GPT-2's byte-level alphabet inverted: the character standing for each byte -> the byte. */
const BYTE_LEVEL_DECODE: ReadonlyMap<string, number> = (() => {
  // bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 are shifted to 256+.
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  const m = new Map<string, number>();
  let shifted = 0;
  for (let b = 0; b < 256; b++) m.set(String.fromCharCode(printable(b) ? b : 256 + shifted++), b);
  return m;
})();

/** How one tokenizer turns a single vocabulary string into bytes, derived once per tokenizer. */
interface DecoderPlan {
  /** Added tokens by id (special or not). */
  added: ReadonlyMap<number, unknown>;
  bytes(token: string): Uint8Array;
}

const PLANS = new WeakMap<Tokenizer, DecoderPlan>();

/**
 * The per-token byte mapping of `tok`'s decoder (tokenizer.json `decoder`): ByteLevel (GPT-2, SmolLM2:
 * each character is one byte), Metaspace and the Llama-2 sequence Replace(▁ -> " ") + ByteFallback
 * (`<0xNN>` is byte NN) + Fuse + Strip. Strip only trims the start of a whole text, so it does not
 * apply to one token mid-text; decoders that rewrite across tokens (WordPiece, CTC, BPEDecoder) are
 * refused.
 */
function decoderPlan(tok: Tokenizer): DecoderPlan {
  const cached = PLANS.get(tok);
  if (cached) return cached;
  type Step = (piece: string) => string | Uint8Array;
  const steps: Step[] = [];
  const add = (cfg: unknown): void => {
    const c = (cfg ?? {}) as Record<string, unknown>;
    switch (c.type) {
      case "ByteLevel":
        steps.push((s) => {
          const out: number[] = [];
          for (const ch of s) {
            const b = BYTE_LEVEL_DECODE.get(ch);
            // A character outside the alphabet (a hand-added token) stands for itself.
            if (b !== undefined) out.push(b);
            else out.push(...UTF8.encode(ch));
          }
          return Uint8Array.from(out);
        });
        return;
      case "Metaspace": {
        const r = typeof c.replacement === "string" ? c.replacement : "\u2581";
        steps.push((s) => s.replaceAll(r, " "));
        return;
      }
      case "Replace": {
        const p = c.pattern as { String?: unknown } | undefined;
        if (typeof p?.String !== "string") {
          throw new TokenizerError(`decoder Replace with pattern ${JSON.stringify(p)} is not supported`);
        }
        const from = p.String, to = typeof c.content === "string" ? c.content : "";
        steps.push((s) => s.replaceAll(from, to));
        return;
      }
      case "ByteFallback":
        steps.push((s) => /^<0x[0-9A-Fa-f]{2}>$/.test(s) ? Uint8Array.of(parseInt(s.slice(3, 5), 16)) : s);
        return;
      case "Fuse":
      case "Strip":
        return;
      case "Sequence":
        for (const d of (c.decoders as unknown[] | undefined) ?? []) add(d);
        return;
      default:
        throw new TokenizerError(`decoder ${JSON.stringify(c.type)} has no per-token byte mapping`);
    }
  };
  const decoder = (tok.decoder as { config?: unknown } | null)?.config;
  if (decoder !== undefined && decoder !== null) add(decoder);
  const plan: DecoderPlan = {
    added: tok.get_added_tokens_decoder(),
    bytes(token) {
      let piece: string | Uint8Array = token;
      // A step that produced bytes (ByteLevel, a <0xNN> fallback) ends the chain: bytes are final.
      for (const step of steps) if (typeof piece === "string") piece = step(piece);
      return typeof piece === "string" ? UTF8.encode(piece) : piece;
    },
  };
  PLANS.set(tok, plan);
  return plan;
}

/** A model's tokenizer: BOS/EOS ids, encoding, decoding, streaming decoding and the chat template. */
export class ModelTokenizer {
  private constructor(
    private readonly tok: Tokenizer,
    /** Id prepended to prompts, or null when the model has none. */
    readonly bosId: number | null,
    /** Ids that end generation. */
    readonly eosIds: number[],
    readonly bosToken: string | undefined,
    readonly eosToken: string | undefined,
    private readonly addBos: boolean,
    private readonly chatTemplate: Template | undefined,
    /** Vocabulary size including added tokens. */
    readonly vocabSize: number,
  ) {}

  /**
   * Load `dir/tokenizer.json` and `dir/tokenizer_config.json` (optional).
   * @param extraEos EOS ids from config.json / generation_config.json, merged with the tokenizer's
   */
  static async load(dir: string, extraEos: number[] = []): Promise<ModelTokenizer> {
    const path = `${dir}/tokenizer.json`;
    let json: unknown;
    try {
      json = JSON.parse(await Deno.readTextFile(path));
    } catch (e) {
      throw new TokenizerError(`${path}: cannot read tokenizer: ${(e as Error).message}`);
    }
    let cfg: Record<string, unknown> = {};
    const cfgPath = `${dir}/tokenizer_config.json`;
    try {
      cfg = JSON.parse(await Deno.readTextFile(cfgPath));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        throw new TokenizerError(`${cfgPath}: cannot read: ${(e as Error).message}`);
      }
    }
    return ModelTokenizer.fromJson(json, cfg, { source: path, configSource: cfgPath, extraEos });
  }

  /**
   * A tokenizer from a tokenizer.json object and a tokenizer_config.json object (e.g. built from a GGUF
   * file's metadata); `source` / `configSource` name them in errors.
   */
  static fromJson(
    json: unknown,
    cfg: Record<string, unknown>,
    o: { source: string; configSource?: string; extraEos?: number[] },
  ): ModelTokenizer {
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(json as object, cfg);
    } catch (e) {
      throw new TokenizerError(`${o.source}: unsupported tokenizer: ${(e as Error).message}`);
    }
    const bosToken = tokenString(cfg.bos_token);
    const eosToken = tokenString(cfg.eos_token);
    const bosId = bosToken !== undefined ? tok.token_to_id(bosToken) ?? null : null;
    const eosIds = new Set(o.extraEos ?? []);
    if (eosToken !== undefined) {
      const id = tok.token_to_id(eosToken);
      if (id !== undefined) eosIds.add(id);
    }
    // Llama tokenizers prepend BOS unless told otherwise; tokenizer.json's post-processor may do it too,
    // so we always encode without special tokens and add BOS ourselves (exactly once).
    const addBos = cfg.add_bos_token !== false && bosId !== null;
    let template: Template | undefined;
    if (typeof cfg.chat_template === "string") {
      try {
        template = new Template(cfg.chat_template);
      } catch (e) {
        throw new TokenizerError(
          `${o.configSource ?? o.source}: chat_template does not parse: ${(e as Error).message}`,
        );
      }
    }
    const vocabSize = tok.get_vocab(true).size;
    return new ModelTokenizer(tok, bosId, [...eosIds], bosToken, eosToken, addBos, template, vocabSize);
  }

  /** Encode a prompt: BOS (when the model uses one) followed by the text's tokens. */
  encode(text: string, opts: { addBos?: boolean } = {}): number[] {
    const ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    return (opts.addBos ?? this.addBos) && this.bosId !== null ? [this.bosId, ...ids] : ids;
  }

  /** Decode ids to text (special tokens skipped). */
  decode(ids: ArrayLike<number>): string {
    if (ids.length === 0) return ""; // tokenizers.js throws on an empty list
    return this.tok.decode(Array.from(ids), { skip_special_tokens: true });
  }

  /** True when the tokenizer config has a chat template. */
  get hasChatTemplate(): boolean {
    return this.chatTemplate !== undefined;
  }

  /** Render messages with the model's chat template (generation prompt added) and encode them. */
  encodeChat(messages: ChatMessage[]): number[] {
    if (!this.chatTemplate) {
      throw new TokenizerError("this model has no chat template (tokenizer_config.json chat_template)");
    }
    const text = this.chatTemplate.render({
      messages,
      bos_token: this.bosToken ?? "",
      eos_token: this.eosToken ?? "",
      add_generation_prompt: true,
    });
    // The template writes BOS itself when the model wants one; the text's "<s>" is a special token.
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /**
   * The UTF-8 bytes token `id` appends to decoded text, or undefined for ids that decoding drops
   * (special tokens: BOS, EOS, chat markers) and ids outside the vocabulary. Unlike `decode([id])` this
   * is exact for tokens that hold part of a character (byte-level BPE's pieces of "🙂", SentencePiece's
   * `<0xF0>`), which is what a byte-level grammar needs. Mid-text semantics: SentencePiece's `▁` is a
   * space even where `decode` would strip it at the very start of a text, and no clean-up
   * (`clean_up_tokenization_spaces`) is applied, so concatenating the bytes of `encode(text)` gives
   * `text`'s UTF-8.
   *
   * @example
   * ```ts
   * const tok = await ModelTokenizer.load("weights/tiny/target");
   * const [id] = tok.encode(" the", { addBos: false }); // "Ġthe"
   * new TextDecoder().decode(tok.tokenBytes(id)); // " the"
   * ```
   * @throws {TokenizerError} when the tokenizer's decoder is one this mapping does not know
   */
  tokenBytes(id: number): Uint8Array | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return undefined;
    const plan = decoderPlan(this.tok);
    const added = plan.added.get(id);
    if (added !== undefined) {
      // Added tokens are written verbatim by the decoders; decode() drops the special ones (including
      // the config's additional_special_tokens), so ask it rather than re-deriving its rule.
      const text = this.tok.decode([id], { skip_special_tokens: true, clean_up_tokenization_spaces: false });
      return text === "" ? undefined : UTF8.encode(text);
    }
    const token = this.tok.id_to_token(id);
    return token === undefined ? undefined : plan.bytes(token);
  }

  /** A streaming decoder for one generation. */
  streamDecoder(): StreamDecoder {
    return new StreamDecoder(this);
  }
}

/**
 * Incremental detokenization: `push(id)` returns the newly completed text. Text that ends in an
 * incomplete UTF-8 sequence (decoded as U+FFFD) is held back until the bytes that finish it arrive.
 * Each window is decoded with one token of left context, so decoders that strip a leading space at the
 * start of a string (SentencePiece/Metaspace) still produce the right spacing mid-stream.
 */
export class StreamDecoder {
  private ids: number[] = [];
  private start = 0; // first id of the undecoded window
  private ctx = -1; // index of the context token before the window, -1 = none

  constructor(private readonly tok: ModelTokenizer) {}

  /** Add a token; returns the text it completes (possibly ""). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.ctx >= 0 ? this.tok.decode([this.ids[this.ctx]]) : "";
    const full = this.tok.decode(this.ids.slice(this.ctx >= 0 ? this.ctx : this.start));
    if (full.endsWith("\uFFFD")) return ""; // wait for the rest of the character
    const text = full.startsWith(prefix) ? full.slice(prefix.length) : full;
    this.ctx = this.ids.length - 1;
    this.start = this.ids.length;
    return text;
  }

  /** Flush whatever is held back (an incomplete character at the very end becomes U+FFFD). */
  flush(): string {
    if (this.start >= this.ids.length) return "";
    const prefix = this.ctx >= 0 ? this.tok.decode([this.ids[this.ctx]]) : "";
    const full = this.tok.decode(this.ids.slice(this.ctx >= 0 ? this.ctx : this.start));
    this.start = this.ids.length;
    return full.startsWith(prefix) ? full.slice(prefix.length) : full;
  }
}
