/**
 * The OpenAI wire format: POST /v1/completions and POST /v1/chat/completions, JSON or SSE
 * (`stream: true`: `data: {chunk}` events, then `data: [DONE]`), with usage, finish_reason, logprobs in
 * both formats and llama.cpp's `timings`. Chat prompts are rendered with the model's chat template
 * (tokenizer_config.json).
 *
 * Every field is honoured exactly, accepted at a value that cannot change the output (documented as
 * accepted-as-neutral: `store: false`, `metadata`, `user`, `service_tier: "auto"`, empty `tools`, ...),
 * or refused with a 400 naming the field (tools, audio, predicted outputs, ...): never silently
 * ignored, so outputs stay exactly the target's under the request's own processors.
 * Extensions beyond OpenAI's fields: `top_k`, `min_p`, `repetition_penalty`, `method`, `tree_size`,
 * `depth`, `budget`.
 *
 * Several generations in one request (`n`, `best_of`, a list of prompts) each take their own place in
 * the queue, consecutively and all or none (429), and run one after another; choice `index` is
 * `prompt_i * n + j`, as OpenAI numbers them.
 *
 * @module
 */

import type { Context, Hono } from "hono";
import type { SSEStreamingApi } from "hono/streaming";
import { z } from "zod";
import type { PromptEvent } from "../decoding/stats.ts";
import { METHODS } from "../speculative/methods.ts";
import type { ChatMessage } from "../model/tokenizer.ts";
import { ApiError } from "./errors.ts";
import {
  type GenerationRequest,
  type GenerationResult,
  type Generations,
  type PendingGeneration,
  shutdownError,
  timingsOf,
  type TokenScore,
} from "./generation.ts";
import { clientAbort, clientGone, parseBody, sse } from "./http.ts";
import { MAX_TOP_LOGPROBS, processingFields, processingSpec, stopList, stopSchema, text } from "./native.ts";

/** OpenAI's default max_tokens of /v1/completions. */
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;
/** Most choices per prompt (`n`, `best_of`). */
export const MAX_CHOICES = 16;
/** Most prompts in one /v1/completions request. */
export const MAX_PROMPTS = 64;
/** Most alternatives of completions' `logprobs` (OpenAI's limit). */
const MAX_COMPLETION_LOGPROBS = 5;

/**
 * A field accepted only at values that cannot change the output (`neutral`); any other value is a 400
 * saying `why`. null counts as absent.
 */
function onlyNeutral(neutral: (v: unknown) => boolean, why: string) {
  return z.unknown().superRefine((v, ctx) => {
    if (v != null && !neutral(v)) ctx.addIssue({ code: "custom", message: why });
  }).optional();
}
const isEmptyArray = (v: unknown) => Array.isArray(v) && v.length === 0;
const isNoneOrAuto = (v: unknown) => v === "none" || v === "auto";
const never = () => false;

/** Fields SDKs send at neutral values: accepted there, refused where they would change the output. */
const neutralFields = {
  user: z.string().max(256).nullish(),
  /** OpenAI's newer end-user and cache identifiers: they change nothing here. */
  safety_identifier: z.string().max(256).nullish(),
  prompt_cache_key: z.string().max(1024).nullish(),
  // Prompt caching only changes latency; this server has no prompt cache to configure.
  prompt_cache_retention: z.enum(["in_memory", "24h"]).nullish(),
  prompt_cache_options: z.object({
    mode: z.enum(["implicit", "explicit"]).nullish(),
    ttl: z.string().max(16).nullish(),
  })
    .strict().nullish(),
  store: onlyNeutral((v) => v === false, "store: true is not supported: this server keeps no completions"),
  metadata: z.record(z.string().max(64), z.string().max(512)).refine(
    (m) => Object.keys(m).length <= 16,
    "at most 16 keys",
  ).nullish(),
  service_tier: onlyNeutral(
    (v) => v === "auto" || v === "default",
    'only "auto" or "default": this server has one service tier',
  ),
};

