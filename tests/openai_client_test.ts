/**
 * Every request field of issue 19 through the official `openai` npm client against a real server
 * process (`serve --backend cpu`: the bundled tiny target and draft on the CPU reference, models in the
 * engine worker), over sockets: fields SDKs send at neutral values, refusals as typed errors naming the
 * field, penalties, logit_bias, min_p, logprobs (chat and completions, JSON and streams), echo, n,
 * best_of, prompt lists, response_format json_object / json_schema, llama.cpp's `timings`, and vLLM's
 * speculative-decoding counters in /metrics.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { spawnServe } from "./fixtures/server_process.ts";

const KEY = "client-key";
const PROMPT = "And God said";
const MESSAGES = [{ role: "user" as const, content: "Who made the light?" }];

// deno-lint-ignore no-explicit-any
type Json = any;

/** The request body as given: extension fields (method, min_p, ...) the client's types do not list. */
// deno-lint-ignore no-explicit-any
const raw = <T>(body: Record<string, unknown>): T => body as any;

/** A 400 from the client, naming `param`. */
async function badRequest(p: Promise<unknown>, param: string, needle?: string | RegExp) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal(e.param, param, e.message);
    if (needle) assert.match(e.message, typeof needle === "string" ? new RegExp(needle) : needle);
    return true;
  });
}

/** A small schema the tiny models fill within a few dozen tokens. */
const SCHEMA = {
  type: "object",
  properties: { answer: { type: "string", enum: ["yes", "no"] }, n: { type: "integer" } },
  required: ["answer", "n"],
  additionalProperties: false,
};

