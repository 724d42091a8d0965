import assert from "node:assert/strict";
import { createApp, localService } from "../src/server/app.ts";
import { DEFAULT_DRAFT_DIR, openModelFolder } from "../src/model/folder.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import { generateAutoregressive } from "../src/decoding/autoregressive.ts";
import { GREEDY } from "../src/model/sampling.ts";

const folder = await openModelFolder(DEFAULT_DRAFT_DIR);
const model = await loadCpuModel(folder);
const app = createApp(localService({ name: "tiny-draft", model, tokenizer: folder.tokenizer }));

const post = (body: unknown) =>
  app.request("/v1/generate", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

async function expectError(res: Response, status: number, ...needles: string[]): Promise<void> {
  assert.equal(res.status, status);
  const j = await res.json();
  assert.equal(typeof j.error.message, "string");
  for (const s of needles) assert.ok(j.error.message.includes(s), `"${j.error.message}" lacks "${s}"`);
}

Deno.test("server: health and models", async () => {
  assert.deepEqual(await (await app.request("/health")).json(), { status: "ok" });
  const m = await (await app.request("/v1/models")).json();
  assert.equal(m.data[0].id, "tiny-draft");
});

Deno.test("server: greedy generation equals the engine's autoregressive output", async () => {
  const res = await post({ prompt: "And God said", max_tokens: 20, temperature: 0 });
  assert.equal(res.status, 200);
  const j = await res.json();
  const expected: number[] = [];
  for await (
    const ev of generateAutoregressive(model, folder.tokenizer.encode("And God said"), {
      maxTokens: 20,
      sampling: GREEDY,
      seed: 0,
      eosIds: folder.tokenizer.eosIds,
    })
  ) if (ev.type === "token") expected.push(ev.id);
  assert.deepEqual(j.tokens, expected);
  assert.equal(j.text, folder.tokenizer.decode(expected));
  assert.equal(j.usage.completion_tokens, expected.length);
  assert.ok(["length", "stop"].includes(j.finish_reason));
});

Deno.test("server: seeded sampling is reproducible", async () => {
  const a = await (await post({ prompt: "The LORD", max_tokens: 12, temperature: 1, seed: 9 })).json();
  const b = await (await post({ prompt: "The LORD", max_tokens: 12, temperature: 1, seed: 9 })).json();
  assert.deepEqual(a.tokens, b.tokens);
});

Deno.test("server: streaming SSE delivers the same text, then [DONE]", async () => {
  const body = { prompt: "In the beginning", max_tokens: 16, temperature: 0 };
  const plain = await (await post(body)).json();
  const res = await post({ ...body, stream: true });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
  const events = (await res.text()).split("\n\n").filter((e) => e.startsWith("data: ")).map((e) =>
    e.slice(6)
  );
  assert.equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  assert.equal(chunks.map((c) => c.text).join(""), plain.text);
  assert.deepEqual(chunks.slice(0, -1).map((c) => c.token), plain.tokens);
  assert.equal(chunks.at(-1).finish_reason, plain.finish_reason);
});

Deno.test("server: invalid requests get 4xx with the field named", async () => {
  await expectError(await post("{not json"), 400, "not valid JSON");
  await expectError(await post({ prompt: 5 }), 400, "prompt");
  await expectError(await post({ prompt: "x", max_tokens: -1 }), 400, "max_tokens");
  await expectError(await post({ prompt: "x", temperature: "hot" }), 400, "temperature");
  await expectError(await post({ prompt: "x", top_p: 0 }), 400, "top_p");
  await expectError(await post({ prompt: "x", model_path: "/etc/passwd" }), 400, "model_path");
  await expectError(await post([1, 2, 3]), 400);
  const ctx = model.config.maxPositions;
  await expectError(
    await post({ prompt: "x", max_tokens: ctx }),
    400,
    "2 tokens",
    `max_tokens (${ctx})`,
    `${ctx}`,
  );
  await expectError(await post({ prompt: "x".repeat(2 * 1024 * 1024) }), 413, "exceeds");
  await expectError(await app.request("/v1/nothing"), 404, "no route");
  await expectError(await app.request("/v1/generate"), 405, "GET", "POST");
});

Deno.test("server: speculative methods answer exactly like AR at T=0; /v1/status and /ready", async () => {
  const { DEFAULT_TARGET_DIR } = await import("../src/model/folder.ts");
  const { AdaptiveSequoiaPlan } = await import("../src/speculative/adaptive.ts");
  const tf = await openModelFolder(DEFAULT_TARGET_DIR);
  const target = await loadCpuModel(tf);
  const acc = [0.6, 0.12, 0.06, 0.04];
  const spec = createApp(localService({
    name: "tiny",
    model: target,
    tokenizer: tf.tokenizer,
    draft: model,
    defaultMethod: "ar",
    tree: { treeSize: 12, depth: 4 },
    acceptance: acc,
    adaptive: new AdaptiveSequoiaPlan(acc, 12, 4),
    status: { note: "test" },
  }));
  const ask = async (body: Record<string, unknown>) =>
    await (await spec.request("/v1/generate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "And God said", max_tokens: 24, temperature: 0, ...body }),
    })).json();
  const ar = await ask({});
  assert.equal(ar.method, "ar");
  for (const method of ["chain", "specinfer", "sequoia", "specexec"]) {
    const r = await ask(method === "specexec" ? { method, budget: 16 } : { method });
    assert.equal(r.method, method);
    assert.deepEqual(r.tokens, ar.tokens, method);
    assert.ok(r.stats.tokensPerStep > 1, `${method} accepted drafts`);
  }
  const st = await (await spec.request("/v1/status")).json();
  assert.equal(st.default_method, "ar");
  assert.deepEqual(st.tree, { treeSize: 12, depth: 4 });
  assert.equal(st.acceptance.length, 4);
  assert.deepEqual(st.profile, { note: "test" });
  assert.equal((await spec.request("/ready")).status, 200);
  // Without a draft, speculative methods are refused with the field named.
  await expectError(await post({ prompt: "x", method: "sequoia" }), 400, "draft");
  tf.checkpoint.close();
});
