/**
 * POST /v1/generate, the native route: a text prompt in, text, token ids, finish reason and the
 * speculative stats of this request out (JSON, or SSE with `stream: true`).
 *
 * @module
 */

import type { Hono } from "hono";
import { z } from "zod";
import { METHODS } from "../speculative/methods.ts";
import { type Generations, shutdownError } from "./generation.ts";
import { clientAbort, clientGone, parseBody, sse } from "./http.ts";

/**
 * A string of at most `max` characters that is valid Unicode: JSON may carry unpaired UTF-16 surrogates
 * ("\ud800"), which no tokenizer can encode faithfully.
 */
export function text(max: number, min = 0): z.ZodString {
  return z.string().min(min).max(max).refine(
    (s) => s.isWellFormed(),
    "contains an unpaired UTF-16 surrogate (not valid Unicode)",
  );
}

/** Stop sequences: one string or up to 16 (each 1..256 characters). */
export const stopSchema = z.union([
  text(256, 1),
  z.array(text(256, 1)).max(16),
], {
  error:
    "expected a non-empty string or an array of up to 16 non-empty strings (each at most 256 characters)",
});

/** Body of POST /v1/generate. Unknown fields are refused: no request can name a file or a model. */
export const generateSchema = z.object({
  prompt: text(200_000, 1),
  max_tokens: z.number().int().min(1).max(1_000_000).default(128),
  temperature: z.number().min(0).max(100).default(0.7),
  top_p: z.number().gt(0).max(1).default(1),
  top_k: z.number().int().min(0).max(1_000_000).default(0),
  seed: z.number().int().min(0).max(2 ** 32 - 1).optional(),
  stop: stopSchema.optional(),
  stream: z.boolean().default(false),
  method: z.enum(METHODS).optional(),
  tree_size: z.number().int().min(1).max(256).optional(),
  depth: z.number().int().min(1).max(32).optional(),
  budget: z.number().int().min(1).max(1024).optional(),
}).strict();

/** Body of POST /v1/generate. */
export type GenerateRequest = z.infer<typeof generateSchema>;

/** Normalise `stop` to a list. */
export function stopList(stop: string | string[] | null | undefined): string[] {
  return stop == null ? [] : typeof stop === "string" ? [stop] : stop;
}

/** Register POST /v1/generate on `app`. */
export function nativeRoutes(app: Hono, gen: Generations, maxBodyBytes: number): void {
  app.post("/v1/generate", async (c) => {
    const req = await parseBody(c, generateSchema, maxBodyBytes);
    const client = clientAbort(c);
    const pending = gen.prepare({
      prompt: gen.svc.tokenizer.encode(req.prompt),
      maxTokens: req.max_tokens,
      sampling: { temperature: req.temperature, topK: req.top_k, topP: req.top_p },
      seed: req.seed,
      stop: stopList(req.stop),
      method: req.method,
      treeSize: req.tree_size,
      depth: req.depth,
      budget: req.budget,
    }, client.signal);
    const usage = (completion: number) => ({
      prompt_tokens: pending.promptTokens,
      completion_tokens: completion,
      total_tokens: pending.promptTokens + completion,
    });

    if (!req.stream) {
      const out = await pending.run().catch((e) => {
        if (client.signal.aborted) return undefined;
        throw e;
      });
      if (!out || out.cancelCause === "client") return clientGone();
      if (out.cancelCause === "shutdown") throw shutdownError();
      return c.json({
        text: out.text,
        tokens: out.ids,
        finish_reason: out.finishReason,
        usage: usage(out.ids.length),
        method: out.method,
        stats: out.stats,
      });
    }
    return sse(c, client, async (s) => {
      const out = await pending.run((id, text) => s.writeSSE({ data: JSON.stringify({ token: id, text }) }));
      if (out.cancelCause === "client") return;
      await s.writeSSE({
        data: JSON.stringify({
          text: out.tail,
          finish_reason: out.finishReason,
          usage: usage(out.ids.length),
          method: out.method,
          stats: out.stats,
        }),
      });
      await s.writeSSE({ data: "[DONE]" });
    });
  });
}
