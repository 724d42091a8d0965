/**
 * Fuzz: >= 1000 malformed bodies (random JSON, wrong types, huge numbers, deep nesting, invalid UTF-8,
 * unpaired surrogates, truncated JSON; every request field, the logits-processing and accepted-as-neutral
 * ones included, at values it must refuse) against every POST route. Each body is invalid by construction,
 * so every answer must be a 4xx in the OpenAI error envelope, and the server must answer a valid
 * request exactly as before afterwards. Then 80 seeded VALID combinations of the processing, grammar,
 * logprobs, stop and stream fields under every method on a server with a draft: no 5xx, finite logprobs,
 * no banned token, and JSON that parses when a grammar's generation stopped on its own.
 */
import assert from "node:assert/strict";
import { createApp, localService } from "../src/server/app.ts";
import { Scheduler } from "../src/server/queue.ts";
import { DEFAULT_DRAFT_DIR, openModelFolder } from "../src/model/folder.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import { Rng } from "../src/util/rng.ts";

const CASES = 1500;

const folder = await openModelFolder(DEFAULT_DRAFT_DIR);
const model = await loadCpuModel(folder);
const scheduler = new Scheduler({ maxQueue: 4 });
const app = createApp(localService({ name: "tiny-draft", model, tokenizer: folder.tokenizer }), {
  scheduler,
  maxBodyBytes: 256 * 1024,
});

const rng = new Rng(20240607);
const int = (n: number) => Math.floor(rng.next() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];

function randomString(max = 12): string {
  const chars = 'abcXYZ019 _-"\\/\n\t\u00e9\u4e2d\u{1F600}{}[],:';
  return Array.from({ length: int(max) }, () => pick([...chars])).join("");
}

/** A random JSON value (never a valid body on its own: see the callers). */
function randomJson(depth = 0): unknown {
  const k = int(depth > 3 ? 5 : 7);
  switch (k) {
    case 0:
      return null;
    case 1:
      return rng.next() < 0.5;
    case 2:
      return pick([0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 2, Number.MIN_VALUE, 7]);
    case 3:
      return randomString();
    case 4:
      return [];
    case 5:
      return Array.from({ length: int(4) }, () => randomJson(depth + 1));
    default:
      return Object.fromEntries(
        Array.from({ length: int(4) }, () => [randomString(6), randomJson(depth + 1)]),
      );
  }
}

/** Values of the wrong type or out of range, per kind of field. */
const BAD: Record<string, unknown[]> = {
  int: ["5", true, [], {}, 1.5, -1, 0, 1e308, -1e308, 2 ** 53 + 2, "1e999"],
  num: ["0.5", false, [0.5], { v: 1 }, -1, 1e308, -1e-300],
  prob: ["1", 0, -0.1, 1.0000001, 1e308, [1]],
  bool: [0, 1, "true", "false", [], {}],
  text: [5, true, [], {}, ["x"], "", "\ud800 unpaired", "a\udfffb"],
  stop: [5, true, {}, [1], [""], ["ok", 7], Array(17).fill("s"), "x".repeat(300), "\udc00"],
  method: ["fast", 1, "AR", "", ["ar"]],
  model: [1, true, [], {}, "x".repeat(300)],
  seed: [-1, 2 ** 32, 1.5, "7", 2 ** 60],
};

/** Bad values of the logits-processing fields every route takes (ids >= 2048 are outside the vocabulary). */
const PROCESSING: Record<string, unknown[]> = {
  presence_penalty: [2.01, -3, "0", [], {}],
  frequency_penalty: [2.1, -2.5, "0", true],
  repetition_penalty: [0, -1, "1", true],
  min_p: [-0.1, 1.5, "0.1"],
  logit_bias: [[], "x", { "5000": 1 }, { abc: 1 }, { "-1": 1 }, { "01": 1 }, { "5": 101 }, { "5": "1" }, {
    "5": null,
  }],
  response_format: [
    "json",
    { type: "xml" },
    { type: "json_schema" },
    { type: "json_schema", json_schema: {} },
    { type: "json_schema", json_schema: { name: "bad name!" } },
    { type: "json_schema", json_schema: { name: "x", schema: [] } },
    { type: "text", extra: 1 },
  ],
};

/** Bad values of the fields accepted only at neutral values. */
const NEUTRAL: Record<string, unknown[]> = {
  store: [true, "false", 1],
  service_tier: ["flex", "priority", 1],
  metadata: [[], "x", { k: 1 }, Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]))],
  user: [1, "x".repeat(300)],
  prompt_cache_retention: ["forever", 1],
  prompt_cache_options: [{ mode: "always" }, { other: 1 }, "x"],
};

interface Route {
  path: string;
  base: Record<string, unknown>;
  fields: Record<string, keyof typeof BAD | unknown[]>;
}

