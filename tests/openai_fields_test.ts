/**
 * The request fields of the OpenAI and native routes through app.request() (no socket), on the bundled
 * tiny models run by the CPU reference: each field accepted as neutral, refused with the field named, or
 * honoured (logit_bias, penalties, min_p, logprobs in both formats, echo, n, best_of, prompt lists),
 * llama.cpp's `timings`, and vLLM's speculative-decoding counters in /metrics.
 */
import assert from "node:assert/strict";
import { createApp, localService } from "../src/server/app.ts";
import { Counter, ServerMetrics } from "../src/server/metrics.ts";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import { loadCpuModel } from "../src/cpu/load.ts";

const folder = await openModelFolder(DEFAULT_DRAFT_DIR);
const cpu = await loadCpuModel(folder);
const tok = folder.tokenizer;
const CTX = cpu.config.maxPositions;
const app = createApp(localService({ name: "tiny-draft", model: cpu, tokenizer: tok }));

// A speculative pair (the tiny target with the tiny draft), for timings' draft counts and /metrics.
const tf = await openModelFolder(DEFAULT_TARGET_DIR);
const target = await loadCpuModel(tf);
const ACCEPTANCE = [0.6, 0.12, 0.06, 0.04];
function specApp(metrics = new ServerMetrics()) {
  return createApp(
    localService({
      name: "tiny",
      model: target,
      draft: cpu,
      tokenizer: tf.tokenizer,
      tree: { treeSize: 12, depth: 4 },
      acceptance: ACCEPTANCE,
    }),
    { metrics },
  );
}

type App = ReturnType<typeof createApp>;
// deno-lint-ignore no-explicit-any
type Json = any;

