/**
 * Every route and error path through app.request() (no socket), on the bundled tiny draft run by the
 * CPU reference: OpenAI formats, stop sequences, queue limits, cancellation, drain, auth, metrics.
 */
import assert from "node:assert/strict";
import { type AppOptions, createApp, localService } from "../src/server/app.ts";
import { DEFAULT_DRAFT_DIR, openModelFolder } from "../src/model/folder.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import type { CausalLM, ForwardInput } from "../src/model/causal_lm.ts";
import { Scheduler } from "../src/server/queue.ts";

const folder = await openModelFolder(DEFAULT_DRAFT_DIR);
const cpu = await loadCpuModel(folder);
const tok = folder.tokenizer;
const CTX = cpu.config.maxPositions;

/** The CPU model behind a gate: once closed, forward passes past the allowed count wait (work "in flight"). */
class GatedModel implements CausalLM {
  forwards = 0;
  private allowed = Infinity;
  private gate: Promise<void> = Promise.resolve();
  private openGate: () => void = () => {};
  constructor(private readonly m: CausalLM) {}
  get config() {
    return this.m.config;
  }
  get kv() {
    return this.m.kv;
  }
  /** Let `n` more forward passes run, then hold the rest until `open()`. */
  close(n = 0): void {
    this.allowed = this.forwards + n;
    this.gate = new Promise((r) => this.openGate = r);
  }
  open(): void {
    this.allowed = Infinity;
    this.openGate();
  }
  async forward(input: ForwardInput): Promise<Float32Array> {
    if (++this.forwards > this.allowed) await this.gate;
    return this.m.forward(input);
  }
  dispose(): void {}
}

function makeApp(opts: AppOptions = {}, model: CausalLM = cpu) {
  return createApp(localService({ name: "tiny-draft", model, tokenizer: tok }), opts);
}
const app = makeApp();

type App = ReturnType<typeof makeApp>;
const post = async (a: App, path: string, body: unknown, init: RequestInit = {}): Promise<Response> =>
  await a.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...init.headers as Record<string, string> },
    body: typeof body === "string" || body instanceof Uint8Array ? body as BodyInit : JSON.stringify(body),
    signal: init.signal,
  });

/** Status, the OpenAI envelope, and every needle in its message. */
async function expectError(res: Response, status: number, ...needles: string[]) {
  const j = await res.json();
  assert.equal(res.status, status, JSON.stringify(j));
  assert.equal(typeof j.error.message, "string");
  assert.equal(typeof j.error.type, "string");
  assert.ok("param" in j.error && "code" in j.error, "full envelope");
  for (const s of needles) assert.ok(j.error.message.includes(s), `"${j.error.message}" lacks "${s}"`);
  return j.error;
}

/** The `data:` payloads of an SSE body. */
function sseData(text: string): string[] {
  return text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
}

const nextTick = () => new Promise((r) => setTimeout(r, 1));
async function until(cond: () => boolean, what: string) {
  for (let i = 0; i < 2000 && !cond(); i++) await nextTick();
  assert.ok(cond(), `timed out waiting for ${what}`);
}

Deno.test("routes: 404 for unknown paths, 405 with Allow for known paths with another method", async () => {
  await expectError(await app.request("/v2/anything"), 404, "no route GET /v2/anything");
  await expectError(await post(app, "/v1/embeddings", {}), 404, "/v1/embeddings");
  for (const path of ["/v1/generate", "/v1/completions", "/v1/chat/completions"]) {
    const res = await app.request(path);
    assert.equal(res.headers.get("allow"), "POST");
    await expectError(res, 405, "GET", "POST");
  }
  for (const path of ["/health", "/ready", "/metrics", "/v1/models", "/v1/status"]) {
    const res = await app.request(path, { method: "DELETE" });
    assert.equal(res.headers.get("allow"), "GET, HEAD");
    await expectError(res, 405, "DELETE");
    assert.equal((await app.request(path, { method: "HEAD" })).status, 200);
  }
});