const ROUTES: Route[] = [
  {
    path: "/v1/generate",
    base: { prompt: "And God said", max_tokens: 2, temperature: 0 },
    fields: {
      prompt: [...BAD.text, null],
      max_tokens: [...BAD.int, null],
      temperature: [...BAD.num, 101, null],
      top_p: [...BAD.prob, null],
      top_k: [...BAD.int.filter((v) => v !== 0), null],
      seed: [...BAD.seed, null],
      stop: [...BAD.stop, null],
      stream: [...BAD.bool, null],
      method: [...BAD.method, null],
      tree_size: [...BAD.int, 257],
      depth: [...BAD.int, 33],
      budget: [...BAD.int, 1025],
      logprobs: [...BAD.int.filter((v) => v !== 0), 21, true],
      ...PROCESSING,
    },
  },
  {
    path: "/v1/completions",
    base: { model: "tiny-draft", prompt: "And God said", max_tokens: 2, temperature: 0 },
    fields: {
      // ["x"] and ["a", "b"] are valid completions prompts (a list of prompts), as are [[1], [2]].
      prompt: [
        ...BAD.text.filter((v) => !Array.isArray(v)),
        null,
        [],
        [1.5],
        [-1],
        Array(65).fill("a"),
        [[1], [2, 5000]],
        [[]],
        [5000],
        [{}],
        ["a", 1],
        ["a", ""],
      ],
      model: BAD.model,
      max_tokens: BAD.int,
      temperature: [...BAD.num, 2.01],
      top_p: BAD.prob,
      n: [17, 0, "1", true, 1.5],
      stream: BAD.bool,
      // Without stream: true even a well-formed stream_options is refused.
      stream_options: [5, "x", [], { include_usage: 1 }, { other: true }, { include_usage: true }],
      stop: BAD.stop,
      seed: BAD.seed,
      logprobs: [true, 6, -1, "x", 1.5],
      echo: [1, "no", []],
      best_of: [0, 17, "2", 1.5],
      suffix: ["y", 1],
      method: BAD.method,
      // The server has no draft: tree fields would be ignored by "ar".
      tree_size: [4],
      ...PROCESSING,
      ...NEUTRAL,
    },
  },
  {
    path: "/v1/chat/completions",
    base: { messages: [{ role: "user", content: "Hello" }], max_tokens: 2, temperature: 0 },
    fields: {
      messages: [
        ...BAD.text,
        null,
        [],
        [{}],
        [{ role: "user" }],
        [{ role: "robot", content: "x" }],
        [{ role: "user", content: 5 }],
        [{ role: "user", content: "x", extra: 1 }],
        [{ role: "user", content: [{ type: "image_url", image_url: "file:///etc/passwd" }] }],
        [{ role: "user", content: [] }],
        [{ role: "user", content: "\ud800" }],
        Array(257).fill({ role: "user", content: "x" }),
      ],
      max_tokens: BAD.int,
      max_completion_tokens: BAD.int,
      temperature: BAD.num,
      top_p: BAD.prob,
      stop: BAD.stop,
      n: [17, 0],
      logprobs: [1, "true", []],
      top_logprobs: [21, -1, 2, "1"],
      tools: [[{ type: "function" }], "x", {}],
      tool_choice: ["required", { type: "function" }],
      functions: [[{ name: "f" }]],
      function_call: [{ name: "f" }],
      parallel_tool_calls: [1, "yes"],
      modalities: [["audio"], ["text", "audio"], "text"],
      audio: [{ voice: "alloy", format: "wav" }],
      prediction: [{ type: "content", content: "x" }],
      reasoning_effort: ["low"],
      moderation: [{}, true],
      best_of: [2],
      ...PROCESSING,
      ...NEUTRAL,
    },
  },
];

