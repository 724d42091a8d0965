/**
 * POST /v1/generate, the native route: a text prompt in, text, token ids, finish reason, the
 * speculative stats of this request and llama.cpp's `timings` out (JSON, or SSE with `stream: true`).
 * It also holds what every route shares: text and stop-sequence schemas, and the logits-processing
 * fields (`presence_penalty`, `frequency_penalty`, `repetition_penalty`, `logit_bias`, `min_p`,
 * `response_format`) with their translation into the engine's {@link ProcessingSpec}.
 *
 * @module
 */

import type { Hono } from "hono";
import { z } from "zod";
import type { GrammarSpec, ProcessingSpec } from "../decoding/logits/processor.ts";
import { compileGrammar, GrammarError } from "../decoding/grammar/mod.ts";
import { METHODS } from "../speculative/methods.ts";
import { ApiError } from "./errors.ts";
import {
  type GenerationResult,
  type Generations,
  shutdownError,
  timingsOf,
  type TokenScore,
} from "./generation.ts";
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

/** Most entries of a `logit_bias`. */
export const MAX_LOGIT_BIAS = 1024;

/** `logit_bias`: token id (a decimal string, as JSON object keys are) -> bias in [-100, 100]. */
const logitBiasSchema = z.record(z.string(), z.number().min(-100).max(100)).superRefine((o, ctx) => {
  const keys = Object.keys(o);
  if (keys.length > MAX_LOGIT_BIAS) {
    ctx.addIssue({ code: "custom", message: `at most ${MAX_LOGIT_BIAS} tokens, got ${keys.length}` });
  }
  for (const k of keys) {
    if (!/^(0|[1-9][0-9]{0,9})$/.test(k)) {
      ctx.addIssue({ code: "custom", path: [k], message: "keys must be token ids (decimal integers)" });
      return;
    }
  }
});

/** `response_format`: plain text, any JSON object, or JSON matching a schema (grammar-constrained). */
export const responseFormatSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }).strict(),
  z.object({ type: z.literal("json_object") }).strict(),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "1..64 characters of a-z, A-Z, 0-9, _ and -"),
      description: z.string().max(4096).nullish(),
      schema: z.record(z.string(), z.unknown()).nullish(),
      strict: z.boolean().nullish(),
    }).strict(),
  }).strict(),
], {
  error:
    'expected {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}',
});

/** The logits-processing fields every generation route takes (null counts as absent). */
export const processingFields = {
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  /** Extension (Hugging Face's / vLLM's): > 0, 1 = off. */
  // Bounded so a logit divided by it stays a finite float32 (1e-39 overflowed to +Infinity -> NaN rows).
  repetition_penalty: z.number().min(0.01).max(100).nullish(),
  logit_bias: logitBiasSchema.nullish(),
  /** Extension: 0..1, 0 = off. */
  min_p: z.number().min(0).max(1).nullish(),
  response_format: responseFormatSchema.nullish(),
};

type ProcessingFields = z.infer<z.ZodObject<typeof processingFields>>;

/**
 * The engine's {@link ProcessingSpec} for the processing fields of a body, or undefined when they change
 * nothing (neutral values are dropped, so the engine keeps its fastest path). Throws {@link ApiError}
 * 400 naming `logit_bias.<id>` for an id outside the vocabulary of `vocabSize` tokens, and
 * `response_format.json_schema.schema` for a schema the grammar cannot enforce exactly.
 */
export function processingSpec(b: ProcessingFields, vocabSize: number): ProcessingSpec | undefined {
  const spec: ProcessingSpec = {};
  if (b.presence_penalty) spec.presencePenalty = b.presence_penalty;
  if (b.frequency_penalty) spec.frequencyPenalty = b.frequency_penalty;
  if (b.repetition_penalty != null && b.repetition_penalty !== 1) {
    spec.repetitionPenalty = b.repetition_penalty;
  }
  if (b.min_p) spec.minP = b.min_p;
  if (b.logit_bias) {
    const bias: Record<number, number> = {};
    for (const [k, v] of Object.entries(b.logit_bias)) {
      const id = Number(k);
      if (id >= vocabSize) {
        throw new ApiError(
          400,
          `logit_bias.${k}: token id ${k} is outside the vocabulary (${vocabSize} tokens)`,
          { param: `logit_bias.${k}` },
        );
      }
      if (v !== 0) bias[id] = v;
    }
    if (Object.keys(bias).length) spec.logitBias = bias;
  }
  const grammar = grammarOf(b.response_format);
  if (grammar) {
    // Compiled here too, so a schema outside the supported subset is a 400 before the request queues.
    try {
      compileGrammar(grammar);
    } catch (e) {
      if (!(e instanceof GrammarError)) throw e;
      const param = grammar.kind === "json_schema" ? "response_format.json_schema.schema" : "response_format";
      throw new ApiError(400, `${param}: ${e.message}`, { param });
    }
    spec.grammar = grammar;
  }
  return Object.keys(spec).length ? spec : undefined;
}