Deno.test("routes: 400s name the field, the limit or the numbers; 413 over the body limit", async () => {
  const small = makeApp({ maxBodyBytes: 4096 });
  const bad: [string, unknown, string[]][] = [
    ["/v1/generate", "{not json", ["not valid JSON"]],
    ["/v1/generate", new Uint8Array([0x7b, 0x22, 0x70, 0xc3, 0x28, 0x22, 0x7d]), ["UTF-8"]],
    ["/v1/generate", "", ["empty"]],
    ["/v1/generate", [1, 2], ["body"]],
    ["/v1/generate", { prompt: "x", stop: 5 }, ["stop", "string"]],
    ["/v1/generate", { prompt: "x", stop: ["a", ""] }, ["stop"]],
    ["/v1/generate", { prompt: "x", temperature: 1e999 }, ["temperature"]],
    ["/v1/generate", { prompt: "x", seed: 2 ** 40 }, ["seed"]],
    ["/v1/completions", { prompt: "x", max_tokens: 0 }, ["max_tokens"]],
    ["/v1/completions", { prompt: Array(65).fill("a") }, ["prompt", "up to 64"]],
    ["/v1/completions", { prompt: [1, 5000] }, ["prompt[1]", "5000", "vocabulary"]],
    ["/v1/completions", { prompt: [[1], [2, 5000]] }, ["prompt[1][1]", "5000", "vocabulary"]],
    ["/v1/completions", { prompt: "x", n: 17 }, ["n", "16"]],
    ["/v1/completions", { prompt: "x", frequency_penalty: 2.5 }, ["frequency_penalty"]],
    ["/v1/completions", { prompt: "x", logprobs: 6 }, ["logprobs"]],
    ["/v1/completions", { prompt: "x", echo: "yes" }, ["echo"]],
    ["/v1/completions", { prompt: "x", suffix: "y" }, ["suffix: not supported"]],
    ["/v1/completions", { prompt: "x", stream_options: { include_usage: true } }, [
      "stream_options",
      "stream: true",
    ]],
    ["/v1/completions", { prompt: "x", temperature: 2.5 }, ["temperature", "2"]],
    ["/v1/completions", { prompt: "x", method: "sequoia" }, ["method", "draft"]],
    ["/v1/completions", { prompt: "x", method: "beam" }, ["method"]],
    ["/v1/chat/completions", { messages: [] }, ["messages", "1"]],
    ["/v1/chat/completions", { messages: [{ role: "user", content: 5 }] }, ["messages[0].content"]],
    ["/v1/chat/completions", { messages: [{ role: "tool", content: "x" }] }, ["messages[0].role"]],
    ["/v1/chat/completions", { messages: [{ role: "user", content: "x" }], tools: [{ type: "function" }] }, [
      "tools: tool calling is not supported",
    ]],
    ["/v1/chat/completions", { messages: [{ role: "user", content: "x" }], echo: true }, [
      "echo: unknown field",
    ]],
    ["/v1/chat/completions", { messages: [{ role: "user", content: [{ type: "image_url" }] }] }, [
      "messages[0].content",
    ]],
  ];
  for (const [path, body, needles] of bad) {
    const e = await expectError(await post(small, path, body), 400, ...needles);
    assert.equal(e.type, "invalid_request_error");
  }
  // Nothing in a request can name a file or a model path.
  const e = await expectError(
    await post(small, "/v1/generate", { prompt: "x", model_path: "/etc/passwd" }),
    400,
  );
  assert.equal(e.param, "model_path");
  const m = await expectError(
    await post(small, "/v1/completions", { model: "/etc/passwd", prompt: "x" }),
    404,
    "/etc/passwd",
    "tiny-draft",
  );
  assert.equal(m.code, "model_not_found");
  // Context: both numbers and the limit, on every route.
  const n = tok.encode("x").length;
  let c = await expectError(
    await post(small, "/v1/generate", { prompt: "x", max_tokens: CTX }),
    400,
    `prompt (${n} tokens)`,
    `max_tokens (${CTX})`,
    `context of ${CTX}`,
  );
  assert.equal(c.code, "context_length_exceeded");
  await expectError(
    await post(small, "/v1/completions", { prompt: [1, 2, 3], max_tokens: CTX - 2 }),
    400,
    "prompt (3 tokens)",
    `max_tokens (${CTX - 2})`,
  );
  const chatN = tok.encodeChat([{ role: "user", content: "hi" }]).length;
  c = await expectError(
    await post(small, "/v1/chat/completions", {
      messages: [{ role: "user", content: "hi" }],
      max_completion_tokens: CTX,
    }),
    400,
    `prompt (${chatN} tokens)`,
    `max_completion_tokens (${CTX})`,
  );
  assert.equal(c.param, "max_completion_tokens");
  // Over the body limit: 413, declared or not.
  await expectError(await post(small, "/v1/generate", { prompt: "x".repeat(5000) }), 413, "4096 bytes");
  const chunked = new ReadableStream({
    start(ctl) {
      ctl.enqueue(new TextEncoder().encode(`{"prompt": "${"y".repeat(5000)}"}`));
      ctl.close();
    },
  });
  await expectError(
    await small.request("/v1/completions", { method: "POST", body: chunked, duplex: "half" } as RequestInit),
    413,
  );
});