Deno.test("client: the openai client exercises every request field against a real server", async (t) => {
  const s = await spawnServe(["--backend", "cpu", "--api-key", KEY]);
  const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: KEY, maxRetries: 0 });
  const metrics = async () =>
    await (await fetch(`${s.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text();
  try {
    const model = (await client.models.list()).data[0].id;
    const greedy = { model, max_tokens: 16, temperature: 0 };
    const chatBase = await client.chat.completions.create({ ...greedy, messages: MESSAGES });
    const cmplBase = await client.completions.create({ ...greedy, prompt: PROMPT });

    await t.step("neutral fields are accepted and change nothing", async () => {
      const chat = await client.chat.completions.create({
        ...greedy,
        messages: MESSAGES,
        store: false,
        metadata: { suite: "client" },
        service_tier: "auto",
        parallel_tool_calls: false,
        response_format: { type: "text" },
        logit_bias: {},
        user: "tester",
        safety_identifier: "s",
        prompt_cache_key: "k",
        prompt_cache_retention: "in_memory",
        tools: [],
        tool_choice: "none",
        modalities: ["text"],
        presence_penalty: 0,
        frequency_penalty: 0,
        n: 1,
      });
      assert.equal(chat.choices[0].message.content, chatBase.choices[0].message.content);
      const cmpl = await client.completions.create({
        ...greedy,
        prompt: PROMPT,
        user: "tester",
        logit_bias: {},
        best_of: 1,
        echo: false,
        n: 1,
      });
      assert.equal(cmpl.choices[0].text, cmplBase.choices[0].text);
      let text = "", usage: unknown;
      for await (
        const chunk of await client.chat.completions.create({
          ...greedy,
          messages: MESSAGES,
          stream: true,
          stream_options: { include_usage: true },
          store: false,
        })
      ) {
        text += chunk.choices[0]?.delta.content ?? "";
        usage = chunk.usage ?? usage;
      }
      assert.equal(text, chatBase.choices[0].message.content);
      assert.deepEqual(usage, chatBase.usage);
    });

    await t.step("refusals are typed errors naming the field", async () => {
      const m = { ...greedy, messages: MESSAGES };
      await badRequest(
        client.chat.completions.create({
          ...m,
          tools: [{ type: "function", function: { name: "f", parameters: {} } }],
        }),
        "tools",
        "tool calling",
      );
      await badRequest(
        client.chat.completions.create({ ...m, audio: { voice: "alloy", format: "wav" } }),
        "audio",
      );
      await badRequest(client.chat.completions.create({ ...m, modalities: ["text", "audio"] }), "modalities");
      await badRequest(
        client.chat.completions.create({ ...m, prediction: { type: "content", content: "x" } }),
        "prediction",
      );
      await badRequest(client.chat.completions.create({ ...m, store: true }), "store");
      await badRequest(client.chat.completions.create({ ...m, service_tier: "flex" }), "service_tier");
      await badRequest(
        client.chat.completions.create({ ...m, stream_options: { include_usage: true } }),
        "stream_options",
      );
      await badRequest(client.chat.completions.create({ ...m, top_logprobs: 2 }), "top_logprobs");
      await badRequest(
        client.chat.completions.create({ ...m, logit_bias: { "999999": 5 } }),
        "logit_bias.999999",
      );
      await badRequest(
        client.completions.create({ ...greedy, prompt: PROMPT, best_of: 2, stream: true }),
        "best_of",
      );
      await badRequest(
        client.completions.create(raw({ ...greedy, prompt: PROMPT, method: "ar", tree_size: 8 })),
        "tree_size",
      );
      // The prompt alone too long: the prompt is named, with context_length_exceeded.
      await assert.rejects(
        client.completions.create({ ...greedy, prompt: Array(4096).fill(5) }),
        (e) =>
          e instanceof OpenAI.BadRequestError && e.param === "prompt" && e.code === "context_length_exceeded",
      );
      await assert.rejects(
        client.chat.completions.create({
          ...greedy,
          messages: [{ role: "user", content: "and the ".repeat(1000) }],
        }),
        (e) =>
          e instanceof OpenAI.BadRequestError && e.param === "messages" &&
          e.code === "context_length_exceeded",
      );
    });

    await t.step("penalties, repetition_penalty, logit_bias and min_p are honoured", async () => {
      const long = { model, prompt: PROMPT, max_tokens: 40, temperature: 0 };
      const base = (await client.completions.create(long)).choices[0].text;
      for (const pen of [{ presence_penalty: 2 }, { frequency_penalty: 2 }, { repetition_penalty: 1.8 }]) {
        const out = (await client.completions.create(raw({ ...long, ...pen }))).choices[0].text;
        assert.notEqual(out, base, JSON.stringify(pen));
      }
      // Ban the greedy first token; then force one everywhere.
      const first = await client.completions.create({ ...long, max_tokens: 1, logprobs: 0 });
      const firstToken = first.choices[0].logprobs!.tokens![0];
      const tokenize = async (content: string): Promise<number[]> => {
        // The native route returns ids: ask it for the id of the greedy first token's text.
        const r = await fetch(`${s.url}/v1/generate`, {
          method: "POST",
          headers: { authorization: `Bearer ${KEY}` },
          body: JSON.stringify({ prompt: PROMPT, max_tokens: 1, temperature: 0 }),
        });
        const j = await r.json();
        assert.equal(j.text, content);
        return j.tokens;
      };
      const [id] = await tokenize(firstToken);
      const banned = await client.completions.create({
        ...long,
        max_tokens: 1,
        logprobs: 0,
        logit_bias: { [id]: -100 },
      });
      assert.notEqual(banned.choices[0].logprobs!.tokens![0], firstToken);
      const forced = await client.chat.completions.create({
        ...greedy,
        messages: MESSAGES,
        max_tokens: 5,
        temperature: 1,
        logit_bias: { [id]: 100 },
      });
      assert.equal(forced.choices[0].message.content, firstToken.repeat(5));
      // min_p 0.5 at temperature 1: every token at least half as likely as the most likely one.
      const mp = await client.chat.completions.create(raw({
        ...greedy,
        messages: MESSAGES,
        max_tokens: 24,
        temperature: 1,
        seed: 7,
        min_p: 0.5,
        logprobs: true,
        top_logprobs: 1,
      }));
      for (const e of (mp as Json).choices[0].logprobs.content) {
        assert.ok(e.logprob - e.top_logprobs[0].logprob >= Math.log(0.5) - 1e-6);
      }
    });

    await t.step("logprobs: chat and completions formats, JSON and streams, echo", async () => {
      const chat = await client.chat.completions.create({
        ...greedy,
        messages: MESSAGES,
        logprobs: true,
        top_logprobs: 3,
      });
      const content = chat.choices[0].logprobs!.content!;
      assert.equal(content.length, chat.usage!.completion_tokens);
      for (const e of content) {
        assert.equal(e.top_logprobs.length, 3);
        assert.equal(e.top_logprobs[0].logprob, e.logprob, "greedy = the most likely");
        assert.deepEqual(e.bytes, [...new TextEncoder().encode(e.token)]);
      }
      const streamed: unknown[] = [];
      for await (
        const chunk of await client.chat.completions.create({
          ...greedy,
          messages: MESSAGES,
          logprobs: true,
          top_logprobs: 3,
          stream: true,
        })
      ) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
      assert.deepEqual(streamed, content);

      const c = await client.completions.create({ ...greedy, prompt: PROMPT, logprobs: 2, echo: true });
      const lp = c.choices[0].logprobs!;
      assert.ok(c.choices[0].text.startsWith(PROMPT));
      assert.equal(c.choices[0].text, PROMPT + cmplBase.choices[0].text);
      assert.equal(lp.token_logprobs![0], null);
      assert.equal(lp.top_logprobs![0], null);
      assert.equal(lp.tokens!.length, c.usage!.prompt_tokens + c.usage!.completion_tokens);
      const tail = lp.tokens!.length - c.usage!.completion_tokens;
      for (let i = tail; i < lp.tokens!.length; i++) {
        assert.equal(lp.token_logprobs![i], Math.max(...Object.values(lp.top_logprobs![i]!)));
      }
      let text = "";
      const offsets: number[] = [];
      for await (
        const chunk of await client.completions.create({
          ...greedy,
          prompt: PROMPT,
          logprobs: 2,
          echo: true,
          stream: true,
        })
      ) {
        text += chunk.choices[0]?.text ?? "";
        offsets.push(...(chunk.choices[0]?.logprobs?.text_offset ?? []));
      }
      assert.equal(text, c.choices[0].text);
      assert.deepEqual(offsets, lp.text_offset);
      // max_tokens 0 with echo: the prompt scored.
      const scored = await client.completions.create({
        model,
        prompt: PROMPT,
        max_tokens: 0,
        echo: true,
        logprobs: 0,
      });
      assert.equal(scored.choices[0].text, PROMPT);
      assert.deepEqual(scored.choices[0].logprobs!.token_logprobs, lp.token_logprobs!.slice(0, tail));
    });

    await t.step("n, best_of and prompt lists", async () => {
      const sampled = { model, max_tokens: 8, temperature: 1, seed: 5 };
      const chat = await client.chat.completions.create({ ...sampled, messages: MESSAGES, n: 3 });
      assert.deepEqual(chat.choices.map((c) => c.index), [0, 1, 2]);
      for (let j = 0; j < 3; j++) {
        const alone = await client.chat.completions.create({ ...sampled, messages: MESSAGES, seed: 5 + j });
        assert.equal(chat.choices[j].message.content, alone.choices[0].message.content);
      }
      const list = await client.completions.create({
        ...sampled,
        prompt: [PROMPT, "In the beginning"],
        n: 2,
      });
      assert.deepEqual(list.choices.map((c) => c.index), [0, 1, 2, 3]);
      const second = await client.completions.create({ ...sampled, prompt: "In the beginning", seed: 6 });
      assert.equal(list.choices[3].text, second.choices[0].text);
      const best = await client.completions.create({ ...sampled, prompt: PROMPT, best_of: 3, n: 1 });
      assert.equal(best.choices.length, 1);
      assert.equal(best.usage!.completion_tokens, 24);
      const texts = new Map<number, string>();
      for await (
        const chunk of await client.chat.completions.create({
          ...sampled,
          messages: MESSAGES,
          n: 3,
          stream: true,
        })
      ) {
        for (const ch of chunk.choices) {
          texts.set(ch.index, (texts.get(ch.index) ?? "") + (ch.delta.content ?? ""));
        }
      }
      assert.deepEqual([...texts.keys()].sort(), [0, 1, 2]);
      for (let j = 0; j < 3; j++) assert.equal(texts.get(j), chat.choices[j].message.content);
    });

    await t.step("timings on responses and the last chunk; vLLM's counters after speculation", async () => {
      const ar = (await client.completions.create({ ...greedy, prompt: PROMPT })) as Json;
      assert.equal(ar.timings.predicted_n, ar.usage.completion_tokens);
      assert.equal(ar.timings.prompt_n, ar.usage.prompt_tokens);
      assert.ok(!("draft_n" in ar.timings));
      const before = await metrics();
      const spec =
        (await client.completions.create(raw({ ...greedy, prompt: PROMPT, method: "chain" }))) as Json;
      assert.equal(spec.choices[0].text, ar.choices[0].text, "chain = ar at temperature 0");
      assert.ok(spec.timings.draft_n > 0 && spec.timings.draft_n_accepted <= spec.timings.draft_n);
      const after = await metrics();
      const value = (m: string, name: string) =>
        Number(m.match(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m"))?.[1] ?? 0);
      assert.equal(
        value(after, "vllm:spec_decode_num_draft_tokens_total") -
          value(before, "vllm:spec_decode_num_draft_tokens_total"),
        spec.timings.draft_n,
      );
      assert.equal(
        value(after, "vllm:spec_decode_num_accepted_tokens_total") -
          value(before, "vllm:spec_decode_num_accepted_tokens_total"),
        spec.timings.draft_n_accepted,
      );
      assert.ok(
        value(after, "vllm:spec_decode_num_drafts_total") >
          value(before, "vllm:spec_decode_num_drafts_total"),
      );
      assert.match(
        after,
        /^vllm:spec_decode_num_accepted_tokens_per_pos_total\{model_name="target",engine="0",position="0"\} \d+$/m,
      );
      let last: Json;
      for await (
        const chunk of await client.chat.completions.create(
          raw<OpenAI.Chat.ChatCompletionCreateParamsStreaming>({
            ...greedy,
            messages: MESSAGES,
            stream: true,
            method: "specexec",
          }),
        )
      ) {
        last = chunk;
      }
      assert.equal(last.choices[0].finish_reason, "length");
      assert.equal(last.timings.predicted_n, 16);
      assert.ok(last.timings.draft_n > 0);
    });

    await t.step(
      "response_format json_object and json_schema: the output parses and matches the schema",
      async () => {
        const obj = await client.chat.completions.create({
          ...greedy,
          messages: MESSAGES,
          max_tokens: 60,
          response_format: { type: "json_object" },
        });
        const o = JSON.parse(obj.choices[0].message.content!);
        assert.ok(typeof o === "object" && o !== null && !Array.isArray(o));
        for (const method of ["ar", "sequoia", "specexec"]) {
          const r = await client.chat.completions.create(raw({
            ...greedy,
            messages: MESSAGES,
            max_tokens: 60,
            method,
            response_format: {
              type: "json_schema",
              json_schema: { name: "answer", schema: SCHEMA, strict: true },
            },
          }));
          const v = JSON.parse((r as Json).choices[0].message.content);
          assert.deepEqual(Object.keys(v).sort(), ["answer", "n"], method);
          assert.ok(["yes", "no"].includes(v.answer) && Number.isInteger(v.n), JSON.stringify(v));
        }
        await badRequest(
          client.chat.completions.create({
            ...greedy,
            messages: MESSAGES,
            response_format: {
              type: "json_schema",
              json_schema: { name: "x", schema: { type: "string", pattern: "a" } },
            },
          }),
          "response_format.json_schema.schema",
          "pattern",
        );
      },
    );

    await t.step("endpoints: models.retrieve, /tokenize and /detokenize through the client", async () => {
      const models = await client.models.list();
      const id = models.data[0].id;
      const m = await client.models.retrieve(id);
      assert.equal(m.id, id);
      await assert.rejects(client.models.retrieve("gpt-4"), (e) => e instanceof OpenAI.NotFoundError);
      // llama.cpp's routes sit at the server root, beside /v1: a client whose baseURL is the root.
      const root = new OpenAI({ baseURL: s.url, apiKey: KEY, maxRetries: 0 });
      const text = "And God said, Let there be light";
      const tok = await root.post<{ tokens: number[] }>("/tokenize", { body: { content: text } });
      assert.ok(tok.tokens.length > 3 && tok.tokens.every(Number.isInteger));
      const back = await root.post<{ content: string }>("/detokenize", { body: { tokens: tok.tokens } });
      assert.equal(back.content, text);
      const pieces = await root.post<{ tokens: { id: number; piece: string | number[] }[] }>("/tokenize", {
        body: { content: text, with_pieces: true },
      });
      assert.deepEqual(pieces.tokens.map((p) => p.id), tok.tokens);
      assert.equal(pieces.tokens.map((p) => p.piece).join(""), text);
      await assert.rejects(
        root.post("/detokenize", { body: { tokens: [1, -5] } }),
        (e) => e instanceof OpenAI.BadRequestError && /tokens\[1\]/.test(e.message),
      );
      const anon = new OpenAI({ baseURL: s.url, apiKey: "wrong", maxRetries: 0 });
      await assert.rejects(
        anon.post("/tokenize", { body: { content: "x" } }),
        (e) => e instanceof OpenAI.AuthenticationError,
      );
    });
  } finally {
    await s.stop();
  }
});
