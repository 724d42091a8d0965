/**
 * Reading a JSON request body defensively: a byte limit enforced while reading (not only from
 * Content-Length, which a client may omit or lie about), strict UTF-8, and JSON syntax errors as 400s.
 *
 * @module
 */

import { ApiError } from "./errors.ts";

/** Default largest accepted request body: 1 MiB, far above any prompt that fits the context. */
export const MAX_BODY_BYTES = 1024 * 1024;

function tooLarge(limit: number, got: string): ApiError {
  return new ApiError(413, `request body exceeds ${limit} bytes (${got})`, { code: "body_too_large" });
}

/**
 * Read `req`'s body as JSON. Throws {@link ApiError}: 413 over `maxBytes`, 400 for an empty body, bytes
 * that are not UTF-8 (decoded strictly: a replacement character would silently change the prompt) or
 * text that is not JSON.
 */
export async function readJson(req: Request, maxBytes = MAX_BODY_BYTES): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) throw tooLarge(maxBytes, `Content-Length ${declared}`);
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (req.body) {
    const reader = req.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw tooLarge(maxBytes, `read ${total} so far`);
      }
      chunks.push(value);
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