Deno.test("routes: OpenAI completions and chat match the native route token for token; streams match JSON", async () => {
  const native =
    await (await post(app, "/v1/generate", { prompt: "And God said", max_tokens: 12, temperature: 0 }))
      .json();
  const cmpl = await (await post(app, "/v1/completions", {
    model: "tiny-draft",
    prompt: "And God said",
    max_tokens: 12,
    temperature: 0,
  })).json();
  assert.equal(cmpl.object, "text_completion");
  assert.match(cmpl.id, /^cmpl-/);
  assert.equal(cmpl.model, "tiny-draft");
  assert.equal(cmpl.choices[0].text, native.text);
  assert.equal(cmpl.choices[0].finish_reason, native.finish_reason === "length" ? "length" : "stop");
  assert.deepEqual(cmpl.usage, native.usage);
  // Token-id prompts are taken as they are (no BOS added).
  const ids = await (await post(app, "/v1/completions", {
    prompt: tok.encode("And God said"),
    max_tokens: 12,
    temperature: 0,
  })).json();
  assert.equal(ids.choices[0].text, native.text);

  // Chat: the model's template renders the prompt.
  const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "Who made light?" }];
  const chat = await (await post(app, "/v1/chat/completions", { messages, max_tokens: 10, temperature: 0 }))
    .json();
  const viaIds = await (await post(app, "/v1/completions", {
    prompt: tok.encodeChat(messages),
    max_tokens: 10,
    temperature: 0,
  })).json();
  assert.equal(chat.object, "chat.completion");
  assert.equal(chat.choices[0].message.role, "assistant");
  assert.equal(chat.choices[0].message.content, viaIds.choices[0].text);
  assert.equal(chat.usage.prompt_tokens, tok.encodeChat(messages).length);
  // Content given as text parts is the same prompt.
  const parts = await (await post(app, "/v1/chat/completions", {
    messages: [messages[0], {
      role: "user",
      content: [{ type: "text", text: "Who made " }, { type: "text", text: "light?" }],
    }],
    max_tokens: 10,
    temperature: 0,
  })).json();
  assert.equal(parts.choices[0].message.content, chat.choices[0].message.content);

  // Streams: the same text in chunks, the finish reason last, usage when asked, then [DONE].
  const sc = await post(app, "/v1/completions", {
    prompt: "And God said",
    max_tokens: 12,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  assert.match(sc.headers.get("content-type") ?? "", /text\/event-stream/);
  const ev = sseData(await sc.text());
  assert.equal(ev.at(-1), "[DONE]");
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e));
  assert.ok(chunks.every((k) => k.id === chunks[0].id && k.object === "text_completion"));
  assert.equal(chunks.slice(0, -1).map((k) => k.choices[0].text).join(""), native.text);
  assert.equal(chunks.at(-2).choices[0].finish_reason, cmpl.choices[0].finish_reason);
  assert.deepEqual(chunks.at(-1).choices, []);
  assert.deepEqual(chunks.at(-1).usage, native.usage);

  const cs = sseData(
    await (await post(app, "/v1/chat/completions", {
      messages,
      max_tokens: 10,
      temperature: 0,
      stream: true,
    }))
      .text(),
  );
  assert.equal(cs.at(-1), "[DONE]");
  const cc = cs.slice(0, -1).map((e) => JSON.parse(e));
  assert.deepEqual(cc[0].choices[0].delta, { role: "assistant", content: "" });
  assert.ok(cc.every((k) => k.object === "chat.completion.chunk" && k.id.startsWith("chatcmpl-")));
  assert.equal(cc.map((k) => k.choices[0].delta.content ?? "").join(""), chat.choices[0].message.content);
  assert.equal(cc.at(-1).choices[0].finish_reason, chat.choices[0].finish_reason);
  assert.ok(!("usage" in cc.at(-1)), "no usage chunk unless asked");
});

