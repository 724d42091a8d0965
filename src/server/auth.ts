/**
 * Optional bearer API key: `Authorization: Bearer <key>`, the header OpenAI clients send.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";

const enc = new TextEncoder();

async function digest(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(s)));
}

/** Compare two secrets in time independent of where they differ (digests have equal length). */
async function sameSecret(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([digest(a), digest(b)]);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}

/** Middleware that answers 401 (with WWW-Authenticate) unless the request carries `key` as a bearer token. */
export function bearerAuth(key: string): MiddlewareHandler {
  if (!key) throw new RangeError("API key must not be empty");
  return async (c, next) => {
    const m = /^Bearer\s+(.+)$/i.exec(c.req.header("authorization") ?? "");
    if (!m || !(await sameSecret(m[1].trim(), key))) {
      throw new ApiError(
        401,
        m ? "invalid API key" : "missing API key: send the header Authorization: Bearer <key>",
        { code: "invalid_api_key", headers: { "WWW-Authenticate": 'Bearer realm="specdec"' } },
      );
    }
    await next();
  };
}
