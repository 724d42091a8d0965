/**
 * Errors the way the OpenAI API writes them: `{"error": {"message", "type", "param", "code"}}` beside
 * the HTTP status. Route code throws {@link ApiError}; the app's error handler writes the envelope, so
 * every route (native or OpenAI-compatible) fails in one shape.
 *
 * @module
 */

import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import { CheckpointError } from "../model/safetensors.ts";

/** The body of every error answer. */
export interface ErrorEnvelope {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** Optional parts of an {@link ApiError}. */
export interface ApiErrorOptions {
  /** OpenAI error type; derived from the status when omitted. */
  type?: string;
  /** The request field at fault, e.g. "messages[0].content". */
  param?: string | null;
  /** Machine-readable code, e.g. "context_length_exceeded". */
  code?: string | null;
  /** Extra response headers (Retry-After, Allow, WWW-Authenticate). */
  headers?: Record<string, string>;
}

/**
 * An error answered to the client with `status` and the OpenAI envelope.
 *
 * @example
 * ```ts
 * throw new ApiError(400, "max_tokens: must be at least 1", { param: "max_tokens" });
 * ```
 */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly options: ApiErrorOptions = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** The envelope written as the response body. */
  envelope(): ErrorEnvelope {
    return {
      error: {
        message: this.message,
        type: this.options.type ?? typeForStatus(this.status),
        param: this.options.param ?? null,
        code: this.options.code ?? null,
      },
    };
  }
}

/** The OpenAI error type clients switch on, by status. */
function typeForStatus(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** A zod issue path as a client writes it: `["messages", 0, "content"]` -> `messages[0].content`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s;
}

/** A 400 for the first zod issue, naming the field path and what was wrong with it. */
export function fromZod(e: z.ZodError): ApiError {
  const issue = e.issues[0];
  // Unknown keys are reported on the parent object; name the keys themselves, which is what a client
  // misspelled (and what a request that tries to name a file or a model path gets back).
  const keys = issue.code === "unrecognized_keys" ? issue.keys : [];
  const param = keys.length ? fieldPath([...issue.path, keys[0]]) : fieldPath(issue.path);
  const message = keys.length
    ? `${keys.map((k) => fieldPath([...issue.path, k])).join(", ")}: unknown field${
      keys.length > 1 ? "s" : ""
    }`
    : `${param || "body"}: ${issue.message}`;
  return new ApiError(400, message, { param: param || null });
}

/**
 * What a client is told about an unexpected failure (the full error goes to the server log). Weights
 * that could not be read (a paged checkpoint truncated or changed on disk) are a 503 with their own code:
 * the server stays up and later requests work once the file is back; file paths are not disclosed.
 */
export function unexpectedError(e: unknown): ApiError {
  if (e instanceof CheckpointError) {
    return new ApiError(
      503,
      "the model's weights could not be read from disk (the checkpoint was truncated or changed while " +
        "serving); see the server log",
      { code: "weights_unavailable" },
    );
  }
  return new ApiError(500, "internal server error");
}

/** The status counted for a client that went away before its answer (nginx's "client closed request"). */
export const CLIENT_CLOSED_REQUEST = 499;

/**
 * The client closed the connection before its request body was complete: the body stream failed (the
 * `cause`; on Deno 2.9 `BadResource: Cannot read request body as underlying resource unavailable`).
 * Nobody is left to answer: the app counts it as status {@link CLIENT_CLOSED_REQUEST} and logs one
 * line, not a stack trace.
 */
export class ClientAbortError extends Error {
  constructor(
    /** Body bytes received before the connection went away. */
    readonly bytesRead: number,
    cause?: unknown,
  ) {
    const why = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause ?? "closed");
    const message =
      `the client closed the connection while sending the request body (${bytesRead} bytes read; ${why})`;
    super(message, { cause });
    this.name = "ClientAbortError";
  }
}