Deno.test("routes: stop sequences end generation before the sequence, streaming or not", async () => {
  const full =
    await (await post(app, "/v1/generate", { prompt: "And God said", max_tokens: 40, temperature: 0 }))
      .json();
  // A stop sequence from the middle of the greedy continuation (3 characters starting at its 10th).
  const stop = full.text.slice(10, 13);
  const cut = full.text.indexOf(stop);
  const r = await (await post(app, "/v1/generate", {
    prompt: "And God said",
    max_tokens: 40,
    temperature: 0,
    stop: [stop, "\u2603never"],
  })).json();
  assert.equal(r.text, full.text.slice(0, cut));
  assert.equal(r.finish_reason, "stop");
  assert.ok(r.tokens.length < full.tokens.length, "generation ended early");
  assert.deepEqual(r.tokens, full.tokens.slice(0, r.tokens.length));
  const s = sseData(
    await (await post(app, "/v1/generate", {
      prompt: "And God said",
      max_tokens: 40,
      temperature: 0,
      stop,
      stream: true,
    })).text(),
  ).slice(0, -1).map((e) => JSON.parse(e));
  assert.equal(s.map((e) => e.text).join(""), r.text);
  assert.equal(s.at(-1).finish_reason, "stop");
  const o = await (await post(app, "/v1/completions", {
    prompt: "And God said",
    max_tokens: 40,
    temperature: 0,
    stop,
  })).json();
  assert.equal(o.choices[0].text, r.text);
  assert.equal(o.choices[0].finish_reason, "stop");
  assert.equal(o.usage.completion_tokens, r.tokens.length);
});

Deno.test("routes: a full queue answers 429 with Retry-After; queued and running generations complete in order", async () => {
  const gated = new GatedModel(cpu);
  const scheduler = new Scheduler({ maxQueue: 1 });
  const a = makeApp({ scheduler }, gated);
  gated.close();
  const body = { prompt: "In the beginning", max_tokens: 4, temperature: 0 };
  const first = post(a, "/v1/generate", body);
  await until(() => gated.forwards > 0, "the first generation to start");
  const second = post(a, "/v1/completions", { ...body, stream: true });
  await until(() => scheduler.waiting === 1, "the second request to queue");
  const metricsWhileFull = await (await a.request("/metrics")).text();
  assert.match(metricsWhileFull, /^specdec_queue_depth 1$/m);
  assert.match(metricsWhileFull, /^specdec_queue_running 1$/m);
  const third = await post(a, "/v1/chat/completions", { messages: [{ role: "user", content: "x" }] });
  assert.ok(Number(third.headers.get("retry-after")) >= 1, "Retry-After");
  const e = await expectError(third, 429, "queue is full", "limit 1");
  assert.equal(e.type, "rate_limit_error");
  gated.open();
  const [r1, r2] = await Promise.all([first, second]);
  assert.equal(r1.status, 200);
  assert.equal((await r1.json()).tokens.length, 4);
  assert.equal(r2.status, 200);
  assert.equal(sseData(await r2.text()).at(-1), "[DONE]");
  const m = await (await a.request("/metrics")).text();
  assert.match(m, /^specdec_requests_total\{route="\/v1\/chat\/completions",status="429"\} 1$/m);
  assert.match(m, /^specdec_queue_depth 0$/m);
});

