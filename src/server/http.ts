/**
 * Request and response plumbing shared by the routes: body -> zod-validated value, the client's
 * disconnect as an AbortSignal, and SSE streams that end in an error event instead of a broken
 * connection.
 *
 * @module
 */

import type { Context } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import type { z } from "zod";
import { ApiError, CLIENT_CLOSED_REQUEST, fromZod, unexpectedError } from "./errors.ts";
import { DEFAULT_BODY_TIMEOUT_MS, readJson } from "./body.ts";

declare module "hono" {
  interface ContextVariableMap {
    /** How long a route may take to read this request's body, in ms (0 = no limit); set by the app. */
    bodyTimeoutMs: number | undefined;
  }
}

/**
 * Read the body as JSON and validate it with `schema`: 413/408/400 as {@link ApiError}, a client that
 * disconnects mid-body as `ClientAbortError`. The time limit is the request's `bodyTimeoutMs`
 * (createApp's `bodyTimeoutMs`; {@link DEFAULT_BODY_TIMEOUT_MS} when unset).
 */
export async function parseBody<S extends z.ZodType>(
  c: Context,
  schema: S,
  maxBytes: number,
): Promise<z.infer<S>> {
  const raw = await readJson(c.req.raw, maxBytes, c.get("bodyTimeoutMs") ?? DEFAULT_BODY_TIMEOUT_MS);
  const r = schema.safeParse(raw);
  if (!r.success) throw fromZod(r.error);
  return r.data;
}

/** Aborts when the client disconnects (the request's signal; a streamed body's cancel adds to it). */
export function clientAbort(c: Context): AbortController {
  const ac = new AbortController();
  const sig = c.req.raw.signal;
  if (sig?.aborted) ac.abort();
  else sig?.addEventListener("abort", () => ac.abort(), { once: true });
  return ac;
}

/** A response the client will never read: it went away (nginx's 499, for the access metrics). */
export function clientGone(): Response {
  return new Response(null, { status: CLIENT_CLOSED_REQUEST });
}

/** True for the rejection of a queue slot or engine run that was aborted. */
export function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === "AbortError";
}

/**
 * An SSE response whose events `write` produces. The stream's cancellation (client gone) aborts
 * `client`; an error after the headers were sent becomes one `data: {"error": ...}` event (the shape
 * OpenAI clients raise from) and the stream ends without `[DONE]`.
 */
export function sse(
  c: Context,
  client: AbortController,
  write: (s: SSEStreamingApi) => Promise<void>,
): Response {
  return streamSSE(c, async (s) => {
    s.onAbort(() => client.abort());
    try {
      await write(s);
    } catch (e) {
      if (client.signal.aborted && isAbort(e)) return; // nobody is listening
      const err = e instanceof ApiError ? e : unexpectedError(e);
      if (!(e instanceof ApiError)) {
        console.error(`[server] stream ${c.req.path}: ${(e as Error)?.stack ?? e}`);
      }
      await s.writeSSE({ data: JSON.stringify(err.envelope()) });
    }
  });
}