/** Fields both OpenAI routes share (null counts as absent, as OpenAI clients send it). */
const common = {
  model: z.string().max(256).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  n: z.number().int().min(1).max(MAX_CHOICES).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({
    include_usage: z.boolean().nullish(),
    // Obfuscation pads chunks against side channels; the text, tokens and order are the same.
    include_obfuscation: z.boolean().nullish(),
  }).strict().nullish(),
  stop: stopSchema.nullish(),
  seed: z.number().int().min(0).max(2 ** 32 - 1).nullish(),
  ...neutralFields,
  ...processingFields,
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
    z.array(text(200_000, 1)).min(1).max(MAX_PROMPTS),
    tokenIds,
    z.array(tokenIds).min(1).max(MAX_PROMPTS),
  ], {
    error: `expected a string, an array of token ids, or a list of up to ${MAX_PROMPTS} of either`,
  }),
  // 0 only with echo: the prompt scored, nothing generated.
  max_tokens: z.number().int().min(0).max(1_000_000).nullish(),
  logprobs: z.number().int().min(0).max(MAX_COMPLETION_LOGPROBS).nullish(),
  echo: z.boolean().nullish(),
  best_of: z.number().int().min(1).max(MAX_CHOICES).nullish(),
  suffix: onlyNeutral(never, "not supported: this server does no fill-in-the-middle"),
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
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
  // Accepted where they cannot change the output; refused where the server would have to ignore them.
  parallel_tool_calls: z.boolean().nullish(),
  tools: onlyNeutral(isEmptyArray, "tool calling is not supported (only an empty list)"),
  tool_choice: onlyNeutral(
    isNoneOrAuto,
    'tool calling is not supported (only "none" or "auto" without tools)',
  ),
  functions: onlyNeutral(isEmptyArray, "function calling is not supported (only an empty list)"),
  function_call: onlyNeutral(isNoneOrAuto, 'function calling is not supported (only "none" or "auto")'),
  modalities: onlyNeutral(
    (v) => Array.isArray(v) && v.length === 1 && v[0] === "text",
    'only ["text"]: this server generates text',
  ),
  audio: onlyNeutral(never, "audio output is not supported"),
  prediction: onlyNeutral(
    never,
    "predicted outputs are not supported (the server drafts with its own model)",
  ),
  web_search_options: onlyNeutral(never, "web search is not supported"),
  reasoning_effort: onlyNeutral(never, "not supported: the served model has no reasoning effort setting"),
  verbosity: onlyNeutral(never, "not supported: the served model has no verbosity setting"),
  moderation: onlyNeutral(never, "moderation is not supported"),
}).strict();

type Common = z.infer<z.ZodObject<typeof common>>;

/** Sampling, speculation and processing settings of a parsed body (OpenAI's defaults: temperature 1, top_p 1). */
function settings(gen: Generations, b: Common): Omit<GenerationRequest, "prompt" | "maxTokens"> {
  const processing = processingSpec(b, gen.svc.tokenizer.vocabSize);
  return {
    sampling: { temperature: b.temperature ?? 1, topP: b.top_p ?? 1, topK: b.top_k ?? 0 },
    seed: b.seed ?? undefined,
    stop: stopList(b.stop),
    method: b.method ?? undefined,
    treeSize: b.tree_size ?? undefined,
    depth: b.depth ?? undefined,
    budget: b.budget ?? undefined,
    ...(processing ? { processing } : {}),
  };
}

