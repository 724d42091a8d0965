/**
 * POST /tokenize, POST /detokenize (llama.cpp server's shapes) and GET /v1/models/{id} (OpenAI's)
 * through app.request() on the bundled tiny draft, plus `client.models.retrieve` through the real
 * `openai` client over loopback.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { type AppOptions, createApp, localService } from "../src/server/app.ts";
import { DEFAULT_DRAFT_DIR, openModelFolder } from "../src/model/folder.ts";
import { loadCpuModel } from "../src/cpu/load.ts";

const folder = await openModelFolder(DEFAULT_DRAFT_DIR);
const cpu = await loadCpuModel(folder);
const tok = folder.tokenizer;
const NAME = "tiny-draft";

const makeApp = (opts: AppOptions = {}) =>
  createApp(localService({ name: NAME, model: cpu, tokenizer: tok }), opts);
const app = makeApp();
type App = ReturnType<typeof makeApp>;

const post = (a: App, path: string, body: unknown, headers: Record<string, string> = {}) =>
  a.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

/** Status and the OpenAI envelope; returns its `error`. */
async function expectError(res: Response, status: number, param?: string, code?: string) {
  const j = await res.json();
  assert.equal(res.status, status, JSON.stringify(j));
  assert.equal(typeof j.error.message, "string");
  assert.equal(typeof j.error.type, "string");
  if (param !== undefined) assert.equal(j.error.param, param, JSON.stringify(j));
  if (code !== undefined) assert.equal(j.error.code, code, JSON.stringify(j));
  return j.error;
}

const TEXT = "And God said, let there be light 🙂 é";

Deno.test("tokenize: ids as /v1/completions encodes them; add_special adds BOS; empty content", async () => {
  const plain = await (await post(app, "/tokenize", { content: TEXT })).json();
  assert.deepEqual(plain, { tokens: tok.encode(TEXT, { addBos: false }) });
  assert.ok(plain.tokens.length > 5);
  const special = await (await post(app, "/tokenize", { content: TEXT, add_special: true })).json();
  assert.deepEqual(special.tokens, tok.encode(TEXT), "the prompt ids of generation");
  assert.equal(special.tokens[0], tok.bosId);
  assert.deepEqual(special.tokens.slice(1), plain.tokens);
  assert.deepEqual(await (await post(app, "/tokenize", { content: "" })).json(), { tokens: [] });
  // llama.cpp's defaults, sent explicitly, and the served model's name are accepted.
  const same = await post(app, "/tokenize", { content: TEXT, parse_special: true, model: NAME });
  assert.deepEqual((await same.json()).tokens, plain.tokens);
});

Deno.test("tokenize: with_pieces gives {id, piece}: text, or bytes for a piece of a character", async () => {
  const res = await post(app, "/tokenize", { content: TEXT, with_pieces: true, add_special: true });
  assert.equal(res.status, 200);
  const { tokens } = await res.json() as { tokens: { id: number; piece: string | number[] }[] };
  assert.deepEqual(tokens.map((t) => t.id), tok.encode(TEXT));
  assert.deepEqual(tokens[0], { id: tok.bosId, piece: "<s>" }, "a special token is its text");
  // The byte-level tokenizer splits the emoji into byte tokens: those pieces are byte lists.
  const bytes = tokens.filter((t) => Array.isArray(t.piece));
  assert.ok(bytes.length >= 2, JSON.stringify(tokens));
  for (const t of bytes) {
    for (const b of t.piece as number[]) assert.ok(Number.isInteger(b) && b >= 0 && b < 256);
  }
  // Every piece after BOS, concatenated as bytes, is the content's UTF-8.
  const enc = new TextEncoder();
  const all = tokens.slice(1).flatMap((t) =>
    typeof t.piece === "string" ? [...enc.encode(t.piece)] : t.piece
  );
  assert.equal(new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(all)), TEXT);
});

Deno.test("tokenize: refusals name the field (zod, strict), parse_special false, another model", async () => {
  await expectError(await post(app, "/tokenize", {}), 400, "content");
  await expectError(await post(app, "/tokenize", { content: 5 }), 400, "content");
  await expectError(await post(app, "/tokenize", { content: "x", with_pieces: "yes" }), 400, "with_pieces");
  await expectError(await post(app, "/tokenize", { content: "x", prompt: "y" }), 400, "prompt");
  await expectError(
    await post(app, "/tokenize", { content: "x", parse_special: false }),
    400,
    "parse_special",
  );
  await expectError(await post(app, "/tokenize", { content: "\ud800" }), 400, "content");
  await expectError(
    await post(app, "/tokenize", { content: "x", model: "gpt-4" }),
    404,
    "model",
    "model_not_found",
  );
  const tooLong = await post(app, "/tokenize", { content: "a".repeat(200_001) });
  await expectError(tooLong, 400, "content");
});