async function post(a: App, path: string, body: unknown): Promise<Response> {
  return await a.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function ok(a: App, path: string, body: unknown): Promise<Json> {
  const res = await post(a, path, body);
  const j = await res.json();
  assert.equal(res.status, 200, JSON.stringify(j));
  return j;
}

/** The `data:` payloads of an SSE answer, [DONE] excluded (asserted last). */
async function events(a: App, path: string, body: unknown): Promise<Json[]> {
  const res = await post(a, path, body);
  assert.equal(res.status, 200);
  const data = (await res.text()).split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
  assert.equal(data.at(-1), "[DONE]", data.at(-1));
  return data.slice(0, -1).map((e) => JSON.parse(e));
}

async function refused(a: App, path: string, body: unknown, param: string, ...needles: string[]) {
  const res = await post(a, path, body);
  const j = await res.json();
  assert.equal(res.status, 400, `${JSON.stringify(body)} -> ${res.status} ${JSON.stringify(j)}`);
  assert.equal(j.error.type, "invalid_request_error");
  assert.equal(j.error.param, param, `${JSON.stringify(body)}: ${j.error.message}`);
  for (const s of needles) assert.ok(j.error.message.includes(s), `"${j.error.message}" lacks "${s}"`);
  return j.error;
}

const PROMPT = "And God said";
const MSG = [{ role: "user", content: "Who made the light?" }];
const greedy = { max_tokens: 12, temperature: 0 };

Deno.test("fields: what SDKs send at neutral values is accepted and changes nothing", async () => {
  const base = await ok(app, "/v1/completions", { prompt: PROMPT, ...greedy });
  const neutral = {
    store: false,
    metadata: { run: "ci", team: "x" },
    service_tier: "auto",
    user: "u-1",
    safety_identifier: "s-1",
    prompt_cache_key: "k",
    logit_bias: {},
    response_format: { type: "text" },
    presence_penalty: 0,
    frequency_penalty: 0,
    repetition_penalty: 1,
    min_p: 0,
    n: 1,
    best_of: 1,
    echo: false,
    logprobs: null,
    seed: null,
    suffix: null,
  };
  const c = await ok(app, "/v1/completions", { prompt: PROMPT, ...greedy, ...neutral });
  assert.equal(c.choices[0].text, base.choices[0].text);
  assert.equal(c.choices[0].logprobs, null);
  assert.equal(
    (await ok(app, "/v1/completions", { prompt: PROMPT, ...greedy, service_tier: "default" }))
      .choices[0].text,
    base.choices[0].text,
  );

  const chat = await ok(app, "/v1/chat/completions", { messages: MSG, ...greedy });
  const chatNeutral = await ok(app, "/v1/chat/completions", {
    messages: MSG,
    ...greedy,
    store: false,
    metadata: {},
    service_tier: "auto",
    parallel_tool_calls: true,
    tools: [],
    tool_choice: "none",
    functions: [],
    function_call: "auto",
    modalities: ["text"],
    audio: null,
    prediction: null,
    response_format: { type: "text" },
    logit_bias: {},
    logprobs: false,
    top_logprobs: 0,
    user: "u",
  });
  assert.equal(chatNeutral.choices[0].message.content, chat.choices[0].message.content);
  // stream_options with stream: true (include_obfuscation changes no text).
  const ev = await events(app, "/v1/chat/completions", {
    messages: MSG,
    ...greedy,
    stream: true,
    stream_options: { include_usage: false, include_obfuscation: true },
  });
  assert.equal(ev.map((e) => e.choices[0]?.delta.content ?? "").join(""), chat.choices[0].message.content);
});

Deno.test("fields: refused with a 400 naming the field where the server would have to ignore them", async () => {
  const C = "/v1/completions", H = "/v1/chat/completions", G = "/v1/generate";
  const p = { prompt: PROMPT, max_tokens: 2 };
  const m = { messages: MSG, max_tokens: 2 };
  await refused(app, C, { ...p, store: true }, "store", "keeps no completions");
  await refused(app, C, { ...p, service_tier: "flex" }, "service_tier", "one service tier");
  await refused(app, C, { ...p, suffix: "x" }, "suffix", "fill-in-the-middle");
  await refused(
    app,
    H,
    { ...m, tools: [{ type: "function", function: { name: "f" } }] },
    "tools",
    "tool calling",
  );
  await refused(app, H, { ...m, tool_choice: "required" }, "tool_choice");
  await refused(app, H, { ...m, functions: [{ name: "f" }] }, "functions");
  await refused(app, H, { ...m, function_call: { name: "f" } }, "function_call");
  await refused(app, H, { ...m, audio: { voice: "alloy", format: "wav" } }, "audio", "audio");
  await refused(app, H, { ...m, modalities: ["text", "audio"] }, "modalities", '["text"]');
  await refused(app, H, { ...m, prediction: { type: "content", content: "x" } }, "prediction", "predicted");
  await refused(app, H, { ...m, web_search_options: {} }, "web_search_options");
  await refused(app, H, { ...m, reasoning_effort: "low" }, "reasoning_effort");
  await refused(app, H, { ...m, verbosity: "low" }, "verbosity");
  // stream_options needs stream: true (OpenAI answers 400 too).
  await refused(app, C, { ...p, stream_options: { include_usage: true } }, "stream_options", "stream: true");
  await refused(app, H, { ...m, stream: false, stream_options: {} }, "stream_options");
  // Ranges and combinations.
  await refused(app, H, { ...m, top_logprobs: 3 }, "top_logprobs", "logprobs: true");
  await refused(app, H, { ...m, logprobs: true, top_logprobs: 21 }, "top_logprobs");
  await refused(app, C, { ...p, logprobs: 6 }, "logprobs");
  await refused(app, C, { ...p, n: 3, best_of: 2 }, "best_of", "at least n");
  await refused(app, C, { ...p, best_of: 2, stream: true }, "best_of", "stream");
  await refused(app, C, { ...p, max_tokens: 0 }, "max_tokens", "echo");
  await refused(app, C, { ...p, n: 17 }, "n");
  await refused(app, C, { prompt: Array(9).fill("a"), n: 2 }, "n", "9 prompts x 2 = 18", "at most 17");
  await refused(app, H, { ...m, n: 17 }, "n");
  for (const [path, body] of [[C, p], [H, m], [G, p]] as const) {
    await refused(app, path, { ...body, presence_penalty: 2.5 }, "presence_penalty");
    await refused(app, path, { ...body, frequency_penalty: -2.01 }, "frequency_penalty");
    await refused(app, path, { ...body, repetition_penalty: 0 }, "repetition_penalty");
    await refused(app, path, { ...body, min_p: 1.5 }, "min_p");
    await refused(
      app,
      path,
      { ...body, logit_bias: { "2048": 5 } },
      "logit_bias.2048",
      "outside the vocabulary",
    );
    await refused(app, path, { ...body, logit_bias: { abc: 5 } }, "logit_bias.abc", "token ids");
    await refused(app, path, { ...body, logit_bias: { "7": 100.5 } }, "logit_bias.7");
    await refused(app, path, { ...body, response_format: { type: "xml" } }, "response_format.type");
    await refused(
      app,
      path,
      { ...body, response_format: { type: "json_schema", json_schema: {} } },
      "response_format.json_schema.name",
    );
    // Tree fields would be ignored by "ar" (this server's only method).
    await refused(app, path, { ...body, tree_size: 8 }, "tree_size", "speculative", "default method");
    await refused(app, path, { ...body, method: "ar", budget: 8 }, "budget", 'method is "ar"');
  }
  await refused(app, G, { ...p, logprobs: 21 }, "logprobs");
  await refused(app, G, { ...p, echo: true }, "echo");
});

Deno.test("fields: context_length_exceeded names the prompt when it alone does not fit, max_tokens otherwise", async () => {
  const long = Array(CTX).fill(5);
  let e = await refused(app, "/v1/completions", { prompt: long, max_tokens: 1 }, "prompt", `(${CTX} tokens)`);
  assert.equal(e.code, "context_length_exceeded");
  e = await refused(app, "/v1/completions", { prompt: long.slice(1), max_tokens: 2 }, "max_tokens");
  assert.equal(e.code, "context_length_exceeded");
  const words = "and the ".repeat(CTX);
  e = await refused(app, "/v1/generate", { prompt: words, max_tokens: 1 }, "prompt", "does not fit");
  assert.equal(e.code, "context_length_exceeded");
  e = await refused(
    app,
    "/v1/chat/completions",
    { messages: [{ role: "user", content: words }] },
    "messages",
  );
  assert.equal(e.code, "context_length_exceeded");
  // The chat default (as much as the context leaves) fits whenever the prompt does.
  e = await refused(
    app,
    "/v1/chat/completions",
    { messages: MSG, max_completion_tokens: CTX },
    "max_completion_tokens",
  );
  assert.equal(e.code, "context_length_exceeded");
});

/** Greedy token ids of `prompt` from the native route, with `extra` fields. */
async function ids(a: App, extra: Record<string, unknown> = {}, n = 24): Promise<number[]> {
  return (await ok(a, "/v1/generate", { prompt: PROMPT, max_tokens: n, temperature: 0, ...extra })).tokens;
}

Deno.test("fields: logit_bias -100 bans a token, +100 forces one, on every route", async () => {
  const base = await ids(app);
  // Ban every token of the greedy continuation: none of them may appear again.
  const banned = [...new Set(base)];
  const bias = Object.fromEntries(banned.map((t) => [String(t), -100]));
  const after = await ids(app, { logit_bias: bias });
  assert.equal(after.length, base.length);
  for (const t of after) assert.ok(!banned.includes(t), `banned token ${t} generated`);
  // The OpenAI routes honour it the same way (text of the same ids).
  const c = await ok(app, "/v1/completions", {
    prompt: PROMPT,
    max_tokens: 24,
    temperature: 0,
    logit_bias: bias,
  });
  assert.equal(c.choices[0].text, tok.decode(after));
  // +100 forces a token: greedy picks it at every step, even at temperature 1.
  const forced = tok.encode(" LORD", { addBos: false })[0];
  assert.deepEqual(await ids(app, { logit_bias: { [forced]: 100 } }, 8), Array(8).fill(forced));
  const sampled = await ok(app, "/v1/completions", {
    prompt: PROMPT,
    max_tokens: 8,
    temperature: 1,
    seed: 3,
    logit_bias: { [forced]: 100 },
  });
  assert.equal(sampled.choices[0].text, tok.decode(Array(8).fill(forced)));
  const chat = await ok(app, "/v1/chat/completions", {
    messages: MSG,
    max_tokens: 5,
    temperature: 0,
    logit_bias: { [forced]: 100 },
  });
  assert.equal(chat.choices[0].message.content, tok.decode(Array(5).fill(forced)));
});

Deno.test("fields: presence, frequency and repetition penalties change the greedy output; min_p truncates", async () => {
  const n = 40;
  const base = await ids(app, {}, n);
  const distinct = (xs: number[]) => new Set(xs).size;
  for (const pen of [{ presence_penalty: 2 }, { frequency_penalty: 2 }, { repetition_penalty: 1.8 }]) {
    const out = await ids(app, pen, n);
    assert.notDeepEqual(out, base, JSON.stringify(pen));
    assert.ok(
      distinct(out) > distinct(base),
      `${JSON.stringify(pen)}: ${distinct(out)} vs ${distinct(base)} distinct`,
    );
    // The same on the OpenAI routes.
    const c = await ok(app, "/v1/completions", { prompt: PROMPT, max_tokens: n, temperature: 0, ...pen });
    assert.equal(c.choices[0].text, tok.decode(out));
  }
  // A negative presence penalty rewards repetition instead.
  assert.ok(distinct(await ids(app, { presence_penalty: -2 }, n)) <= distinct(base));
  // min_p at temperature 1: every sampled token is at least min_p x as likely as the most likely one
  // (logprobs are of the processed distribution; ratios survive the renormalisation).
  const sample = async (extra: Record<string, unknown>) =>
    await ok(app, "/v1/generate", {
      prompt: PROMPT,
      max_tokens: 30,
      temperature: 1,
      seed: 11,
      logprobs: 1,
      ...extra,
    });
  const margin = (j: Json) => j.logprobs.map((e: Json) => e.logprob - e.top_logprobs[0].logprob);
  const free = margin(await sample({}));
  assert.ok(free.some((d: number) => d < Math.log(0.5)), "without min_p some token is < 0.5 x the top one");
  for (const d of margin(await sample({ min_p: 0.5 }))) assert.ok(d >= Math.log(0.5) - 1e-6, `margin ${d}`);
});

Deno.test("fields: chat logprobs: the greedy token's logprob is the max of top_logprobs; JSON and stream agree", async () => {
  const body = { messages: MSG, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 5 };
  const j = await ok(app, "/v1/chat/completions", body);
  const content = j.choices[0].logprobs.content;
  assert.equal(j.choices[0].logprobs.refusal, null);
  assert.equal(content.length, j.usage.completion_tokens);
  assert.equal(content.map((e: Json) => e.token).join(""), j.choices[0].message.content);
  for (const e of content) {
    assert.equal(e.top_logprobs.length, 5);
    assert.equal(e.top_logprobs[0].token, e.token);
    assert.ok(Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-9);
    assert.ok(e.logprob <= 0);
    for (let i = 1; i < 5; i++) assert.ok(e.top_logprobs[i].logprob <= e.top_logprobs[i - 1].logprob);
    assert.ok(e.top_logprobs.reduce((s: number, t: Json) => s + Math.exp(t.logprob), 0) <= 1 + 1e-9);
    assert.deepEqual(e.bytes, [...new TextEncoder().encode(e.token)]);
    for (const t of e.top_logprobs) assert.ok(Array.isArray(t.bytes));
  }
  // logprobs without top_logprobs: each token's own, no alternatives.
  const plain = await ok(app, "/v1/chat/completions", { ...body, top_logprobs: undefined });
  assert.deepEqual(plain.choices[0].logprobs.content.map((e: Json) => e.top_logprobs), content.map(() => []));
  // Stream: the chunks' logprobs, concatenated, are the JSON's.
  const ev = await events(app, "/v1/chat/completions", { ...body, stream: true });
  const streamed = ev.flatMap((e) => e.choices[0]?.logprobs?.content ?? []);
  assert.deepEqual(streamed, content);
  assert.equal(ev[0].choices[0].logprobs, null, "the role chunk carries none");
});

Deno.test("fields: completions logprobs: tokens, token_logprobs, top_logprobs (+ the sampled token), text_offset", async () => {
  const body = { prompt: PROMPT, max_tokens: 10, temperature: 0, logprobs: 3 };
  const j = await ok(app, "/v1/completions", body);
  const lp = j.choices[0].logprobs;
  const text = j.choices[0].text;
  assert.equal(lp.tokens.length, j.usage.completion_tokens);
  assert.equal(lp.tokens.join(""), text);
  for (let i = 0; i < lp.tokens.length; i++) {
    const top = lp.top_logprobs[i];
    assert.ok(Object.keys(top).length >= 1 && Object.keys(top).length <= 4);
    assert.equal(
      lp.token_logprobs[i],
      Math.max(...Object.values(top) as number[]),
      "greedy = the most likely",
    );
    assert.equal(top[lp.tokens[i]], lp.token_logprobs[i]);
    assert.equal(text.slice(lp.text_offset[i]).startsWith(lp.tokens[i]), true);
  }
  // Sampled: the sampled token is in top_logprobs even when it is not among the 1 most likely.
  const s = await ok(app, "/v1/completions", {
    prompt: PROMPT,
    max_tokens: 30,
    temperature: 1.5,
    seed: 2,
    logprobs: 1,
  });
  const sl = s.choices[0].logprobs;
  let outside = 0;
  sl.tokens.forEach((t: string, i: number) => {
    assert.equal(sl.top_logprobs[i][t], sl.token_logprobs[i]);
    if (Object.keys(sl.top_logprobs[i]).length === 2) outside++;
  });
  assert.ok(outside > 0, "some sampled token was not the most likely one");
  // Stream chunks carry their tokens' entries; offsets continue across chunks.
  const ev = await events(app, "/v1/completions", { ...body, stream: true });
  const cat = (k: string) => ev.flatMap((e) => e.choices[0]?.logprobs?.[k] ?? []);
  for (const k of ["tokens", "token_logprobs", "top_logprobs", "text_offset"]) {
    assert.deepEqual(cat(k), lp[k], k);
  }
});

Deno.test("fields: echo prepends the prompt; with logprobs the prompt's come first (the first null) and match a teacher-forced read", async () => {
  const prompt = tok.encode(PROMPT);
  const j = await ok(app, "/v1/completions", {
    prompt: PROMPT,
    max_tokens: 6,
    temperature: 0,
    echo: true,
    logprobs: 2,
  });
  const plain = await ok(app, "/v1/completions", { prompt: PROMPT, max_tokens: 6, temperature: 0 });
  assert.equal(j.choices[0].text, PROMPT + plain.choices[0].text);
  const lp = j.choices[0].logprobs;
  assert.equal(lp.tokens.length, prompt.length + 6);
  assert.equal(lp.token_logprobs[0], null);
  assert.equal(lp.top_logprobs[0], null);
  assert.deepEqual(lp.tokens.slice(0, prompt.length), prompt.map((t) => tok.decode([t])));
  assert.equal(lp.text_offset[prompt.length], PROMPT.length, "completion offsets follow the echoed prompt");
  // Prompt token i's logprob is what a completion of the prompt's first i tokens gives it.
  for (let i = 1; i < prompt.length; i++) {
    const head = await ok(app, "/v1/completions", {
      prompt: prompt.slice(0, i),
      max_tokens: 1,
      temperature: 0,
      logprobs: 5,
    });
    const top = head.choices[0].logprobs.top_logprobs[0];
    const piece = tok.decode([prompt[i]]);
    if (piece in top) assert.ok(Math.abs(top[piece] - lp.token_logprobs[i]) < 1e-4, `prompt token ${i}`);
    assert.equal(lp.top_logprobs[i][piece], lp.token_logprobs[i]);
  }
  // max_tokens 0 with echo: the prompt scored, nothing generated (how evaluation harnesses score text).
  const scored = await ok(app, "/v1/completions", { prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 0 });
  assert.equal(scored.choices[0].text, PROMPT);
  assert.equal(scored.usage.completion_tokens, 0);
  assert.deepEqual(scored.choices[0].logprobs.token_logprobs, lp.token_logprobs.slice(0, prompt.length));
  // Token-id prompts echo their decoded text. Streams send the echo first.
  const byIds = await ok(app, "/v1/completions", { prompt, max_tokens: 6, temperature: 0, echo: true });
  assert.equal(byIds.choices[0].text, tok.decode(prompt) + plain.choices[0].text);
  const ev = await events(app, "/v1/completions", {
    prompt: PROMPT,
    max_tokens: 6,
    temperature: 0,
    echo: true,
    logprobs: 2,
    stream: true,
  });
  assert.equal(ev[0].choices[0].text, PROMPT);
  assert.equal(ev[0].choices[0].logprobs.tokens.length, prompt.length);
  assert.equal(ev.map((e) => e.choices[0]?.text ?? "").join(""), j.choices[0].text);
  assert.deepEqual(ev.flatMap((e) => e.choices[0]?.logprobs?.token_logprobs ?? []), lp.token_logprobs);
});

Deno.test("fields: n, best_of and prompt lists: seeds seed + j, prompt-major indices, usage and timings summed", async () => {
  const one = async (prompt: unknown, seed: number, extra: Record<string, unknown> = {}) =>
    await ok(app, "/v1/completions", { prompt, max_tokens: 8, temperature: 1, seed, ...extra });
  const three = await ok(app, "/v1/completions", {
    prompt: PROMPT,
    max_tokens: 8,
    temperature: 1,
    seed: 5,
    n: 3,
  });
  assert.deepEqual(three.choices.map((c: Json) => c.index), [0, 1, 2]);
  for (let j = 0; j < 3; j++) assert.equal(three.choices[j].text, (await one(PROMPT, 5 + j)).choices[0].text);
  assert.notEqual(three.choices[0].text, three.choices[1].text, "independent samples");
  assert.equal(three.usage.prompt_tokens, tok.encode(PROMPT).length, "the prompt counts once");
  assert.equal(three.usage.completion_tokens, 24);
  assert.equal(three.timings.predicted_n, 24);
  assert.equal(three.timings.prompt_n, 3 * tok.encode(PROMPT).length, "each generation processed it");

  // A list of prompts with n = 2: index = prompt_i * n + j.
  const prompts = [PROMPT, "In the beginning"];
  const list = await ok(app, "/v1/completions", {
    prompt: prompts,
    max_tokens: 8,
    temperature: 1,
    seed: 9,
    n: 2,
  });
  assert.deepEqual(list.choices.map((c: Json) => c.index), [0, 1, 2, 3]);
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 2; j++) {
      assert.equal(list.choices[i * 2 + j].text, (await one(prompts[i], 9 + j)).choices[0].text, `${i},${j}`);
    }
  }
  assert.equal(list.usage.prompt_tokens, prompts.reduce((s, p) => s + tok.encode(p).length, 0));
  const idLists = await ok(app, "/v1/completions", {
    prompt: prompts.map((p) => tok.encode(p)),
    max_tokens: 8,
    temperature: 0,
  });
  assert.equal(idLists.choices.length, 2);
  assert.equal(idLists.choices[1].text, (await one(prompts[1], 0, { temperature: 0 })).choices[0].text);

  // best_of 4, n 2: the two of seeds 21..24 with the highest mean token logprob, best first.
  const best = await ok(app, "/v1/completions", {
    prompt: PROMPT,
    max_tokens: 8,
    temperature: 1.2,
    seed: 21,
    best_of: 4,
    n: 2,
  });
  const cands = [];
  for (let j = 0; j < 4; j++) {
    const r = await one(PROMPT, 21 + j, { temperature: 1.2, logprobs: 0 });
    const lps: number[] = r.choices[0].logprobs.token_logprobs;
    cands.push({ text: r.choices[0].text, mean: lps.reduce((a, b) => a + b, 0) / lps.length });
  }
  cands.sort((a, b) => b.mean - a.mean);
  assert.deepEqual(best.choices.map((c: Json) => c.text), cands.slice(0, 2).map((c) => c.text));
  assert.deepEqual(best.choices.map((c: Json) => c.index), [0, 1]);
  assert.equal(best.choices[0].logprobs, null, "ranked by logprobs, but none were asked for");
  assert.equal(best.usage.completion_tokens, 32, "every best_of generation counts");

  // Streams: each index's chunks in order; the texts are the JSON's.
  const ev = await events(app, "/v1/completions", {
    prompt: prompts,
    max_tokens: 8,
    temperature: 1,
    seed: 9,
    n: 2,
    stream: true,
  });
  for (let k = 0; k < 4; k++) {
    const mine = ev.filter((e) => e.choices[0]?.index === k);
    assert.equal(mine.map((e) => e.choices[0].text).join(""), list.choices[k].text);
    assert.equal(mine.filter((e) => e.choices[0].finish_reason !== null).length, 1);
  }
  const chat = await ok(app, "/v1/chat/completions", {
    messages: MSG,
    max_tokens: 6,
    temperature: 1,
    seed: 4,
    n: 2,
  });
  assert.equal(chat.choices.length, 2);
  const cev = await events(app, "/v1/chat/completions", {
    messages: MSG,
    max_tokens: 6,
    temperature: 1,
    seed: 4,
    n: 2,
    stream: true,
  });
  for (let k = 0; k < 2; k++) {
    const mine = cev.filter((e) => e.choices[0]?.index === k);
    assert.deepEqual(mine[0].choices[0].delta, { role: "assistant", content: "" });
    assert.equal(mine.map((e) => e.choices[0].delta.content ?? "").join(""), chat.choices[k].message.content);
  }
});

