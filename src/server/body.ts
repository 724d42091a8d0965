/**
 * Reading a JSON request body defensively: a byte limit enforced while reading (not only from
 * Content-Length, which a client may omit or lie about), a deadline for the whole body (a client that
 * sends headers and then stalls gets 408 instead of holding a handler forever), strict UTF-8, JSON
 * syntax errors as 400s, and a client that disconnects mid-upload as a {@link ClientAbortError}.
 *
 * @module
 */

import { ApiError, ClientAbortError } from "./errors.ts";

/** Default largest accepted request body: 1 MiB, far above any prompt that fits the context. */
export const MAX_BODY_BYTES = 1024 * 1024;

/** Default time a client has to send its whole request body, from the start of reading it (ms). */
export const DEFAULT_BODY_TIMEOUT_MS = 30_000;

function tooLarge(limit: number, got: string): ApiError {
  return new ApiError(413, `request body exceeds ${limit} bytes (${got})`, { code: "body_too_large" });
}

/**
 * The 408 of a body that did not arrive in time. `Connection: close`: the rest of the body is never
 * read, so the connection cannot carry another request.
 */
export function bodyTimeout(timeoutMs: number, bytesRead: number): ApiError {
  return new ApiError(
    408,
    `the request body did not arrive within ${timeoutMs / 1000} s (${bytesRead} bytes received)`,
    { code: "request_timeout", headers: { Connection: "close" } },
  );
}

const EXPIRED = Symbol("expired");

/**
 * Stop reading without cancelling the body stream. Cancelling makes Deno drain the rest of the upload,
 * and `server.shutdown()` then waits for a client that stalls (measured on Deno 2.9.6: still pending
 * after 10 s). Releasing only our lock leaves the connection to Deno, which keeps it open after the
 * answer until the client closes it (no idle timeout) but closes it at once on shutdown.
 */
function letGo(reader: ReadableStreamDefaultReader<Uint8Array>): void {
  try {
    reader.releaseLock(); // rejects a read still pending (handled: it was raced)
  } catch {
    // already released
  }
}

/**
 * Read `req`'s body as JSON. Throws {@link ApiError}: 413 over `maxBytes`, 408 when the whole body
 * has not arrived `timeoutMs` after reading began (0 = no limit), 400 for an empty body, bytes that
 * are not UTF-8 (decoded strictly: a replacement character would silently change the prompt) or text
 * that is not JSON. Throws {@link ClientAbortError} when the body stream fails: the client closed the
 * connection before sending all of it (Deno: `BadResource`).
 */
export async function readJson(
  req: Request,
  maxBytes = MAX_BODY_BYTES,
  timeoutMs = 0,
): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) throw tooLarge(maxBytes, `Content-Length ${declared}`);
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (req.body) {
    const reader = req.body.getReader();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = timeoutMs > 0
      ? new Promise<typeof EXPIRED>((res) => timer = setTimeout(() => res(EXPIRED), timeoutMs))
      : undefined;
    try {
      for (;;) {
        let r: ReadableStreamReadResult<Uint8Array> | typeof EXPIRED;
        try {
          r = await (expired ? Promise.race([reader.read(), expired]) : reader.read());
        } catch (e) {
          throw new ClientAbortError(total, e);
        }
        if (r === EXPIRED) {
          letGo(reader);
          throw bodyTimeout(timeoutMs, total);
        }
        if (r.done) break;
        total += r.value.byteLength;
        if (total > maxBytes) {
          letGo(reader);
          throw tooLarge(maxBytes, `read ${total} so far`);
        }
        chunks.push(r.value);
      }
    } finally {
      clearTimeout(timer);
    }
  }
  if (total === 0) throw new ApiError(400, "request body is empty; expected a JSON object");
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ApiError(400, "request body is not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    // V8 names the position; a RangeError here is nesting too deep for the parser.
    throw new ApiError(400, `request body is not valid JSON: ${(e as Error).message.slice(0, 200)}`);
  }
}
