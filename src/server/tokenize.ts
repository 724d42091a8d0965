/**
 * POST /tokenize and POST /detokenize in llama.cpp server's shapes, so tools written for llama-server
 * (token counters, prompt debuggers) work unchanged:
 *
 * - `/tokenize` `{content, add_special?, with_pieces?, parse_special?, model?}` -> `{tokens: [id, ...]}`,
 *   or with `with_pieces` `{tokens: [{id, piece}, ...]}` where `piece` is the token's text when its
 *   bytes are valid UTF-8 and the list of its bytes otherwise (a piece of a multi-byte character).
 *   `add_special` (default false) adds what the server adds to a prompt (BOS when the model uses one),
 *   so `add_special: true` gives exactly the ids /v1/completions generates from.
 * - `/detokenize` `{tokens: [id, ...], model?}` -> `{content}`: the text the server would stream for
 *   these ids (special tokens skipped); an id outside the vocabulary is a 400 naming its index.
 *
 * @module
 */

import type { Hono } from "hono";
import { z } from "zod";
import type { ModelTokenizer } from "../model/tokenizer.ts";
import { ApiError } from "./errors.ts";
import type { ModelService } from "./generation.ts";
import { parseBody } from "./http.ts";

/** Most characters of `content` and most ids of `tokens` (as for a prompt of /v1/generate). */
export const MAX_TOKENIZE_LENGTH = 200_000;

const wellFormed = (s: string) => s.isWellFormed();

/** Body of POST /tokenize. */
export const tokenizeSchema = z.object({
  content: z.string().max(MAX_TOKENIZE_LENGTH).refine(
    wellFormed,
    "contains an unpaired UTF-16 surrogate (not valid Unicode)",
  ),
  add_special: z.boolean().default(false),
  with_pieces: z.boolean().default(false),
  // llama.cpp's default; the tokenizer always reads special-token text ("<s>") as the special token.
  parse_special: z.literal(true, {
    error: "only true is supported: special-token text is always read as the special token",
  }).optional(),
  model: z.string().optional(),
}).strict();

/** Body of POST /detokenize. */
export const detokenizeSchema = z.object({
  tokens: z.array(z.number().int().min(0)).max(MAX_TOKENIZE_LENGTH),
  model: z.string().optional(),
}).strict();

/** One token of a `with_pieces` answer: its text, or its bytes when they are not valid UTF-8 alone. */
export interface TokenPiece {
  id: number;
  piece: string | number[];
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * One token's piece: its bytes as decoding appends them (`ModelTokenizer.tokenBytes`, exact for the
 * pieces of a multi-byte character) as text when they are valid UTF-8 alone, else as a byte list.
 * Special tokens, which decoding skips, are written as their text (BOS, EOS; others as "").
 */
function tokenPiece(tok: ModelTokenizer, id: number): string | number[] {
  let bytes: Uint8Array | undefined;
  try {
    bytes = tok.tokenBytes(id);
  } catch {
    return tok.decode([id]); // a decoder without a per-token byte mapping
  }
  if (bytes === undefined) {
    if (id === tok.bosId && tok.bosToken !== undefined) return tok.bosToken;
    if (tok.eosIds.includes(id) && tok.eosToken !== undefined) {
      const eos = tok.encode(tok.eosToken, { addBos: false });
      if (eos.length === 1 && eos[0] === id) return tok.eosToken;
    }
    return "";
  }
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return Array.from(bytes);
  }
}

/** A `model` field other than the served one: 404 model_not_found, as on the OpenAI routes. */
function checkModel(name: string, model: string | undefined): void {
  if (model !== undefined && model !== name) {
    throw new ApiError(
      404,
      `model: ${JSON.stringify(model.slice(0, 200))} does not exist; this server serves "${name}"`,
      { param: "model", code: "model_not_found" },
    );
  }
}

/** Register POST /tokenize and POST /detokenize for `svc`'s tokenizer on `app`. */
export function tokenizeRoutes(
  app: Hono,
  svc: Pick<ModelService, "name" | "tokenizer">,
  maxBodyBytes: number,
): void {
  const tok = svc.tokenizer;
  app.post("/tokenize", async (c) => {
    const b = await parseBody(c, tokenizeSchema, maxBodyBytes);
    checkModel(svc.name, b.model);
    const ids = b.add_special ? tok.encode(b.content) : tok.encode(b.content, { addBos: false });
    if (!b.with_pieces) return c.json({ tokens: ids });
    const tokens: TokenPiece[] = ids.map((id) => ({ id, piece: tokenPiece(tok, id) }));
    return c.json({ tokens });
  });

  app.post("/detokenize", async (c) => {
    const b = await parseBody(c, detokenizeSchema, maxBodyBytes);
    checkModel(svc.name, b.model);
    const bad = b.tokens.findIndex((t) => t >= tok.vocabSize);
    if (bad >= 0) {
      throw new ApiError(
        400,
        `tokens[${bad}]: token id ${b.tokens[bad]} is outside the vocabulary (${tok.vocabSize} tokens)`,
        { param: `tokens[${bad}]` },
      );
    }
    return c.json({ content: tok.decode(b.tokens) });
  });
}
