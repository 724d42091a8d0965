/**
 * The HTTP app (hono), with no socket: `createApp(service)` is served by `Deno.serve` in cli/serve.ts and
 * tested with `app.request()`. Every body is zod-validated; every error uses the OpenAI envelope.
 *
 * Routes: GET /health (live), GET /ready (loaded, profiled, not draining), GET /metrics (Prometheus),
 * GET /v1/models, GET /v1/models/{id}, GET /v1/status, POST /v1/generate (native), POST /v1/completions
 * and POST /v1/chat/completions (OpenAI), POST /tokenize and POST /detokenize (llama.cpp's shapes).
 * Unknown paths answer 404, known paths with another method 405. A request body must arrive within
 * `bodyTimeoutMs` (408); a client that disconnects while sending it is counted as 499.
 *
 * @module
 */

import { Hono } from "hono";
import { DRAFT_FREE_METHODS, METHODS } from "../speculative/methods.ts";
import { bearerAuth } from "./auth.ts";
import { DEFAULT_BODY_TIMEOUT_MS, MAX_BODY_BYTES } from "./body.ts";
import { ApiError, ClientAbortError, unexpectedError } from "./errors.ts";
import { Generations, type ModelService } from "./generation.ts";
import { ServerMetrics } from "./metrics.ts";
import { nativeRoutes } from "./native.ts";
import { openaiRoutes } from "./openai.ts";
import { Scheduler } from "./queue.ts";
import { clientGone } from "./http.ts";
import { tokenizeRoutes } from "./tokenize.ts";

export { localService, type ModelService } from "./generation.ts";
export { DEFAULT_BODY_TIMEOUT_MS, MAX_BODY_BYTES } from "./body.ts";

/** Default number of generations that may wait behind the running one. */
export const DEFAULT_MAX_QUEUE = 16;

/** Options of {@link createApp}; every field has a default. */
export interface AppOptions {
  /** Generations waiting behind the running one before 429 (default {@link DEFAULT_MAX_QUEUE}). */
  maxQueue?: number;
  /** Largest request body in bytes (default {@link MAX_BODY_BYTES}); larger ones get 413. */
  maxBodyBytes?: number;
  /**
   * Time a client has to send its whole request body, from the start of reading it, in ms (default
   * {@link DEFAULT_BODY_TIMEOUT_MS}; 0 = no limit); slower ones get 408.
   */
  bodyTimeoutMs?: number;
  /**
   * When set, /v1/*, /tokenize, /detokenize and /metrics need `Authorization: Bearer <apiKey>`
   * (401 otherwise).
   */
  apiKey?: string;
  /** The queue, when the caller drains it at shutdown (default: a new one of `maxQueue`). */
  scheduler?: Scheduler;
  /** The metrics registry (default: a new one). */
  metrics?: ServerMetrics;
}

/** A model id in a path: one or more characters, "/" included (hono decodes %2F). */
const MODEL_ID_ROUTE = "/v1/models/:id{.+}";

/**
 * Every route (hono path pattern) and its methods, for 405 answers and bounded metric labels: the
 * label of a route with a parameter names the parameter, never its value.
 */
const ROUTES: Record<string, { methods: string[]; label: string }> = {
  "/health": { methods: ["GET"], label: "/health" },
  "/ready": { methods: ["GET"], label: "/ready" },
  "/metrics": { methods: ["GET"], label: "/metrics" },
  "/v1/models": { methods: ["GET"], label: "/v1/models" },
  [MODEL_ID_ROUTE]: { methods: ["GET"], label: "/v1/models/{id}" },
  "/v1/status": { methods: ["GET"], label: "/v1/status" },
  "/v1/generate": { methods: ["POST"], label: "/v1/generate" },
  "/v1/completions": { methods: ["POST"], label: "/v1/completions" },
  "/v1/chat/completions": { methods: ["POST"], label: "/v1/chat/completions" },
  "/tokenize": { methods: ["POST"], label: "/tokenize" },
  "/detokenize": { methods: ["POST"], label: "/detokenize" },
};

/** The metric label of a request path: its route's label, or "other" (bounded cardinality). */
export function routeLabel(path: string): string {
  if (path !== MODEL_ID_ROUTE && Object.hasOwn(ROUTES, path)) return ROUTES[path].label;
  if (path.startsWith("/v1/models/") && path.length > "/v1/models/".length) return "/v1/models/{id}";
  return "other";
}

/**
 * Build the hono app for `svc`.
 *
 * @example
 * ```ts
 * const app = createApp(service, { maxQueue: 8, apiKey: Deno.env.get("SPECDEC_API_KEY") });
 * Deno.serve({ port: 8000 }, app.fetch);
 * ```
 */