/** Timings' own consistency: rates from counts and times. */
function checkTimings(t: Json, completionTokens: number) {
  assert.equal(t.predicted_n, completionTokens);
  assert.equal(t.cache_n, 0);
  assert.ok(t.prompt_n >= 1 && t.prompt_ms > 0 && t.predicted_ms >= 0);
  assert.ok(Math.abs(t.prompt_per_token_ms - t.prompt_ms / t.prompt_n) < 1e-9);
  assert.ok(Math.abs(t.prompt_per_second - 1000 * t.prompt_n / t.prompt_ms) < 1e-6);
  if (t.predicted_ms > 0) {
    assert.ok(Math.abs(t.predicted_per_token_ms - t.predicted_ms / t.predicted_n) < 1e-9);
    assert.ok(Math.abs(t.predicted_per_second - 1000 * t.predicted_n / t.predicted_ms) < 1e-6);
  }
}

Deno.test("fields: llama.cpp timings on every response and on the last stream chunk; no draft counts under ar", async () => {
  const c = await ok(app, "/v1/completions", { prompt: PROMPT, ...greedy });
  checkTimings(c.timings, c.usage.completion_tokens);
  assert.equal(c.timings.prompt_n, c.usage.prompt_tokens);
  assert.ok(!("draft_n" in c.timings), "draft_n only when speculation drafted (llama.cpp)");
  const h = await ok(app, "/v1/chat/completions", { messages: MSG, ...greedy });
  checkTimings(h.timings, h.usage.completion_tokens);
  const g = await ok(app, "/v1/generate", { prompt: PROMPT, ...greedy });
  checkTimings(g.timings, g.usage.completion_tokens);
  // Streams: the last chunk before [DONE] carries them (the usage chunk when asked for).
  for (const path of ["/v1/completions", "/v1/chat/completions"]) {
    const body = path.includes("chat") ? { messages: MSG, ...greedy } : { prompt: PROMPT, ...greedy };
    const ev = await events(app, path, { ...body, stream: true });
    assert.ok(ev.slice(0, -1).every((e) => !("timings" in e)));
    checkTimings(
      ev.at(-1).timings,
      path.includes("chat") ? h.usage.completion_tokens : c.usage.completion_tokens,
    );
    const withUsage = await events(app, path, {
      ...body,
      stream: true,
      stream_options: { include_usage: true },
    });
    assert.deepEqual(withUsage.at(-1).choices, []);
    checkTimings(withUsage.at(-1).timings, withUsage.at(-1).usage.completion_tokens);
  }
  const ng = await events(app, "/v1/generate", { prompt: PROMPT, ...greedy, stream: true });
  checkTimings(ng.at(-1).timings, ng.at(-1).usage.completion_tokens);
});