Deno.test("routes: a client that leaves is cancelled at the next step (running) or leaves the queue (waiting)", async () => {
  const gated = new GatedModel(cpu);
  const scheduler = new Scheduler({ maxQueue: 4 });
  const a = makeApp({ scheduler }, gated);
  const body = { prompt: "In the beginning", max_tokens: 200, temperature: 0 };
  // Running, non-streaming: abort while a forward pass is held; no forward follows it.
  gated.close(3);
  const ac = new AbortController();
  const running = post(a, "/v1/generate", body, { signal: ac.signal });
  await until(() => gated.forwards >= 3, "a few steps");
  // Waiting behind it: a streaming request whose client leaves before its turn.
  const ac2 = new AbortController();
  const waiting = post(a, "/v1/completions", { ...body, stream: true }, { signal: ac2.signal });
  await until(() => scheduler.waiting === 1, "the second request to queue");
  const depth = async () =>
    Number((await (await a.request("/metrics")).text()).match(/^specdec_queue_depth (\d+)$/m)![1]);
  assert.equal(await depth(), 1);
  ac2.abort();
  await waiting.catch(() => {});
  assert.equal(await depth(), 0, "the waiting client's place was freed");
  const atAbort = gated.forwards;
  ac.abort();
  gated.open();
  assert.equal((await running).status, 499);
  assert.equal(gated.forwards, atAbort, "no forward pass after the one in flight");
  // A streaming client that stops reading: cancelled at its next step, slot freed.
  const res = await post(a, "/v1/generate", { ...body, stream: true });
  const reader = res.body!.getReader();
  await reader.read();
  await reader.cancel();
  const next = await post(a, "/v1/generate", { prompt: "x", max_tokens: 3, temperature: 0 });
  assert.equal(next.status, 200, "the next request runs");
  const m = await (await a.request("/metrics")).text();
  const cancelled = Number(
    m.match(/specdec_generations_total\{method="ar",finish_reason="cancelled"\} (\d+)/)![1],
  );
  assert.equal(cancelled, 2, "the running and the streaming generation were cancelled");
  const tokens = Number(m.match(/specdec_completion_tokens_total\{method="ar"\} (\d+)/)![1]);
  assert.ok(tokens < 200, `cancelled generations stopped early (${tokens} tokens in all)`);
});