/** One malformed body (bytes or text) for `route`; `kind` says how it was made. */
function malformed(route: Route): { kind: string; body: string | Uint8Array } {
  const valid = JSON.stringify(route.base);
  switch (int(9)) {
    case 0: { // a random non-object at the top
      let v = randomJson();
      while (v !== null && typeof v === "object" && !Array.isArray(v)) v = randomJson();
      return { kind: "top-level non-object", body: JSON.stringify(v) };
    }
    case 1: { // random keys: every one unknown
      const o = Object.fromEntries(
        Array.from({ length: 1 + int(4) }, (_, i) => [`fz${i}_${randomString(5)}`, randomJson()]),
      );
      return { kind: "unknown keys", body: JSON.stringify(rng.next() < 0.5 ? o : { ...route.base, ...o }) };
    }
    case 2:
    case 3: { // one field with a wrong type or out of range
      const [field, bad] = pick(Object.entries(route.fields));
      const values = Array.isArray(bad) ? bad : BAD[bad];
      const v = pick(values);
      // "1e999" goes in as a bare number token (JSON.stringify cannot write Infinity).
      const body = v === "1e999"
        ? valid.replace(/}$/, `,"${field}":1e999}`).replace(
          `"${field}":${JSON.stringify(route.base[field])},`,
          "",
        )
        : JSON.stringify({ ...route.base, [field]: v });
      return { kind: `bad ${field}`, body };
    }
    case 4: { // a required field missing
      const o = { ...route.base };
      delete o[route.path.includes("chat") ? "messages" : "prompt"];
      return { kind: "missing required", body: JSON.stringify(o) };
    }
    case 5: { // deep nesting, in a field or at the top
      const depth = 100 + int(20_000);
      const open = pick(["[", '{"a":']);
      const close = open === "[" ? "]" : "}";
      const nested = open.repeat(depth) + "1" + close.repeat(depth);
      // In a field (a duplicate key's last value wins in JSON.parse) or as the whole body.
      const field = pick(Object.keys(route.fields));
      const body = rng.next() < 0.5 ? nested : `${valid.slice(0, -1)},"${field}":${nested}}`;
      return { kind: "deep nesting", body };
    }
    case 6: { // invalid UTF-8 inside a string value
      const bytes = new TextEncoder().encode(valid);
      const seqs = [[0xff], [0xc3, 0x28], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [
        0xe2,
        0x82,
      ]];
      const seq = pick(seqs);
      const at = valid.indexOf('"', valid.indexOf(":") + 1) + 1; // inside the first string value
      const out = new Uint8Array(bytes.length + seq.length);
      out.set(bytes.subarray(0, at));
      out.set(seq, at);
      out.set(bytes.subarray(at), at + seq.length);
      return { kind: "invalid UTF-8", body: out };
    }
    case 7: // a proper prefix of an object is never valid JSON
      return { kind: "truncated JSON", body: valid.slice(0, int(valid.length)) };
    default: // not JSON at all
      return {
        kind: "not JSON",
        body: pick(["@", "'", "NaN", "{'a': 1}", "undefined", "<xml/>", "\u0000"]) + randomString(),
      };
  }
}

Deno.test(`fuzz: ${CASES} malformed bodies get 4xx envelopes only; the server is healthy after`, async () => {
  const ask = async (body: unknown) =>
    await (await app.request("/v1/generate", { method: "POST", body: JSON.stringify(body) })).json();
  const before = await ask({ prompt: "And God said", max_tokens: 8, temperature: 0 });
  const kinds = new Map<string, number>();
  const statuses = new Map<number, number>();
  for (let i = 0; i < CASES; i++) {
    const route = ROUTES[i % ROUTES.length];
    const { kind, body } = malformed(route);
    const res = await app.request(route.path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: body as BodyInit,
    });
    const text = await res.text();
    const shown = typeof body === "string" ? body.slice(0, 200) : `${body.length} bytes`;
    assert.ok(
      res.status >= 400 && res.status < 500,
      `#${i} ${kind} on ${route.path}: ${res.status} ${text}\n${shown}`,
    );
    const j = JSON.parse(text);
    assert.equal(typeof j.error?.message, "string", `#${i} ${kind}: envelope`);
    assert.ok(
      j.error.message.length > 0 && j.error.message.length < 1000,
      `#${i} ${kind}: message ${j.error.message}`,
    );
    const k = kind.startsWith("bad ") ? "bad field" : kind;
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
  }
  console.log(
    `  statuses ${JSON.stringify(Object.fromEntries(statuses))}, kinds ${
      JSON.stringify(Object.fromEntries(kinds))
    }`,
  );
  assert.ok(kinds.size >= 8, `every kind of malformation was tried: ${[...kinds.keys()]}`);
  // Healthy afterwards: live, ready, nothing queued, and the same answer to the same valid request.
  assert.equal((await app.request("/health")).status, 200);
  assert.equal((await app.request("/ready")).status, 200);
  assert.equal(scheduler.running + scheduler.waiting, 0);
  assert.deepEqual(
    (await ask({ prompt: "And God said", max_tokens: 8, temperature: 0 })).tokens,
    before.tokens,
  );
  const m = await (await app.request("/metrics")).text();
  const fourxx = [...m.matchAll(/^specdec_requests_total\{route="[^"]+",status="4\d\d"\} (\d+)$/gm)]
    .reduce((a, x) => a + Number(x[1]), 0);
  assert.equal(fourxx, CASES, "every malformed request was counted as a 4xx");
});

Deno.test("fuzz: every listed bad value of every field, one by one, gets a 4xx naming the field", async () => {
  const fresh = createApp(localService({ name: "tiny-draft", model, tokenizer: folder.tokenizer }));
  let n = 0;
  for (const route of ROUTES) {
    for (const [field, bad] of Object.entries(route.fields)) {
      for (const v of Array.isArray(bad) ? bad : BAD[bad]) {
        if (v === "1e999") continue; // a bare number token: the random cases cover it
        const res = await fresh.request(route.path, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ ...route.base, [field]: v }),
        });
        const j = await res.json();
        const shown = `${route.path} ${field}=${JSON.stringify(v)?.slice(0, 80)}: ${res.status} ${
          JSON.stringify(j)
        }`;
        assert.ok(res.status >= 400 && res.status < 500, shown);
        // The field at fault is named (a missing or wrong prompt/messages may be named by its own path).
        assert.ok(
          (j.error.param ?? "").startsWith(field) || j.error.message.startsWith(field),
          `names the field: ${shown}`,
        );
        n++;
      }
    }
  }
  console.log(`  ${n} field values, each refused`);
});