/** The value of one series in a Prometheus text (0 when absent). */
function series(text: string, name: string, labels = ""): number {
  const esc = (name + labels).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return Number(text.match(new RegExp(`^${esc} (\\S+)$`, "m"))?.[1] ?? 0);
}

Deno.test("fields: speculation: timings draft_n / draft_n_accepted agree with vLLM's and our /metrics counters", async () => {
  const a = specApp();
  const m0 = await (await a.request("/metrics")).text();
  const V = '{model_name="tiny",engine="0"}';
  // The vLLM series exist at 0 before the first speculative step.
  assert.equal(series(m0, "vllm:spec_decode_num_drafts_total", V), 0);
  assert.match(m0, /^# TYPE vllm:spec_decode_num_drafts_total counter$/m);
  const ar = await ok(a, "/v1/completions", { prompt: PROMPT, max_tokens: 24, temperature: 0, method: "ar" });
  assert.ok(!("draft_n" in ar.timings));
  const totals = { drafts: 0, draft: 0, accepted: 0 };
  for (
    const [method, extra] of [["chain", { depth: 3 }], ["specexec", { budget: 16 }], ["sequoia", {}]] as const
  ) {
    const r = await ok(a, "/v1/completions", {
      prompt: PROMPT,
      max_tokens: 24,
      temperature: 0,
      method,
      ...extra,
    });
    assert.equal(r.choices[0].text, ar.choices[0].text, `${method} = ar at temperature 0`);
    const t = r.timings;
    checkTimings(t, 24);
    assert.ok(t.draft_n > 0 && t.draft_n_accepted >= 0 && t.draft_n_accepted <= t.draft_n, JSON.stringify(t));
    const m = await (await a.request("/metrics")).text();
    const drafts = series(m, "specdec_spec_decode_drafts_total", `{method="${method}"}`);
    assert.equal(series(m, "specdec_spec_decode_draft_tokens_total", `{method="${method}"}`), t.draft_n);
    assert.equal(
      series(m, "specdec_spec_decode_accepted_tokens_total", `{method="${method}"}`),
      t.draft_n_accepted,
    );
    // Every step emits its accepted tokens and one more; only the last may be cut at max_tokens.
    const emitted = t.draft_n_accepted + drafts;
    assert.ok(
      emitted >= t.predicted_n && emitted - t.predicted_n < 16,
      `${emitted} emitted, ${t.predicted_n} kept`,
    );
    if (method === "chain") assert.equal(t.draft_n, 3 * drafts, "a chain of depth 3 proposes 3 per step");
    totals.drafts += drafts;
    totals.draft += t.draft_n;
    totals.accepted += t.draft_n_accepted;
  }
  const m = await (await a.request("/metrics")).text();
  assert.equal(series(m, "vllm:spec_decode_num_drafts_total", V), totals.drafts);
  assert.equal(series(m, "vllm:spec_decode_num_draft_tokens_total", V), totals.draft);
  assert.equal(series(m, "vllm:spec_decode_num_accepted_tokens_total", V), totals.accepted);
  // Per position: non-increasing in the position, summing to the accepted tokens, position 0 <= drafts.
  const perPos = [
    ...m.matchAll(
      /^vllm:spec_decode_num_accepted_tokens_per_pos_total\{model_name="tiny",engine="0",position="(\d+)"\} (\S+)$/gm,
    ),
  ]
    .map((x) => [Number(x[1]), Number(x[2])]).sort((x, y) => x[0] - y[0]);
  assert.ok(perPos.length > 0);
  assert.deepEqual(perPos.map((x) => x[0]), perPos.map((_, i) => i));
  for (let i = 1; i < perPos.length; i++) assert.ok(perPos[i][1] <= perPos[i - 1][1]);
  assert.equal(perPos.reduce((s, x) => s + x[1], 0), totals.accepted);
  assert.ok(perPos[0][1] <= totals.drafts);
  // Every sample line parses as Prometheus text: `name{labels} value`, ':' allowed in names.
  for (const line of m.split("\n").filter((l) => l && !l.startsWith("#"))) {
    assert.match(
      line,
      /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? \S+$/,
      line,
    );
  }
  // Streams under speculation carry the same timings on their last chunk.
  const ev = await events(a, "/v1/chat/completions", {
    messages: MSG,
    max_tokens: 12,
    temperature: 0,
    method: "chain",
    stream: true,
  });
  assert.ok(ev.at(-1).timings.draft_n > 0);
  assert.throws(() => new Counter("bad name", "x"), RangeError);
  assert.throws(() => new Counter("ok_total", "x").inc({ "bad:label": "v" }), RangeError);
});

Deno.test("fields: native /v1/generate: processing fields and logprobs, JSON and stream", async () => {
  const j = await ok(app, "/v1/generate", { prompt: PROMPT, max_tokens: 8, temperature: 0, logprobs: 2 });
  assert.equal(j.logprobs.length, j.tokens.length);
  j.logprobs.forEach((e: Json, i: number) => {
    assert.equal(e.id, j.tokens[i]);
    assert.equal(e.token, tok.decode([e.id]));
    assert.equal(e.top_logprobs.length, 2);
    assert.equal(e.top_logprobs[0].id, e.id, "greedy = the most likely");
    assert.equal(e.top_logprobs[0].logprob, e.logprob);
  });
  const ev = await events(app, "/v1/generate", {
    prompt: PROMPT,
    max_tokens: 8,
    temperature: 0,
    logprobs: 2,
    stream: true,
  });
  assert.deepEqual(ev.slice(0, -1).map((e) => e.logprobs), j.logprobs);
  assert.ok(!("logprobs" in (await ok(app, "/v1/generate", { prompt: PROMPT, max_tokens: 2 }))));
  // The completions route's logprobs are the same numbers.
  const c = await ok(app, "/v1/completions", { prompt: PROMPT, max_tokens: 8, temperature: 0, logprobs: 2 });
  assert.deepEqual(c.choices[0].logprobs.token_logprobs, j.logprobs.map((e: Json) => e.logprob));
});

/** A small schema the tiny models can fill within a few dozen tokens. */
const SCHEMA = {
  type: "object",
  properties: { answer: { type: "string", enum: ["yes", "no"] }, n: { type: "integer" } },
  required: ["answer", "n"],
  additionalProperties: false,
};

/** `v` matches SCHEMA (checked by hand: the test must not trust the grammar it checks). */
function matchesSchema(v: Json): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v) &&
    Object.keys(v).sort().join() === "answer,n" && ["yes", "no"].includes(v.answer) && Number.isInteger(v.n);
}

