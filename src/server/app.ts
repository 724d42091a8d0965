/**
 * The HTTP app (hono), with no socket: `createApp(service)` is served by `Deno.serve` in cli/serve.ts and
 * tested with `app.request()`. Every body is zod-validated; every error uses the OpenAI envelope.
 *
 * Routes: GET /health (live), GET /ready (loaded, profiled, not draining), GET /metrics (Prometheus),
 * GET /v1/models, GET /v1/status, POST /v1/generate (native), POST /v1/completions and
 * POST /v1/chat/completions (OpenAI). Unknown paths answer 404, known paths with another method 405.
 *
 * @module
 */

import { Hono } from "hono";
import { METHODS } from "../speculative/methods.ts";
import { bearerAuth } from "./auth.ts";
import { MAX_BODY_BYTES } from "./body.ts";
import { ApiError, unexpectedError } from "./errors.ts";
import { Generations, type ModelService } from "./generation.ts";
import { ServerMetrics } from "./metrics.ts";
import { nativeRoutes } from "./native.ts";
import { openaiRoutes } from "./openai.ts";
import { Scheduler } from "./queue.ts";

export { localService, type ModelService } from "./generation.ts";
export { MAX_BODY_BYTES } from "./body.ts";

/** Default number of generations that may wait behind the running one. */
export const DEFAULT_MAX_QUEUE = 16;

/** Options of {@link createApp}; every field has a default. */
export interface AppOptions {
  /** Generations waiting behind the running one before 429 (default {@link DEFAULT_MAX_QUEUE}). */
  maxQueue?: number;
  /** Largest request body in bytes (default {@link MAX_BODY_BYTES}); larger ones get 413. */
  maxBodyBytes?: number;
  /** When set, /v1/* and /metrics need `Authorization: Bearer <apiKey>` (401 otherwise). */
  apiKey?: string;
  /** The queue, when the caller drains it at shutdown (default: a new one of `maxQueue`). */
  scheduler?: Scheduler;
  /** The metrics registry (default: a new one). */
  metrics?: ServerMetrics;
}

/** Every route and its methods, for 405 answers and bounded metric labels. */
const ROUTES: Record<string, string[]> = {
  "/health": ["GET"],
  "/ready": ["GET"],
  "/metrics": ["GET"],
  "/v1/models": ["GET"],
  "/v1/status": ["GET"],
  "/v1/generate": ["POST"],
  "/v1/completions": ["POST"],
  "/v1/chat/completions": ["POST"],
};

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
  const gen = new Generations(svc, scheduler, metrics);
  const created = Math.floor(Date.now() / 1000);
  metrics.gauge("specdec_queue_depth", "Generations waiting for the model.", () => scheduler.waiting);
  metrics.gauge("specdec_queue_running", "Generations running (0 or 1).", () => scheduler.running);
  metrics.gauge(
    "specdec_queue_limit",
    "Most generations that may wait (more get 429).",
    () => scheduler.maxQueue,
  );

  // Count every answer, errors included, by route (unknown paths share one label: bounded cardinality).
  app.use("*", async (c, next) => {
    await next();
    const route = c.req.path in ROUTES ? c.req.path : "other";
    metrics.requests.inc({ route, status: String(c.res.status) });
  });
  if (opts.apiKey !== undefined) {
    const auth = bearerAuth(opts.apiKey);
    app.use("/v1/*", auth);
    app.use("/metrics", auth);
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
      methods: svc.engine.hasDraft ? [...METHODS] : ["ar"],
      default_method: svc.defaultMethod ?? "ar",
      tree: svc.tree ?? {},
      acceptance: svc.engine.liveAcceptance() ?? svc.acceptance ?? null,
      profile: svc.status ?? null,
      queue: { waiting: scheduler.waiting, running: scheduler.running, limit: scheduler.maxQueue },
      context: gen.context,
    }));
  app.get(
    "/v1/models",
    (c) =>
      c.json({ object: "list", data: [{ id: svc.name, object: "model", created, owned_by: "specdec" }] }),
  );
  nativeRoutes(app, gen, maxBody);
  openaiRoutes(app, gen, maxBody);

  // A known path with another method: 405 naming the allowed ones (hono answers HEAD with GET routes).
  for (const [path, methods] of Object.entries(ROUTES)) {
    const allow = methods.includes("GET") ? [...methods, "HEAD"] : methods;
    app.all(path, (c) => {
      throw new ApiError(405, `method ${c.req.method} is not allowed on ${path}; use ${allow.join(" or ")}`, {
        headers: { Allow: allow.join(", ") },
      });
    });
  }
  app.notFound((c) => c.json(new ApiError(404, `no route ${c.req.method} ${c.req.path}`).envelope(), 404));
  app.onError((err, c) => {
    if (err instanceof ApiError) return c.json(err.envelope(), err.status, err.options.headers);
    console.error(`[server] ${c.req.method} ${c.req.path}: ${err.stack ?? err.message}`);
    const api = unexpectedError(err);
    return c.json(api.envelope(), api.status);
  });
  return app;
}
