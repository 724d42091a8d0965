/**
 * The HTTP app (hono), with no socket: `createApp(service)` is served by `Deno.serve` in cli/serve.ts and
 * tested with `app.request()`. Every body is zod-validated; errors use the OpenAI error envelope.
 *
 * Routes: GET /health, GET /v1/models, POST /v1/generate (JSON or SSE with `stream: true`).
 *
 * @module
 */

import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import type { CausalLM } from "../model/types.ts";
import type { ModelTokenizer } from "../model/tokenizer.ts";
import type { FinishReason, GenerationStats } from "../engine/autoregressive.ts";
import { decode } from "../engine/decoder.ts";
import { type Method, METHODS, type TreeOptions } from "../spec/methods.ts";
import type { AdaptiveSequoiaPlan } from "../spec/adaptive.ts";

/** What the app serves: one target model, its tokenizer, and optionally a draft for speculation. */
export interface ModelService {
  name: string;
  model: CausalLM;
  tokenizer: ModelTokenizer;
  /** Draft model; without it only "ar" is available. */
  draft?: CausalLM;
  /** Method used when a request names none. */
  defaultMethod?: Method;
  /** Default tree settings (e.g. the hardware-aware pick) and Sequoia's acceptance vector. */
  tree?: TreeOptions;
  acceptance?: number[];
  /** Sequoia's self-re-planning tree, shared by all requests. */
  adaptive?: AdaptiveSequoiaPlan;
  /** What GET /v1/status reports about the startup profile. */
  status?: Record<string, unknown>;
}

/** Largest accepted request body. */
export const MAX_BODY_BYTES = 1024 * 1024;

const generateSchema = z.object({
  prompt: z.string().min(1).max(200_000),
  max_tokens: z.number().int().min(1).max(100_000).default(128),
  temperature: z.number().min(0).max(100).default(0.7),
  top_p: z.number().gt(0).max(1).default(1),
  top_k: z.number().int().min(0).max(1_000_000).default(0),
  seed: z.number().int().min(0).max(2 ** 32 - 1).optional(),
  stream: z.boolean().default(false),
  method: z.enum(METHODS).optional(),
  tree_size: z.number().int().min(1).max(256).optional(),
  depth: z.number().int().min(1).max(32).optional(),
  budget: z.number().int().min(1).max(1024).optional(),
}).strict();

/** Body of POST /v1/generate. */
export type GenerateRequest = z.infer<typeof generateSchema>;

function errorBody(message: string, type: string, param: string | null = null, code: string | null = null) {
  return { error: { message, type, param, code } };
}

/** Serialises generations: one GPU (or CPU model), one sequence at a time, in arrival order. */
class Fifo {
  private tail: Promise<void> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(() => {}, () => {});
    return result;
  }
}