Deno.test("fields: response_format json_object and json_schema: the output parses and matches, under ar and every speculative method", async () => {
  const a = specApp();
  const obj = await ok(a, "/v1/completions", {
    prompt: PROMPT,
    max_tokens: 60,
    temperature: 0,
    response_format: { type: "json_object" },
  });
  assert.equal(obj.choices[0].finish_reason, "stop");
  const parsed = JSON.parse(obj.choices[0].text);
  assert.ok(typeof parsed === "object" && parsed !== null && !Array.isArray(parsed), obj.choices[0].text);
  const rf = { type: "json_schema", json_schema: { name: "answer", schema: SCHEMA, strict: true } };
  const texts: string[] = [];
  for (const method of ["ar", "chain", "specexec", "sequoia"]) {
    const r = await ok(a, "/v1/completions", {
      prompt: PROMPT,
      max_tokens: 60,
      temperature: 0,
      method,
      response_format: rf,
    });
    assert.equal(r.choices[0].finish_reason, "stop", `${method}: ${r.choices[0].text}`);
    assert.ok(matchesSchema(JSON.parse(r.choices[0].text)), `${method}: ${r.choices[0].text}`);
    texts.push(r.choices[0].text);
  }
  assert.equal(new Set(texts).size, 1, "greedy under a grammar is the same for every method");
  // Sampled, chat, stream: still valid JSON of the schema.
  const chat = await ok(a, "/v1/chat/completions", {
    messages: MSG,
    max_tokens: 60,
    temperature: 0.8,
    seed: 3,
    method: "specinfer",
    response_format: rf,
  });
  assert.ok(matchesSchema(JSON.parse(chat.choices[0].message.content)), chat.choices[0].message.content);
  const ev = await events(a, "/v1/chat/completions", {
    messages: MSG,
    max_tokens: 60,
    temperature: 0,
    response_format: rf,
    stream: true,
  });
  assert.ok(matchesSchema(JSON.parse(ev.map((e) => e.choices[0]?.delta.content ?? "").join(""))));
  // A schema outside the supported subset is a 400 naming the keyword, before the request queues.
  const e = await refused(
    a,
    "/v1/completions",
    {
      prompt: PROMPT,
      response_format: {
        type: "json_schema",
        json_schema: { name: "x", schema: { type: "string", pattern: "a+" } },
      },
    },
    "response_format.json_schema.schema",
    "pattern",
  );
  assert.equal(e.code, null);
});
