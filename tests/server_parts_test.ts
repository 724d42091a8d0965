/** The server's parts without a model: stop sequences, the FIFO queue, metrics text, body reading, errors. */
import assert from "node:assert/strict";
import { z } from "zod";
import { StopFilter } from "../src/server/stop.ts";
import { Scheduler } from "../src/server/queue.ts";
import { Counter, Histogram, ServerMetrics } from "../src/server/metrics.ts";
import { readJson } from "../src/server/body.ts";
import { ApiError, fieldPath, fromZod } from "../src/server/errors.ts";
import { Rng } from "../src/util/rng.ts";

Deno.test("stop filter: cuts before the earliest stop sequence, holds back partial matches, never leaks a part", () => {
  const f = new StopFilter(["\n\n", "END"]);
  assert.deepEqual(f.push("Hello\n"), { text: "Hello", stopped: false });
  assert.deepEqual(f.push("World E"), { text: "\nWorld ", stopped: false });
  assert.deepEqual(f.push("N"), { text: "", stopped: false });
  assert.deepEqual(f.push("Dx"), { text: "", stopped: true });
  assert.deepEqual(f.push("more"), { text: "", stopped: true });
  assert.equal(f.flush(), "");
  const g = new StopFilter(["abc"]);
  assert.deepEqual(g.push("xab"), { text: "x", stopped: false });
  assert.equal(g.flush(), "ab", "held text that never became a stop sequence comes out at the end");
  assert.deepEqual(new StopFilter([]).push("abc"), { text: "abc", stopped: false });

  // Random pieces: emitted text + flush is always the text cut before the first stop sequence.
  const rng = new Rng(5);
  for (let trial = 0; trial < 300; trial++) {
    const alphabet = "ab\n";
    const text = Array.from({ length: 40 }, () => alphabet[Math.floor(rng.next() * 3)]).join("");
    const stops = ["ab\n", "\n\n", "bba"].slice(0, 1 + Math.floor(rng.next() * 3));
    const firstAt = Math.min(...stops.map((s) => text.indexOf(s)).filter((i) => i >= 0), Infinity);
    const expected = firstAt === Infinity ? text : text.slice(0, firstAt);
    const f = new StopFilter(stops);
    let out = "";
    for (let i = 0; i < text.length;) {
      const n = 1 + Math.floor(rng.next() * 4);
      out += f.push(text.slice(i, i + n)).text;
      i += n;
    }
    out += f.flush();
    assert.equal(out, expected, `text ${JSON.stringify(text)} stops ${JSON.stringify(stops)}`);
    assert.equal(f.stopped, firstAt !== Infinity);
  }
});

