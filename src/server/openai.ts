/**
 * The OpenAI wire format: POST /v1/completions and POST /v1/chat/completions, JSON or SSE
 * (`stream: true`: `data: {chunk}` events, then `data: [DONE]`), with usage and finish_reason. Chat
 * prompts are rendered with the model's chat template (tokenizer_config.json).
 *
 * Sampling parameters this server cannot honour exactly (penalties, logprobs, n > 1, tools, ...) are
 * refused with a 400 naming the field, never silently ignored: outputs stay exactly the target's.
 * Extensions beyond OpenAI's fields: `top_k`, `method`, `tree_size`, `depth`, `budget`.
 *
 * @module
 */

import type { Context, Hono } from "hono";
import { z } from "zod";
import { METHODS } from "../speculative/methods.ts";
import type { ChatMessage } from "../model/tokenizer.ts";
import { ApiError } from "./errors.ts";
import {
  type GenerationRequest,
  type GenerationResult,
  type Generations,
  type PendingGeneration,
  shutdownError,
} from "./generation.ts";
import { clientAbort, clientGone, parseBody, sse } from "./http.ts";
import { stopList, stopSchema, text } from "./native.ts";

/** OpenAI's default max_tokens of /v1/completions. */
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

const onlyZero = z.number().refine(
  (v) => v === 0,
  "only 0 is supported (penalties would change the distribution)",
);
const onlyOne = z.number().refine((v) => v === 1, "only 1 is supported");
const noLogprobs = z.union([z.literal(false), z.null()], { error: "logprobs are not supported" });

/** Fields both OpenAI routes share (null counts as absent, as OpenAI clients send it). */
const common = {
  model: z.string().max(256).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  n: onlyOne.nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).strict().nullish(),
  stop: stopSchema.nullish(),
  seed: z.number().int().min(0).max(2 ** 32 - 1).nullish(),
  user: z.string().max(256).nullish(),
  frequency_penalty: onlyZero.nullish(),
  presence_penalty: onlyZero.nullish(),
  // Extensions.
  top_k: z.number().int().min(0).max(1_000_000).nullish(),
  method: z.enum(METHODS).nullish(),
  tree_size: z.number().int().min(1).max(256).nullish(),
  depth: z.number().int().min(1).max(32).nullish(),
  budget: z.number().int().min(1).max(1024).nullish(),
};

const maxTokens = z.number().int().min(1).max(1_000_000).nullish();
const tokenIds = z.array(z.number().int().min(0).max(2 ** 31 - 1)).min(1).max(200_000);

/** Body of POST /v1/completions. */
export const completionsSchema = z.object({
  ...common,
  prompt: z.union([
    text(200_000, 1),
    z.array(text(200_000, 1)).length(1),
    tokenIds,
    z.array(tokenIds).length(1),
  ], { error: "expected a string or an array of token ids (one prompt per request)" }),
  max_tokens: maxTokens,
  logprobs: noLogprobs.nullish(),
  echo: z.literal(false, { error: "echo is not supported" }).nullish(),
}).strict();

const textPart = z.object({ type: z.literal("text"), text: text(200_000) }).strict();

/** Body of POST /v1/chat/completions. */
export const chatSchema = z.object({
  ...common,
  messages: z.array(
    z.object({
      role: z.enum(["system", "developer", "user", "assistant"]),
      content: z.union([text(200_000), z.array(textPart).min(1).max(64)], {
        error: 'expected a string or an array of {"type": "text", "text": string} parts',
      }),
      name: z.string().max(64).nullish(),
    }).strict(),
  ).min(1).max(256),
  max_tokens: maxTokens,
  max_completion_tokens: maxTokens,
  logprobs: noLogprobs.nullish(),
}).strict();

type Common = z.infer<z.ZodObject<typeof common>>;

/** Sampling and speculation settings of a parsed body (OpenAI's defaults: temperature 1, top_p 1). */
function settings(b: Common): Omit<GenerationRequest, "prompt" | "maxTokens"> {
  return {
    sampling: { temperature: b.temperature ?? 1, topP: b.top_p ?? 1, topK: b.top_k ?? 0 },
    seed: b.seed ?? undefined,
    stop: stopList(b.stop),
    method: b.method ?? undefined,
    treeSize: b.tree_size ?? undefined,
    depth: b.depth ?? undefined,
    budget: b.budget ?? undefined,
  };
}

function checkModel(gen: Generations, model: string | null | undefined): void {
  // Models are fixed at startup: a name is compared, never resolved as a path.
  if (model != null && model !== gen.svc.name) {
    throw new ApiError(404, `model: "${model}" does not exist; this server serves "${gen.svc.name}"`, {
      param: "model",
      code: "model_not_found",
    });
  }
}

/** The OpenAI finish_reason of a finished (not cancelled) generation. */
function finishReason(out: GenerationResult): "stop" | "length" {
  return out.finishReason === "length" ? "length" : "stop";
}

function usage(out: GenerationResult) {
  return {
    prompt_tokens: out.promptTokens,
    completion_tokens: out.ids.length,
    total_tokens: out.promptTokens + out.ids.length,
  };
}

/** What differs between the two routes' wire formats. */
interface Format {
  /** `object` of the JSON answer and of stream chunks. */
  object: string;
  chunkObject: string;
  idPrefix: string;
  /** The choice of a JSON answer. */
  choice(out: GenerationResult): Record<string, unknown>;
  /** A stream chunk's choice carrying `text` (and the finish reason on the last one). */
  delta(text: string | undefined, finish: string | null, first: boolean): Record<string, unknown>;
}