function grammarOf(f: ProcessingFields["response_format"]): GrammarSpec | undefined {
  if (!f || f.type === "text") return undefined;
  if (f.type === "json_object") return { kind: "json_object" };
  return { kind: "json_schema", schema: f.json_schema.schema ?? {} };
}

/** Most alternatives a logprobs entry may list (OpenAI's top_logprobs limit). */
export const MAX_TOP_LOGPROBS = 20;

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
  /** Each token's log-probability and its `logprobs` most likely alternatives (0..20). */
  logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).optional(),
  ...processingFields,
}).strict();

/** Body of POST /v1/generate. */
export type GenerateRequest = z.infer<typeof generateSchema>;

/** Normalise `stop` to a list. */
export function stopList(stop: string | string[] | null | undefined): string[] {
  return stop == null ? [] : typeof stop === "string" ? [stop] : stop;
}

/** The native logprobs entry of one token: `{id, token, logprob, top_logprobs: [{id, token, logprob}]}`. */
function nativeLogprob(gen: Generations, id: number, s: TokenScore | undefined) {
  return {
    id,
    token: gen.pieces.of(id).text,
    logprob: s?.logprob ?? null,
    top_logprobs: (s?.top ?? []).map(([t, lp]) => ({ id: t, token: gen.pieces.of(t).text, logprob: lp })),
  };
}

/** Register POST /v1/generate on `app`. */
export function nativeRoutes(app: Hono, gen: Generations, maxBodyBytes: number): void {
  app.post("/v1/generate", async (c) => {
    const req = await parseBody(c, generateSchema, maxBodyBytes);
    const processing = processingSpec(req, gen.svc.tokenizer.vocabSize);
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
      ...(processing ? { processing } : {}),
      ...(req.logprobs !== undefined ? { logprobs: req.logprobs } : {}),
    }, client.signal);
    const usage = (completion: number) => ({
      prompt_tokens: pending.promptTokens,
      completion_tokens: completion,
      total_tokens: pending.promptTokens + completion,
    });
    const summary = (out: GenerationResult) => ({
      finish_reason: out.finishReason,
      usage: usage(out.ids.length),
      method: out.method,
      // Under --method auto: every candidate's predicted tok/s for this request and why this one won.
      ...(out.choice ? { method_choice: out.choice } : {}),
      stats: out.stats,
      timings: timingsOf([out]),
    });

    if (!req.stream) {
      const out = await pending.run().catch((e) => {
        if (client.signal.aborted) return undefined;
        throw e;
      });
      if (!out || out.cancelCause === "client") return clientGone();
      if (out.cancelCause === "shutdown") throw shutdownError();
      const { finish_reason, ...rest } = summary(out);
      return c.json({
        text: out.text,
        tokens: out.ids,
        finish_reason,
        ...(out.scores ? { logprobs: out.ids.map((id, i) => nativeLogprob(gen, id, out.scores![i])) } : {}),
        ...rest,
      });
    }
    return sse(c, client, async (s) => {
      const out = await pending.run((id, text, ev) =>
        s.writeSSE({
          data: JSON.stringify(
            req.logprobs === undefined ? { token: id, text } : {
              token: id,
              text,
              logprobs: nativeLogprob(gen, id, ev),
            },
          ),
        })
      );
      if (out.cancelCause === "client") return;
      // Cut by shutdown: the stream ends with an error event (no [DONE]), as the OpenAI routes' do.
      if (out.cancelCause === "shutdown") throw shutdownError();
      await s.writeSSE({ data: JSON.stringify({ text: out.tail, ...summary(out) }) });
      await s.writeSSE({ data: "[DONE]" });
    });
  });
}