Deno.test("queue: FIFO order, 429 with Retry-After when full, waiting clients that leave free their place", async () => {
  const s = new Scheduler({ maxQueue: 2 });
  const order: number[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const a = s.admit().run(async () => {
    await gate;
    order.push(1);
  });
  const b = s.admit().run(() => Promise.resolve(order.push(2)));
  const leaving = new AbortController();
  const c = s.admit(leaving.signal).run(() => Promise.resolve(order.push(3)));
  assert.equal(s.running, 1);
  assert.equal(s.waiting, 2);
  const full = (() => {
    try {
      s.admit();
    } catch (e) {
      return e;
    }
  })();
  assert.ok(full instanceof ApiError);
  assert.equal(full.status, 429);
  assert.match(full.message, /2 waiting, limit 2/);
  assert.ok(Number(full.options.headers?.["Retry-After"]) >= 1);
  leaving.abort();
  await assert.rejects(c, (e: Error) => e.name === "AbortError");
  assert.equal(s.waiting, 1, "the client that left gave its place back");
  const d = s.admit().run(() => Promise.resolve(order.push(4)));
  release();
  await Promise.all([a, b, d]);
  assert.deepEqual(order, [1, 2, 4]);
  assert.equal(s.running + s.waiting, 0);
  assert.throws(() => new Scheduler({ maxQueue: -1 }), /maxQueue/);
});

Deno.test("queue: drain waits for queued work, then refuses; a drain that times out cancels the rest", async () => {
  const s = new Scheduler({ maxQueue: 4 });
  const done: string[] = [];
  const tick = () => new Promise((r) => setTimeout(r, 5));
  const jobs = ["a", "b"].map((n) => s.admit().run(async () => (await tick(), done.push(n))));
  assert.equal(await s.drain(5000), true);
  await Promise.all(jobs);
  assert.deepEqual(done, ["a", "b"]);
  assert.throws(() => s.admit(), (e: ApiError) => e.status === 503 && /shutting down/.test(e.message));

  const t = new Scheduler({ maxQueue: 4 });
  const causes: (string | undefined)[] = [];
  let slotA: ReturnType<Scheduler["admit"]>;
  const running = (slotA = t.admit()).run((signal) =>
    new Promise<void>((res) => signal.addEventListener("abort", () => res()))
  ).then(() => causes.push(slotA.cause));
  const waiting = t.admit().run(() => Promise.resolve()).catch((e) => causes.push(e.name));
  assert.equal(await t.drain(30), false, "timed out");
  await Promise.all([running, waiting]);
  assert.deepEqual(causes.sort(), ["AbortError", "shutdown"]);
});

Deno.test("metrics: Prometheus text format with labels, escaping, histograms and gauges", () => {
  const m = new ServerMetrics();
  m.requests.inc({ route: "/v1/generate", status: "200" });
  m.requests.inc({ route: "/v1/generate", status: "200" });
  m.requests.inc({ route: 'a"b\\c\n', status: "400" });
  m.tokensPerStep.observe(3);
  m.tokensPerStep.observe(1, 4);
  m.gauge("specdec_queue_depth", "Waiting.", () => 7);
  const text = m.render();
  assert.match(text, /^# HELP specdec_requests_total .+$/m);
  assert.match(text, /^# TYPE specdec_requests_total counter$/m);
  assert.match(text, /^specdec_requests_total\{route="\/v1\/generate",status="200"\} 2$/m);
  assert.match(text, /^specdec_requests_total\{route="a\\"b\\\\c\\n",status="400"\} 1$/m);
  assert.match(text, /^specdec_tokens_per_step_bucket\{le="1"\} 4$/m);
  assert.match(text, /^specdec_tokens_per_step_bucket\{le="2"\} 4$/m);
  assert.match(text, /^specdec_tokens_per_step_bucket\{le="3"\} 5$/m);
  assert.match(text, /^specdec_tokens_per_step_bucket\{le="\+Inf"\} 5$/m);
  assert.match(text, /^specdec_tokens_per_step_sum 7$/m);
  assert.match(text, /^specdec_tokens_per_step_count 5$/m);
  assert.match(text, /^specdec_queue_depth 7$/m);
  // Every sample line is `name{labels} value` with a numeric value.
  for (const line of text.trim().split("\n").filter((l) => !l.startsWith("#"))) {
    assert.match(line, /^[a-z_]+(\{.*\})? (-?[0-9.e+-]+|\+Inf)$/, line);
  }
  const c = new Counter("x_total", "x");
  assert.equal(c.get({ a: "1" }), 0);
  const h = new Histogram("h", "h", [1]);
  h.observe(NaN);
  assert.equal(h.total, 0, "non-finite observations are dropped");
});

function req(body: BodyInit | null, headers: Record<string, string> = {}): Request {
  return new Request("http://x/", { method: "POST", body, headers });
}

Deno.test("body: 413 by Content-Length and by bytes actually read; strict UTF-8; JSON errors as 400", async () => {
  const status = (e: unknown) => (e as ApiError).status;
  await assert.rejects(readJson(req("{}", { "content-length": "2000" }), 1000), (e) => status(e) === 413);
  // A chunked body without Content-Length is counted while it is read.
  const stream = new ReadableStream({
    pull(c) {
      c.enqueue(new Uint8Array(300).fill(32));
    },
  });
  await assert.rejects(
    readJson(req(stream), 1000),
    (e: ApiError) => e.status === 413 && /1000 bytes/.test(e.message),
  );
  await assert.rejects(readJson(req(null)), (e: ApiError) => e.status === 400 && /empty/.test(e.message));
  await assert.rejects(
    readJson(req(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]))),
    (e: ApiError) => e.status === 400 && /UTF-8/.test(e.message),
  );
  await assert.rejects(
    readJson(req("{nope")),
    (e: ApiError) => e.status === 400 && /not valid JSON/.test(e.message),
  );
  assert.deepEqual(await readJson(req('{"a": [1, "é"]}')), { a: [1, "é"] });
});

Deno.test("errors: zod issues become 400s naming the field path; unknown keys are named", () => {
  assert.equal(fieldPath(["messages", 0, "content"]), "messages[0].content");
  assert.equal(fieldPath([]), "");
  const schema = z.object({ messages: z.array(z.object({ content: z.string() })) }).strict();
  const e1 = fromZod(schema.safeParse({ messages: [{ content: 5 }] }).error!);
  assert.equal(e1.status, 400);
  assert.equal(e1.options.param, "messages[0].content");
  assert.match(e1.message, /^messages\[0\]\.content: .*string/);
  const e2 = fromZod(schema.safeParse({ messages: [], model_path: "/etc/passwd" }).error!);
  assert.equal(e2.options.param, "model_path");
  assert.match(e2.message, /model_path: unknown field/);
  assert.deepEqual(new ApiError(429, "full").envelope().error.type, "rate_limit_error");
});