const COMPLETION: Format = {
  object: "text_completion",
  chunkObject: "text_completion",
  idPrefix: "cmpl-",
  choice: (out) => ({ index: 0, text: out.text, logprobs: null, finish_reason: finishReason(out) }),
  delta: (text, finish) => ({ index: 0, text: text ?? "", logprobs: null, finish_reason: finish }),
};

const CHAT: Format = {
  object: "chat.completion",
  chunkObject: "chat.completion.chunk",
  idPrefix: "chatcmpl-",
  choice: (out) => ({
    index: 0,
    message: { role: "assistant", content: out.text },
    logprobs: null,
    finish_reason: finishReason(out),
  }),
  delta: (text, finish, first) => ({
    index: 0,
    delta: first ? { role: "assistant", content: text ?? "" } : text === undefined ? {} : { content: text },
    logprobs: null,
    finish_reason: finish,
  }),
};

/** Answer `pending` in `fmt`, as JSON or as an SSE stream. */
function respond(
  c: Context,
  gen: Generations,
  fmt: Format,
  pending: PendingGeneration,
  client: AbortController,
  stream: { on: boolean; includeUsage: boolean },
) {
  const id = fmt.idPrefix + crypto.randomUUID().replaceAll("-", "");
  const created = Math.floor(Date.now() / 1000);
  const head = { id, object: fmt.object, created, model: gen.svc.name };
  if (!stream.on) {
    return (async () => {
      const out = await pending.run().catch((e) => {
        if (client.signal.aborted) return undefined;
        throw e;
      });
      if (!out || out.cancelCause === "client") return clientGone();
      if (out.cancelCause === "shutdown") throw shutdownError();
      return c.json({ ...head, choices: [fmt.choice(out)], usage: usage(out) });
    })();
  }
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    JSON.stringify({ ...head, object: fmt.chunkObject, choices, ...extra });
  return sse(c, client, async (s) => {
    let first = true;
    const send = async (text: string) => {
      await s.writeSSE({ data: chunk([fmt.delta(text, null, first)]) });
      first = false;
    };
    // The chat format opens with the assistant role before any text.
    if (fmt === CHAT) await send("");
    const out = await pending.run(async (_id, text) => {
      if (text) await send(text);
    });
    if (out.cancelCause === "client") return;
    if (out.cancelCause === "shutdown") throw shutdownError();
    if (out.tail) await send(out.tail);
    await s.writeSSE({ data: chunk([fmt.delta(undefined, finishReason(out), first)]) });
    if (stream.includeUsage) await s.writeSSE({ data: chunk([], { usage: usage(out) }) });
    await s.writeSSE({ data: "[DONE]" });
  });
}

/** Register POST /v1/completions and POST /v1/chat/completions on `app`. */
export function openaiRoutes(app: Hono, gen: Generations, maxBodyBytes: number): void {
  const vocab = gen.svc.tokenizer.vocabSize;

  app.post("/v1/completions", async (c) => {
    const b = await parseBody(c, completionsSchema, maxBodyBytes);
    checkModel(gen, b.model);
    const p = Array.isArray(b.prompt) ? b.prompt[0] : b.prompt;
    let prompt: number[];
    if (typeof p === "string") prompt = gen.svc.tokenizer.encode(p);
    else {
      prompt = typeof p === "number" ? b.prompt as number[] : p;
      const bad = prompt.findIndex((t) => t >= vocab);
      if (bad >= 0) {
        const param = typeof p === "number" ? `prompt[${bad}]` : `prompt[0][${bad}]`;
        throw new ApiError(
          400,
          `${param}: token id ${prompt[bad]} is outside the vocabulary (${vocab} tokens)`,
          {
            param,
          },
        );
      }
    }
    const maxTokens = b.max_tokens ??
      Math.max(1, Math.min(COMPLETIONS_DEFAULT_MAX_TOKENS, gen.context - prompt.length));
    const client = clientAbort(c);
    const pending = gen.prepare({ ...settings(b), prompt, maxTokens }, client.signal);
    return respond(c, gen, COMPLETION, pending, client, {
      on: b.stream ?? false,
      includeUsage: b.stream_options?.include_usage ?? false,
    });
  });

  app.post("/v1/chat/completions", async (c) => {
    const b = await parseBody(c, chatSchema, maxBodyBytes);
    checkModel(gen, b.model);
    if (!gen.svc.tokenizer.hasChatTemplate) {
      throw new ApiError(
        400,
        "messages: this model has no chat template (tokenizer_config.json); use /v1/completions",
        {
          param: "messages",
        },
      );
    }
    const messages: ChatMessage[] = b.messages.map((m) => ({
      role: m.role,
      content: typeof m.content === "string" ? m.content : m.content.map((part) => part.text).join(""),
    }));
    let prompt: number[];
    try {
      prompt = gen.svc.tokenizer.encodeChat(messages);
    } catch (e) {
      throw new ApiError(400, `messages: the chat template failed: ${(e as Error).message}`, {
        param: "messages",
      });
    }
    const param = b.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
    // OpenAI's chat default: as many tokens as the context leaves.
    const maxTokens = b.max_completion_tokens ?? b.max_tokens ?? Math.max(1, gen.context - prompt.length);
    const client = clientAbort(c);
    const pending = gen.prepare({ ...settings(b), prompt, maxTokens }, client.signal, param);
    return respond(c, gen, CHAT, pending, client, {
      on: b.stream ?? false,
      includeUsage: b.stream_options?.include_usage ?? false,
    });
  });
}