Deno.test("fuzz: 80 seeded VALID combinations of the new fields under every method: no 5xx, and what they promise holds", async () => {
  // A server with a draft, so speculative methods, processors, grammars and logprobs all reach the engine.
  const { DEFAULT_TARGET_DIR } = await import("../src/model/folder.ts");
  const tf = await openModelFolder(DEFAULT_TARGET_DIR);
  const spec = createApp(localService({
    name: "tiny",
    model: await loadCpuModel(tf),
    draft: model,
    tokenizer: tf.tokenizer,
    acceptance: [0.6, 0.12, 0.06, 0.04],
    tree: { treeSize: 8, depth: 3, budget: 16 },
  }));
  const r = new Rng(77);
  const pk = <T>(xs: readonly T[]): T => xs[Math.floor(r.next() * xs.length)];
  const banned = tf.tokenizer.encode(" the", { addBos: false })[0];
  let five = 0;
  for (let i = 0; i < 80; i++) {
    const method = pk(["ar", "chain", "specinfer", "sequoia", "specexec"]);
    const grammar = pk([undefined, undefined, { type: "json_object" }, {
      type: "json_schema",
      json_schema: {
        name: "x",
        schema: { type: "object", properties: { a: { enum: ["x", "y"] } }, required: ["a"] },
      },
    }]);
    const body: Record<string, unknown> = {
      prompt: pk(["And God said", "In the beginning", "The LORD is"]),
      max_tokens: 1 + Math.floor(r.next() * 12),
      temperature: pk([0, 0.7, 1.5]),
      method,
      seed: i,
      logprobs: pk([undefined, 0, 3]),
      presence_penalty: pk([undefined, -2, 0.5, 2]),
      frequency_penalty: pk([undefined, -1, 1.5]),
      repetition_penalty: pk([undefined, 0.01, 1.3, 100]),
      min_p: pk([undefined, 0, 0.05, 1]),
      logit_bias: pk([undefined, {}, { [banned]: -100 }]),
      stop: pk([undefined, ["."], [" and", "\n"]]),
      stream: r.next() < 0.3,
      ...(grammar ? { response_format: grammar } : {}),
      ...(method === "ar" ? {} : { tree_size: pk([undefined, 4, 12]) }),
    };
    for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
    if (method !== "sequoia") delete body.tree_size; // tree_size applies to sequoia and lookup only
    const res = await spec.request("/v1/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status >= 500) five++;
    assert.ok(res.status < 500, `${res.status} for ${JSON.stringify(body)}: ${text.slice(0, 300)}`);
    assert.equal(res.status, 200, `${JSON.stringify(body)}: ${text.slice(0, 300)}`);
    const chunks = body.stream
      ? text.split("\n\n").filter((l) => l.startsWith("data: ") && l !== "data: [DONE]").map((l) =>
        JSON.parse(l.slice(6))
      )
      : [JSON.parse(text)];
    const out = chunks.map((c) => c.choices?.[0]?.text ?? "").join("");
    const finish = chunks.map((c) => c.choices?.[0]?.finish_reason).filter(Boolean).pop();
    const lps = chunks.flatMap((c) => c.choices?.[0]?.logprobs?.token_logprobs ?? []);
    assert.ok(lps.every((x: number) => Number.isFinite(x) && x <= 1e-9), `finite logprobs: ${lps}`);
    const toks = chunks.flatMap((c) => c.choices?.[0]?.logprobs?.tokens ?? []);
    if (body.logit_bias && Object.keys(body.logit_bias).length) {
      assert.ok(!toks.includes(" the"), `a banned token was generated: ${JSON.stringify(toks)}`);
    }
    if (grammar && finish === "stop" && !body.stop) JSON.parse(out);
  }
  assert.equal(five, 0);
});