/** Build the hono app for `svc`. */
export function createApp(svc: ModelService): Hono {
  const app = new Hono();
  const queue = new Fifo();
  const ctx = svc.model.config.maxPositions;

  app.use(
    "*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) =>
        c.json(errorBody(`request body exceeds ${MAX_BODY_BYTES} bytes`, "invalid_request_error"), 413),
    }),
  );

  app.get("/health", (c) => c.json({ status: "ok" }));
  // The app exists only once the models are loaded (and profiled): ready as soon as it answers.
  app.get("/ready", (c) => c.json({ status: "ready" }));
  app.get("/v1/status", (c) =>
    c.json({
      model: svc.name,
      methods: svc.draft ? [...METHODS] : ["ar"],
      default_method: svc.defaultMethod ?? "ar",
      tree: svc.tree ?? {},
      acceptance: svc.adaptive?.acceptance ?? svc.acceptance ?? null,
      profile: svc.status ?? null,
    }));

  app.get(
    "/v1/models",
    (c) =>
      c.json({ object: "list", data: [{ id: svc.name, object: "model", created: 0, owned_by: "local" }] }),
  );

  app.post("/v1/generate", async (c) => {
    let raw: unknown;
    try {
      raw = await c.req.json();
    } catch {
      return c.json(errorBody("request body is not valid JSON", "invalid_request_error"), 400);
    }
    const r = generateSchema.safeParse(raw);
    if (!r.success) {
      const i = r.error.issues[0];
      const param = i.path.join(".") || null;
      return c.json(errorBody(`${param ?? "body"}: ${i.message}`, "invalid_request_error", param), 400);
    }
    const req = r.data;
    const method = req.method ?? svc.defaultMethod ?? "ar";
    if (method !== "ar" && !svc.draft) {
      return c.json(
        errorBody(
          `method "${method}" needs a draft model; this server has none`,
          "invalid_request_error",
          "method",
        ),
        400,
      );
    }
    if (method === "sequoia" && !svc.acceptance) {
      return c.json(
        errorBody(
          `method "sequoia" needs an acceptance vector; start the server with a draft`,
          "invalid_request_error",
          "method",
        ),
        400,
      );
    }
    const prompt = svc.tokenizer.encode(req.prompt);
    if (prompt.length + req.max_tokens > ctx) {
      return c.json(
        errorBody(
          `prompt (${prompt.length} tokens) + max_tokens (${req.max_tokens}) exceeds the context of ${ctx} tokens`,
          "invalid_request_error",
          "max_tokens",
          "context_length_exceeded",
        ),
        400,
      );
    }
    const abort = new AbortController();
    c.req.raw.signal?.addEventListener("abort", () => abort.abort());
    const events = (onToken: (id: number, text: string) => Promise<void>) =>
      queue.run(async () => {
        const dec = svc.tokenizer.streamDecoder();
        const ids: number[] = [];
        let finish: FinishReason = "length";
        let stats: GenerationStats | undefined;
        const tree = {
          ...svc.tree,
          treeSize: req.tree_size ?? svc.tree?.treeSize,
          depth: req.depth ?? svc.tree?.depth,
          budget: req.budget ?? svc.tree?.budget,
        };
        // The shared adaptive plan only serves requests that keep the server's tree.
        const adaptive = req.tree_size === undefined && req.depth === undefined ? svc.adaptive : undefined;
        for await (
          const ev of decode(method, svc.model, svc.draft, prompt, {
            tree,
            acceptance: svc.acceptance,
            adaptive,
            log: (l) => console.error(`[server] ${l}`),
            maxTokens: req.max_tokens,
            sampling: { temperature: req.temperature, topK: req.top_k, topP: req.top_p },
            seed: req.seed ?? crypto.getRandomValues(new Uint32Array(1))[0],
            eosIds: svc.tokenizer.eosIds,
            signal: abort.signal,
          })
        ) {
          if (ev.type === "step") continue;
          if (ev.type === "token") {
            ids.push(ev.id);
            await onToken(ev.id, dec.push(ev.id));
          } else {
            finish = ev.finishReason;
            stats = ev.stats;
          }
        }
        return { ids, tail: dec.flush(), finish, stats: stats! };
      });

    if (!req.stream) {
      const out = await events(() => Promise.resolve());
      return c.json({
        text: svc.tokenizer.decode(out.ids),
        tokens: out.ids,
        finish_reason: out.finish,
        usage: {
          prompt_tokens: prompt.length,
          completion_tokens: out.ids.length,
          total_tokens: prompt.length + out.ids.length,
        },
        method,
        stats: out.stats,
      });
    }
    return streamSSE(c, async (s) => {
      s.onAbort(() => abort.abort());
      const out = await events((id, text) => s.writeSSE({ data: JSON.stringify({ token: id, text }) }));
      await s.writeSSE({
        data: JSON.stringify({ text: out.tail, finish_reason: out.finish, stats: out.stats }),
      });
      await s.writeSSE({ data: "[DONE]" });
    });
  });

  app.notFound((c) => c.json(errorBody(`no route ${c.req.method} ${c.req.path}`, "not_found_error"), 404));
  app.onError((err, c) => {
    console.error(`[server] ${c.req.method} ${c.req.path}: ${err.message}`);
    return c.json(errorBody("internal server error", "server_error"), 500);
  });
  return app;
}