/** Checks across fields both routes share. */
function checkCommon(b: Common): void {
  if (b.stream_options != null && b.stream !== true) {
    throw new ApiError(400, "stream_options: only allowed with stream: true", { param: "stream_options" });
  }
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

/** 400 when one request asks for more generations than the queue could ever hold at once. */
function checkCount(gen: Generations, count: number, param: string, what: string): void {
  const most = gen.scheduler.maxQueue + 1;
  if (count > most) {
    throw new ApiError(
      400,
      `${param}: ${what} = ${count} generations; this server queues at most ${most} at once (--queue-depth ${gen.scheduler.maxQueue})`,
      { param },
    );
  }
}

/** The OpenAI finish_reason of a finished (not cancelled) generation. */
function finishReason(out: GenerationResult): "stop" | "length" {
  return out.finishReason === "length" ? "length" : "stop";
}

/** Generations may be seeded: the j-th of a prompt's takes seed + j. */
function seedOf(seed: number | undefined, j: number): number | undefined {
  return seed === undefined ? undefined : (seed + j) % 2 ** 32;
}

/** One token's entry in a logprobs list (null logprob: the prompt's first token; null top: none asked). */
interface Entry {
  id: number;
  logprob: number | null;
  top: [number, number][] | null;
  /** Where the token's text starts in the choice's text (completions' text_offset). */
  offset: number;
}

/** The logprobs entries of a choice, their text offsets kept. */
class Entries {
  constructor(private readonly gen: Generations, private at: number) {}

  /** A generated token's entry. */
  token(id: number, s: TokenScore | undefined): Entry {
    return this.entry(id, s?.logprob ?? null, s?.top ?? []);
  }

  /** The prompt's entries (the first has no logprob), from the engine's prompt event when it came. */
  prompt(ids: readonly number[], ev: PromptEvent | undefined): Entry[] {
    return ids.map((id, i) =>
      this.entry(id, i === 0 ? null : ev?.logprobs[i] ?? null, i === 0 ? null : ev?.top?.[i] ?? [])
    );
  }

  private entry(id: number, logprob: number | null, top: [number, number][] | null): Entry {
    const e = { id, logprob, top, offset: this.at };
    this.at += this.gen.pieces.of(id).text.length;
    return e;
  }
}

/** What differs between the two routes' wire formats. */
interface Format {
  /** `object` of the JSON answer and of stream chunks. */
  object: string;
  chunkObject: string;
  idPrefix: string;
  /** The choice of a JSON answer: its text, the logprobs entries when asked for. */
  choice(
    index: number,
    text: string,
    out: GenerationResult,
    entries: Entry[] | undefined,
  ): Record<string, unknown>;
  /** A stream chunk's choice carrying `text` (and the finish reason on the last one). */
  delta(
    index: number,
    text: string | undefined,
    finish: string | null,
    first: boolean,
    entries: Entry[] | undefined,
  ): Record<string, unknown>;
}

/**
 * Completions' logprobs: `{tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}`; each
 * top_logprobs object holds the asked-for most likely tokens and the sampled one, as OpenAI's does.
 */
function completionLogprobs(gen: Generations, entries: Entry[] | undefined) {
  if (!entries) return null;
  const piece = (id: number) => gen.pieces.of(id).text;
  return {
    tokens: entries.map((e) => piece(e.id)),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => {
      if (e.top === null) return null;
      // Object.fromEntries makes own properties even of keys like "__proto__"; the first (likeliest) wins.
      const m = new Map<string, number>();
      for (const [id, lp] of e.top) if (!m.has(piece(id))) m.set(piece(id), lp);
      if (e.logprob !== null && !m.has(piece(e.id))) m.set(piece(e.id), e.logprob);
      return Object.fromEntries(m);
    }),
    text_offset: entries.map((e) => e.offset),
  };
}

/** Chat's logprobs: `{content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}], refusal}`. */
function chatLogprobs(gen: Generations, entries: Entry[] | undefined) {
  if (!entries) return null;
  const token = (id: number) => ({ token: gen.pieces.of(id).text, bytes: gen.pieces.of(id).bytes });
  return {
    content: entries.map((e) => ({
      ...token(e.id),
      logprob: e.logprob,
      top_logprobs: (e.top ?? []).map(([id, lp]) => ({ ...token(id), logprob: lp })),
    })),
    refusal: null,
  };
}

function completionFormat(gen: Generations): Format {
  return {
    object: "text_completion",
    chunkObject: "text_completion",
    idPrefix: "cmpl-",
    choice: (index, text, out, entries) => ({
      index,
      text,
      logprobs: completionLogprobs(gen, entries),
      finish_reason: finishReason(out),
    }),
    delta: (index, text, finish, _first, entries) => ({
      index,
      text: text ?? "",
      logprobs: completionLogprobs(gen, entries),
      finish_reason: finish,
    }),
  };
}

function chatFormat(gen: Generations): Format {
  return {
    object: "chat.completion",
    chunkObject: "chat.completion.chunk",
    idPrefix: "chatcmpl-",
    choice: (index, text, out, entries) => ({
      index,
      message: { role: "assistant", content: text },
      logprobs: chatLogprobs(gen, entries),
      finish_reason: finishReason(out),
    }),
    delta: (index, text, finish, first, entries) => ({
      index,
      delta: first ? { role: "assistant", content: text ?? "" } : text === undefined ? {} : { content: text },
      logprobs: chatLogprobs(gen, entries),
      finish_reason: finish,
    }),
  };
}