Deno.test("routes: drain lets queued work finish and refuses new work; a drain that times out cancels", async () => {
  const gated = new GatedModel(cpu);
  const scheduler = new Scheduler({ maxQueue: 4 });
  const a = makeApp({ scheduler }, gated);
  const body = { prompt: "In the beginning", max_tokens: 5, temperature: 0 };
  gated.close();
  const r1 = post(a, "/v1/generate", body);
  await until(() => gated.forwards > 0, "start");
  const r2 = post(a, "/v1/completions", body);
  await until(() => scheduler.waiting === 1, "queued");
  const drained = scheduler.drain(60_000);
  assert.equal((await a.request("/ready")).status, 503);
  assert.equal((await a.request("/health")).status, 200, "still live while draining");
  await expectError(await post(a, "/v1/generate", body), 503, "shutting down");
  gated.open();
  assert.equal((await r1).status, 200);
  assert.equal((await r2).status, 200);
  assert.equal(await drained, true);

  const g2 = new GatedModel(cpu);
  const s2 = new Scheduler({ maxQueue: 4 });
  const b = makeApp({ scheduler: s2 }, g2);
  g2.close();
  const plain = post(b, "/v1/generate", { ...body, max_tokens: 100 });
  await until(() => g2.forwards > 0, "start");
  const streamed = post(b, "/v1/chat/completions", {
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 100,
    stream: true,
  });
  await until(() => s2.waiting === 1, "queued");
  const timedOut = s2.drain(20);
  setTimeout(() => g2.open(), 40);
  assert.equal(await timedOut, false);
  await expectError(await plain, 503, "shutting down");
  const ev = sseData(await (await streamed).text());
  assert.equal(ev.length, 2, "the role chunk, then the error; no [DONE]");
  assert.equal(JSON.parse(ev[1]).error.code, "shutting_down");

  // The native stream, cut while running: its tokens, then the error event, no [DONE] (as the README says).
  const g3 = new GatedModel(cpu);
  const s3 = new Scheduler({ maxQueue: 4 });
  const c = makeApp({ scheduler: s3 }, g3);
  g3.close(3); // three forwards (prefill and two tokens) stream, then the model holds
  // Read the stream as it comes (an unread stream holds the writer back, and the generation with it).
  const native = post(c, "/v1/generate", { ...body, max_tokens: 100, stream: true }).then((r) => r.text());
  await until(() => g3.forwards > 3, "streaming");
  const cut = s3.drain(20);
  setTimeout(() => g3.open(), 40);
  assert.equal(await cut, false);
  const nev = sseData(await native);
  assert.ok(nev.length >= 2 && nev.every((d) => d !== "[DONE]"), `no [DONE]: ${nev.slice(-2)}`);
  assert.equal(JSON.parse(nev[nev.length - 1]).error.code, "shutting_down");
  assert.ok(
    nev.slice(0, -1).every((d) => typeof JSON.parse(d).token === "number"),
    "tokens before the error",
  );
});

Deno.test("routes: bearer API key guards /v1/* and /metrics, not /health or /ready", async () => {
  const a = makeApp({ apiKey: "s3cret" });
  const e = await expectError(await a.request("/v1/models"), 401, "missing API key");
  assert.equal(e.type, "authentication_error");
  const wrong = await a.request("/v1/models", { headers: { authorization: "Bearer nope" } });
  assert.match(wrong.headers.get("www-authenticate") ?? "", /^Bearer/);
  await expectError(wrong, 401, "invalid API key");
  await expectError(await post(a, "/v1/generate", "{broken"), 401, "API key");
  assert.equal((await a.request("/metrics")).status, 401);
  assert.equal((await a.request("/health")).status, 200);
  assert.equal((await a.request("/ready")).status, 200);
  const ok = await a.request("/v1/models", { headers: { authorization: "Bearer s3cret" } });
  assert.equal((await ok.json()).data[0].id, "tiny-draft");
});

Deno.test("routes: /metrics counts requests by status, tokens, steps and queue", async () => {
  const a = makeApp();
  await post(a, "/v1/generate", { prompt: "x", max_tokens: 6, temperature: 0 });
  await post(a, "/v1/generate", { prompt: 5 });
  await a.request("/nowhere");
  const res = await a.request("/metrics");
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const m = await res.text();
  assert.match(m, /^specdec_requests_total\{route="\/v1\/generate",status="200"\} 1$/m);
  assert.match(m, /^specdec_requests_total\{route="\/v1\/generate",status="400"\} 1$/m);
  assert.match(m, /^specdec_requests_total\{route="other",status="404"\} 1$/m);
  assert.match(m, /^specdec_completion_tokens_total\{method="ar"\} 6$/m);
  assert.match(m, /^specdec_prompt_tokens_total 2$/m);
  // AR: 5 decoding steps after prefill, one token each.
  assert.match(m, /^specdec_tokens_per_step_bucket\{le="1"\} 5$/m);
  assert.match(m, /^specdec_step_seconds_count 5$/m);
  assert.match(m, /^specdec_queue_wait_seconds_count 1$/m);
  assert.match(m, /^specdec_queue_limit 16$/m);
});