export function createApp(svc: ModelService, opts: AppOptions = {}): Hono {
  const app = new Hono();
  const scheduler = opts.scheduler ?? new Scheduler({ maxQueue: opts.maxQueue ?? DEFAULT_MAX_QUEUE });
  const metrics = opts.metrics ?? new ServerMetrics();
  const maxBody = opts.maxBodyBytes ?? MAX_BODY_BYTES;
  const bodyTimeoutMs = opts.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS;
  if (!(bodyTimeoutMs >= 0)) throw new RangeError(`bodyTimeoutMs must be >= 0, got ${bodyTimeoutMs}`);
  const gen = new Generations(svc, scheduler, metrics);
  const created = Math.floor(Date.now() / 1000);
  metrics.gauge("specdec_queue_depth", "Generations waiting for the model.", () => scheduler.waiting);
  metrics.gauge(
    "specdec_queue_running",
    "Generations running (at most the batch limit, --max-batch; 1 without).",
    () => scheduler.running,
  );
  metrics.gauge(
    "specdec_queue_limit",
    "Most generations that may wait (more get 429).",
    () => scheduler.maxQueue,
  );

  // Count every answer, errors included, by route (unknown paths share one label: bounded cardinality);
  // a client gone mid-body is a 499 here (the error handler answers it with clientGone()).
  app.use("*", async (c, next) => {
    c.set("bodyTimeoutMs", bodyTimeoutMs);
    await next();
    metrics.requests.inc({ route: routeLabel(c.req.path), status: String(c.res.status) });
    // Draining: no connection is kept alive for another request, so a balancer that reuses upstream
    // connections never sends one on a connection the shutdown is about to close.
    if (scheduler.isDraining) c.res.headers.set("Connection", "close");
  });
  if (opts.apiKey !== undefined) {
    const auth = bearerAuth(opts.apiKey);
    app.use("/v1/*", auth);
    app.use("/metrics", auth);
    // llama.cpp guards these too: they run the tokenizer on up to a body's worth of text.
    app.use("/tokenize", auth);
    app.use("/detokenize", auth);
  }

  app.get("/health", (c) => c.json({ status: "ok" }));
  // The app exists only once the models are loaded and profiled; it stops being ready when draining.
  app.get(
    "/ready",
    (c) => scheduler.isDraining ? c.json({ status: "draining" }, 503) : c.json({ status: "ready" }),
  );
  app.get("/metrics", (c) => c.text(metrics.render(), 200, { "Content-Type": "text/plain; version=0.0.4" }));
  app.get("/v1/status", (c) =>
    c.json({
      model: svc.name,
      backend: svc.backend?.backend ?? null,
      threads: svc.backend?.threads ?? null,
      device: svc.backend?.device ?? null,
      backend_choice: svc.backend?.choice ?? null,
      methods: svc.engine.hasDraft ? [...METHODS] : [...DRAFT_FREE_METHODS],
      default_method: svc.defaultMethod ?? "ar",
      tree: svc.tree ?? {},
      acceptance: svc.engine.liveAcceptance() ?? svc.acceptance ?? null,
      profile: svc.status ?? null,
      queue: { waiting: scheduler.waiting, running: scheduler.running, limit: scheduler.maxQueue },
      context: gen.context,
    }));
  const model = { id: svc.name, object: "model", created, owned_by: "specdec" };
  app.get("/v1/models", (c) => c.json({ object: "list", data: [model] }));
  // OpenAI's GET /v1/models/{model}: the served model, or 404 model_not_found (a name, never a path).
  app.get(MODEL_ID_ROUTE, (c) => {
    const id = c.req.param("id");
    if (id !== svc.name) {
      throw new ApiError(
        404,
        `model ${JSON.stringify(id.slice(0, 200))} does not exist; this server serves "${svc.name}"`,
        { param: "model", code: "model_not_found" },
      );
    }
    return c.json(model);
  });
  nativeRoutes(app, gen, maxBody);
  openaiRoutes(app, gen, maxBody);
  tokenizeRoutes(app, svc, maxBody);

  // A known path with another method: 405 naming the allowed ones (hono answers HEAD with GET routes).
  for (const [path, { methods, label }] of Object.entries(ROUTES)) {
    const allow = methods.includes("GET") ? [...methods, "HEAD"] : methods;
    app.all(path, (c) => {
      const message = `method ${c.req.method} is not allowed on ${label}; use ${allow.join(" or ")}`;
      throw new ApiError(405, message, { headers: { Allow: allow.join(", ") } });
    });
  }
  app.notFound((c) => c.json(new ApiError(404, `no route ${c.req.method} ${c.req.path}`).envelope(), 404));
  app.onError((err, c) => {
    if (err instanceof ApiError) return c.json(err.envelope(), err.status, err.options.headers);
    if (err instanceof ClientAbortError) {
      // Nobody to answer; one line, no stack: this is the client's doing, not the server's.
      console.error(`[server] ${c.req.method} ${c.req.path}: ${err.message}`);
      return clientGone();
    }
    console.error(`[server] ${c.req.method} ${c.req.path}: ${err.stack ?? err.message}`);
    const api = unexpectedError(err);
    return c.json(api.envelope(), api.status);
  });
  return app;
}