/** One choice of a request: its generation, its prompt, and what is shown before its text (echo). */
interface Job {
  index: number;
  pending: PendingGeneration;
  prompt: number[];
  /** Completions' `echo`: the prompt's text, shown before the generated text. */
  echo?: string;
}

/** The prompts of a request and how its generations map to choices. */
interface Plan {
  /** Generations per prompt, in queue order: `perPrompt` of each prompt, prompt after prompt. */
  jobs: Job[];
  /** Choices returned per prompt (`n`); fewer than `perPrompt` with best_of. */
  n: number;
  perPrompt: number;
  /** Prompt tokens of each prompt (usage counts each prompt once, as OpenAI does). */
  promptTokens: number[];
  /** Logprobs asked for (the top count), or undefined. */
  logprobs?: number;
  /** Cancel every generation of the request (one failed). */
  cancel: () => void;
}

function usage(plan: Plan, outs: readonly GenerationResult[]) {
  const prompt = plan.promptTokens.reduce((a, b) => a + b, 0);
  const completion = outs.reduce((a, o) => a + o.ids.length, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** Mean log-probability per generated token (best_of's ranking); a choice without one ranks last. */
function meanLogprob(out: GenerationResult): number {
  if (!out.ids.length || !out.scores) return -Infinity;
  let s = 0;
  for (const sc of out.scores) {
    if (typeof sc.logprob !== "number") return -Infinity;
    s += sc.logprob;
  }
  return s / out.ids.length;
}

/** Answer `plan` in `fmt`, as JSON or as an SSE stream. */
function respond(
  c: Context,
  gen: Generations,
  fmt: Format,
  plan: Plan,
  client: AbortController,
  stream: { on: boolean; includeUsage: boolean },
) {
  const id = fmt.idPrefix + crypto.randomUUID().replaceAll("-", "");
  const created = Math.floor(Date.now() / 1000);
  const head = { id, object: fmt.object, created, model: gen.svc.name };
  // One failure ends the request: the generations still queued or running are cancelled.
  const failed = (e: unknown): never => {
    plan.cancel();
    throw e;
  };
  if (!stream.on) {
    return (async () => {
      const outs = await Promise.all(plan.jobs.map((j) => j.pending.run().catch(failed))).catch((e) => {
        if (client.signal.aborted) return undefined;
        throw e;
      });
      if (!outs || outs.some((o) => o.cancelCause === "client")) return clientGone();
      if (outs.some((o) => o.cancelCause === "shutdown")) throw shutdownError();
      const choices: Record<string, unknown>[] = [];
      for (let p = 0; p < plan.promptTokens.length; p++) {
        const group = plan.jobs.slice(p * plan.perPrompt, (p + 1) * plan.perPrompt)
          .map((job) => ({ job, out: outs[job.index] }));
        // best_of: the n with the highest mean token logprob (the sort is stable: ties keep their order).
        const kept = plan.perPrompt > plan.n
          ? group.map((g) => ({ g, score: meanLogprob(g.out) })).sort((x, y) => y.score - x.score)
            .slice(0, plan.n).map((x) => x.g)
          : group;
        kept.forEach(({ job, out }, j) => {
          let entries: Entry[] | undefined;
          if (plan.logprobs !== undefined) {
            entries = job.echo !== undefined ? new Entries(gen, 0).prompt(job.prompt, out.prompt) : [];
            const after = new Entries(gen, job.echo?.length ?? 0);
            entries.push(...out.ids.map((t, i) => after.token(t, out.scores?.[i])));
          }
          choices.push(fmt.choice(p * plan.n + j, (job.echo ?? "") + out.text, out, entries));
        });
      }
      return c.json({ ...head, choices, usage: usage(plan, outs), timings: timingsOf(outs) });
    })();
  }
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    JSON.stringify({ ...head, object: fmt.chunkObject, choices, ...extra });
  return sse(c, client, async (s) => {
    // The chat format opens each choice with the assistant role before any text.
    if (fmt.object === "chat.completion") {
      for (const job of plan.jobs) {
        await s.writeSSE({ data: chunk([fmt.delta(job.index, "", null, true, undefined)]) });
      }
    }
    const outs: GenerationResult[] = [];
    const results = await Promise.all(
      plan.jobs.map((job) => streamChoice(s, gen, fmt, plan, job, chunk, outs).catch(failed)),
    );
    if (results.some((o) => o === undefined)) return; // the client left
    if (stream.includeUsage) {
      await s.writeSSE({ data: chunk([], { usage: usage(plan, outs), timings: timingsOf(outs) }) });
    }
    await s.writeSSE({ data: "[DONE]" });
  });
}

/**
 * Stream one choice: its echo, its text with each chunk's logprobs, its finish chunk (carrying the
 * request's `timings` when it is the last choice to finish). Undefined when the client left.
 */
async function streamChoice(
  s: SSEStreamingApi,
  gen: Generations,
  fmt: Format,
  plan: Plan,
  job: Job,
  chunk: (choices: unknown[], extra?: Record<string, unknown>) => string,
  outs: GenerationResult[],
): Promise<GenerationResult | undefined> {
  const want = plan.logprobs !== undefined;
  // Entries of tokens whose text is not out yet (held back for a stop sequence or a split character).
  let held: Entry[] = [];
  const tokens = new Entries(gen, job.echo?.length ?? 0);
  const take = () => {
    if (!want) return undefined;
    const e = held;
    held = [];
    return e;
  };
  const send = (text: string | undefined, finish: string | null, extra?: Record<string, unknown>) =>
    s.writeSSE({ data: chunk([fmt.delta(job.index, text, finish, false, take())], extra) });
  // Echo: the prompt's text first, with the prompt's logprobs when asked for (they come with the engine's
  // prompt event, before the first token; without one the chunk goes out before the first token's).
  let echoed = job.echo === undefined;
  const echo = async (ev?: PromptEvent) => {
    if (echoed) return;
    echoed = true;
    if (want) held = new Entries(gen, 0).prompt(job.prompt, ev);
    await send(job.echo, null);
  };
  const out = await job.pending.run(async (id, text, ev) => {
    await echo();
    if (want) held.push(tokens.token(id, ev));
    if (text) await send(text, null);
  }, (ev) => echo(ev));
  if (out.cancelCause === "client") return undefined;
  if (out.cancelCause === "shutdown") throw shutdownError();
  await echo();
  if (out.tail) await send(out.tail, null);
  // Pushed and compared in one step: exactly one choice, the last to finish, carries the timings.
  outs.push(out);
  const last = outs.length === plan.jobs.length;
  await send(undefined, finishReason(out), last ? { timings: timingsOf(outs) } : {});
  return out;
}

/** Register POST /v1/completions and POST /v1/chat/completions on `app`. */
export function openaiRoutes(app: Hono, gen: Generations, maxBodyBytes: number): void {
  const vocab = gen.svc.tokenizer.vocabSize;
  const COMPLETION = completionFormat(gen);
  const CHAT = chatFormat(gen);

  app.post("/v1/completions", async (c) => {
    const b = await parseBody(c, completionsSchema, maxBodyBytes);
    checkModel(gen, b.model);
    checkCommon(b);
    const n = b.n ?? 1;
    const perPrompt = b.best_of ?? n;
    if (perPrompt < n) {
      throw new ApiError(400, `best_of: must be at least n (${n}), got ${perPrompt}`, { param: "best_of" });
    }
    if (perPrompt > n && b.stream) {
      throw new ApiError(400, "best_of: cannot be used with stream: true (only best_of = n)", {
        param: "best_of",
      });
    }
    const echo = b.echo ?? false;
    if (b.max_tokens === 0 && !echo) {
      throw new ApiError(400, "max_tokens: must be at least 1 (0 only with echo: the prompt alone)", {
        param: "max_tokens",
      });
    }
    // The prompts, as strings or token ids (a single prompt is a list of one).
    const raw = b.prompt;
    const list: (string | number[])[] = typeof raw === "string"
      ? [raw]
      : typeof raw[0] === "number"
      ? [raw as number[]]
      : raw as (string[] | number[][]);
    const nested = Array.isArray(raw) && typeof raw[0] !== "number";
    checkCount(
      gen,
      list.length * perPrompt,
      perPrompt > 1 ? (b.best_of != null ? "best_of" : "n") : "prompt",
      `${list.length} prompt${list.length > 1 ? "s" : ""} x ${perPrompt}`,
    );
    const prompts = list.map((p, i) => {
      if (typeof p === "string") return { ids: gen.svc.tokenizer.encode(p), text: p };
      const bad = p.findIndex((t) => t >= vocab);
      if (bad >= 0) {
        const param = nested ? `prompt[${i}][${bad}]` : `prompt[${bad}]`;
        throw new ApiError(400, `${param}: token id ${p[bad]} is outside the vocabulary (${vocab} tokens)`, {
          param,
        });
      }
      return { ids: p, text: gen.svc.tokenizer.decode(p) };
    });
    const base = settings(gen, b);
    const rank = perPrompt > n;
    const logprobs = b.logprobs ?? undefined;
    // best_of ranks by the tokens' own logprobs: asked of the engine even when the client wants none.
    const engineLogprobs = logprobs ?? (rank ? 0 : undefined);
    const reqs: GenerationRequest[] = [];
    for (const p of prompts) {
      const maxTokens = b.max_tokens ??
        Math.max(1, Math.min(COMPLETIONS_DEFAULT_MAX_TOKENS, gen.context - p.ids.length));
      for (let j = 0; j < perPrompt; j++) {
        reqs.push({
          ...base,
          seed: seedOf(base.seed, j),
          prompt: p.ids,
          maxTokens,
          ...(engineLogprobs !== undefined ? { logprobs: engineLogprobs } : {}),
          ...(echo && logprobs !== undefined ? { promptLogprobs: true } : {}),
        });
      }
    }
    const client = clientAbort(c);
    const group = new AbortController();
    const pendings = gen.prepareMany(reqs, AbortSignal.any([client.signal, group.signal]));
    const jobs = pendings.map((pending, k) => {
      const p = prompts[Math.floor(k / perPrompt)];
      return { index: k, pending, prompt: p.ids, ...(echo ? { echo: p.text } : {}) };
    });
    return respond(
      c,
      gen,
      COMPLETION,
      {
        jobs,
        n,
        perPrompt,
        promptTokens: prompts.map((p) => p.ids.length),
        ...(logprobs !== undefined ? { logprobs } : {}),
        cancel: () => group.abort(),
      },
      client,
      {
        on: b.stream ?? false,
        includeUsage: b.stream_options?.include_usage ?? false,
      },
    );
  });

  app.post("/v1/chat/completions", async (c) => {
    const b = await parseBody(c, chatSchema, maxBodyBytes);
    checkModel(gen, b.model);
    checkCommon(b);
    if (b.top_logprobs && b.logprobs !== true) {
      throw new ApiError(400, "top_logprobs: needs logprobs: true", { param: "top_logprobs" });
    }
    if (!gen.svc.tokenizer.hasChatTemplate) {
      throw new ApiError(
        400,
        "messages: this model has no chat template (tokenizer_config.json); use /v1/completions",
        {
          param: "messages",
        },
      );
    }
    const n = b.n ?? 1;
    checkCount(gen, n, "n", "n");
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
    const logprobs = b.logprobs ? b.top_logprobs ?? 0 : undefined;
    const base = settings(gen, b);
    const reqs: GenerationRequest[] = Array.from({ length: n }, (_, j) => ({
      ...base,
      seed: seedOf(base.seed, j),
      prompt,
      maxTokens,
      ...(logprobs !== undefined ? { logprobs } : {}),
    }));
    const client = clientAbort(c);
    const group = new AbortController();
    const pendings = gen.prepareMany(reqs, AbortSignal.any([client.signal, group.signal]), {
      maxTokens: param,
      prompt: "messages",
    });
    return respond(
      c,
      gen,
      CHAT,
      {
        jobs: pendings.map((pending, k) => ({ index: k, pending, prompt })),
        n,
        perPrompt: n,
        promptTokens: [prompt.length],
        ...(logprobs !== undefined ? { logprobs } : {}),
        cancel: () => group.abort(),
      },
      client,
      {
        on: b.stream ?? false,
        includeUsage: b.stream_options?.include_usage ?? false,
      },
    );
  });
}