Deno.test("detokenize: text of ids (round trip); an id outside the vocabulary is a 400 naming its index", async () => {
  const ids = tok.encode(TEXT);
  const res = await post(app, "/detokenize", { tokens: ids });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { content: tok.decode(ids) });
  assert.equal(tok.decode(ids), TEXT, "BOS skipped, text exact");
  assert.deepEqual(await (await post(app, "/detokenize", { tokens: [] })).json(), { content: "" });
  const e = await expectError(
    await post(app, "/detokenize", { tokens: [ids[1], ids[2], tok.vocabSize, 0] }),
    400,
    "tokens[2]",
  );
  assert.match(e.message, new RegExp(`tokens\\[2\\]: token id ${tok.vocabSize} is outside the vocabulary`));
  await expectError(await post(app, "/detokenize", { tokens: [1, -1] }), 400, "tokens[1]");
  await expectError(await post(app, "/detokenize", { tokens: [1.5] }), 400, "tokens[0]");
  await expectError(await post(app, "/detokenize", { tokens: "1 2" }), 400, "tokens");
  await expectError(await post(app, "/detokenize", { content: "x" }), 400);
});

Deno.test("GET /v1/models/{id}: the served model's object; 404 model_not_found otherwise; 405, metric label", async () => {
  const list = await (await app.request("/v1/models")).json();
  const one = await app.request(`/v1/models/${NAME}`);
  assert.equal(one.status, 200);
  assert.deepEqual(await one.json(), list.data[0]);
  assert.deepEqual(list.data[0].id, NAME);
  for (const id of ["gpt-4", "tiny-draft-2", "org%2Fmodel", "..%2F..%2Fetc%2Fpasswd", "a/b"]) {
    const e = await expectError(await app.request(`/v1/models/${id}`), 404, "model", "model_not_found");
    assert.match(e.message, /does not exist; this server serves "tiny-draft"/);
  }
  const wrong = await app.request(`/v1/models/${NAME}`, { method: "DELETE" });
  await expectError(wrong, 405);
  assert.equal(wrong.headers.get("allow"), "GET, HEAD");
  const get = await app.request("/tokenize");
  await expectError(get, 405);
  assert.equal(get.headers.get("allow"), "POST");
  const metrics = await (await app.request("/metrics")).text();
  assert.match(metrics, /specdec_requests_total\{route="\/v1\/models\/\{id\}",status="404"\} 5/);
  assert.match(metrics, /specdec_requests_total\{route="\/v1\/models\/\{id\}",status="200"\} 1/);
  assert.match(metrics, /specdec_requests_total\{route="\/tokenize",status="405"\} 1/);
  assert.ok(!metrics.includes("gpt-4"), "a requested id never becomes a label");
});

Deno.test("auth: /tokenize, /detokenize and /v1/models/{id} need the API key like /v1/*", async () => {
  const a = makeApp({ apiKey: "k" });
  await expectError(await post(a, "/tokenize", { content: "x" }), 401, undefined, "invalid_api_key");
  await expectError(await post(a, "/detokenize", { tokens: [5] }), 401, undefined, "invalid_api_key");
  await expectError(await a.request(`/v1/models/${NAME}`), 401, undefined, "invalid_api_key");
  const auth = { authorization: "Bearer k" };
  assert.equal((await post(a, "/tokenize", { content: "x" }, auth)).status, 200);
  assert.equal((await post(a, "/detokenize", { tokens: [5] }, auth)).status, 200);
  assert.equal((await a.request(`/v1/models/${NAME}`, { headers: auth })).status, 200);
  assert.equal((await a.request("/health")).status, 200, "/health stays open");
});

Deno.test("openai client: models.retrieve(id) over loopback; an unknown id raises NotFoundError", async () => {
  const a = makeApp({ apiKey: "k" });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, a.fetch);
  try {
    const client = new OpenAI({
      baseURL: `http://127.0.0.1:${server.addr.port}/v1`,
      apiKey: "k",
      maxRetries: 0,
    });
    const m = await client.models.retrieve(NAME);
    assert.equal(m.id, NAME);
    assert.equal(m.object, "model");
    assert.equal(m.owned_by, "specdec");
    assert.equal(typeof m.created, "number");
    await assert.rejects(client.models.retrieve("gpt-4"), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError, String(e));
      assert.equal(e.status, 404);
      assert.equal(e.code, "model_not_found");
      return true;
    });
  } finally {
    await server.shutdown();
  }
});
