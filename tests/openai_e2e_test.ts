/**
 * End to end: the real server (`deno task start`'s code, the bundled tiny target on WebGPU) on a free
 * port, driven over sockets by the official `openai` npm client: chat and completions, streaming and
 * not, auth, 32 concurrent streams against a short queue, a client that disconnects, and SIGTERM drain.
 * It serves with `--draft none` (nothing here needs speculation), so it measures no profile and no
 * acceptance vector, and its default method is AR whatever the adapter.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { type ServerProcess, spawnServe } from "./fixtures/server_process.ts";

const KEY = "e2e-key";
const QUEUE_DEPTH = 12;
/** Long enough that the generation a step holds in flight never finishes before the step acts on it. */
const DRAIN_TIMEOUT_S = 600;

type Server = ServerProcess;

/** Start `serve` on port 0 (target only) and wait for its "listening on" line. */
function startServer(...args: string[]): Promise<Server> {
  return spawnServe(["--draft", "none", ...args]);
}

/**
 * The most tokens a completion of `prompt` may ask for (the context minus the prompt), read from the
 * server's own refusal of a too-large max_tokens. A generation this long is the longest the server
 * allows; greedy from the prompts used here it never samples EOS, so it ends only by length or by
 * being cancelled.
 */
async function room(url: string, prompt: string): Promise<number> {
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: 1_000_000 }),
  });
  const msg: string = (await res.json()).error.message;
  const m = msg.match(/prompt \((\d+) tokens\).*context of (\d+) tokens/);
  assert.ok(m, `unexpected refusal: ${msg}`);
  return Number(m[2]) - Number(m[1]);
}

async function metric(url: string, line: RegExp): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text();
  return Number(text.match(line)?.[1] ?? 0);
}

/** Distinct held-out lines as prompts (never trained on), so each client's continuation is its own. */
async function prompts(n: number): Promise<string[]> {
  const text = await Deno.readTextFile(new URL("../weights/tiny/heldout.txt", import.meta.url));
  const lines = [...new Set(text.split("\n").filter((l) => l.length > 30))];
  return Array.from({ length: n }, (_, i) => lines[i * 7].split(" ").slice(0, 6).join(" "));
}

Deno.test("e2e: the openai client against the real server (chat, completions, streams, 32 clients, disconnect, drain)", async (t) => {
  const s = await startServer(
    "--api-key",
    KEY,
    "--queue-depth",
    String(QUEUE_DEPTH),
    "--drain-timeout",
    String(DRAIN_TIMEOUT_S),
  );
  const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: KEY, maxRetries: 0 });
  let exited = false;
  try {
    const model = (await client.models.list()).data[0].id;
    assert.equal(model, "target");

    await t.step("completions: JSON and stream agree with the native route", async () => {
      const native = await (await fetch(`${s.url}/v1/generate`, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ prompt: "And God said", max_tokens: 10, temperature: 0 }),
      })).json();
      const c = await client.completions.create({
        model,
        prompt: "And God said",
        max_tokens: 10,
        temperature: 0,
      });
      assert.equal(c.choices[0].text, native.text);
      assert.equal(c.usage?.completion_tokens, 10);
      assert.equal(c.choices[0].finish_reason, "length");
      const stream = await client.completions.create({
        model,
        prompt: "And God said",
        max_tokens: 10,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = "", finish: string | null = null, usage: unknown;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.text ?? "";
        finish = chunk.choices[0]?.finish_reason ?? finish;
        usage = chunk.usage ?? usage;
      }
      assert.equal(text, native.text);
      assert.equal(finish, "length");
      assert.deepEqual(usage, c.usage);
    });

    await t.step("chat: the chat template, JSON and stream, stop sequences", async () => {
      const messages = [{ role: "user" as const, content: "Who made the light?" }];
      const c = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
      assert.equal(c.object, "chat.completion");
      assert.equal(c.choices[0].message.role, "assistant");
      assert.ok(c.choices[0].message.content!.length > 0);
      const stream = await client.chat.completions.create({
        model,
        messages,
        max_tokens: 12,
        temperature: 0,
        stream: true,
      });
      let text = "";
      let finish: string | null = null;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? "";
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      assert.equal(text, c.choices[0].message.content);
      assert.equal(finish, c.choices[0].finish_reason);
      const full = c.choices[0].message.content!;
      const stop = full.slice(4, 7);
      const stopped = await client.chat.completions.create({
        model,
        messages,
        max_tokens: 12,
        temperature: 0,
        stop,
      });
      assert.equal(stopped.choices[0].message.content, full.slice(0, full.indexOf(stop)));
      assert.equal(stopped.choices[0].finish_reason, "stop");
    });

    await t.step("errors reach the client as typed errors with the field named", async () => {
      const bad = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "wrong", maxRetries: 0 });
      await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
      await assert.rejects(
        client.completions.create({ model, prompt: "x", max_tokens: 10_000 }),
        (e) => e instanceof OpenAI.BadRequestError && /max_tokens \(10000\)/.test(e.message),
      );
      await assert.rejects(
        client.chat.completions.create({
          model: "../../etc/passwd",
          messages: [{ role: "user", content: "x" }],
        }),
        (e) => e instanceof OpenAI.NotFoundError && /does not exist/.test(e.message),
      );
    });

    await t.step(
      `32 concurrent streams, queue depth ${QUEUE_DEPTH}: each complete and its own, or 429`,
      async () => {
        const ps = await prompts(32);
        const t0 = performance.now();
        const results = await Promise.all(ps.map(async (prompt) => {
          try {
            const stream = await client.completions.create({
              model,
              prompt,
              max_tokens: 6,
              temperature: 0,
              stream: true,
            });
            const ids = new Set<string>();
            let text = "", finish: string | null = null;
            for await (const chunk of stream) {
              ids.add(chunk.id);
              text += chunk.choices[0]?.text ?? "";
              finish = chunk.choices[0]?.finish_reason ?? finish;
            }
            return { prompt, text, finish, ids };
          } catch (e) {
            if (e instanceof OpenAI.RateLimitError) return { prompt, rejected: e.headers.get("retry-after") };
            throw e;
          }
        }));
        const ms = performance.now() - t0;
        const done = results.filter((r) => !("rejected" in r));
        const rejected = results.filter((r) => "rejected" in r);
        console.log(`  32 streams: ${done.length} complete, ${rejected.length} x 429, ${ms.toFixed(0)} ms`);
        assert.equal(done.length + rejected.length, 32);
        // The first QUEUE_DEPTH + 1 arrivals always fit (one running, the rest waiting).
        assert.ok(done.length >= QUEUE_DEPTH + 1, `${done.length} complete`);
        for (const r of rejected) assert.ok(Number(r.rejected) >= 1, "429 carries Retry-After");
        const allIds = new Set<string>();
        for (const r of done) {
          if ("rejected" in r) continue;
          assert.equal(r.ids.size, 1, "every chunk of a stream carries that stream's id");
          allIds.add([...r.ids][0]);
          assert.equal(r.finish, "length");
          // Nothing mixed, nothing lost: the stream is exactly this prompt's own greedy continuation.
          const alone: { choices: { text: string }[] } = await client.completions.create({
            model,
            prompt: r.prompt,
            max_tokens: 6,
            temperature: 0,
          });
          assert.equal(r.text, alone.choices[0].text, `stream of ${JSON.stringify(r.prompt)}`);
        }
        assert.equal(allIds.size, done.length, "stream ids are distinct");
      },
    );

    await t.step("a client that disconnects mid-stream is cancelled and frees the slot", async () => {
      const cancelled = /specdec_generations_total\{method="ar",finish_reason="cancelled"\} (\d+)/;
      const tokens = /specdec_completion_tokens_total\{method="ar"\} (\d+)/;
      const [c0, t0] = [await metric(s.url, cancelled), await metric(s.url, tokens)];
      const prompt = "And the LORD spake unto Moses";
      // The longest generation allowed: it is still running when the client leaves after 3 chunks.
      const most = await room(s.url, prompt);
      const stream = await client.completions.create({
        model,
        prompt,
        max_tokens: most,
        temperature: 0,
        stream: true,
      });
      let chunks = 0;
      for await (const _ of stream) if (++chunks === 3) break; // break aborts the request
      for (let i = 0; i < 200 && await metric(s.url, cancelled) === c0; i++) {
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.equal(await metric(s.url, cancelled), c0 + 1, "the generation ended as cancelled");
      const generated = await metric(s.url, tokens) - t0;
      assert.ok(generated < most, `stopped early: ${generated} of ${most} tokens`);
      const next = await client.completions.create({ model, prompt: "x", max_tokens: 2, temperature: 0 });
      assert.equal(next.usage?.completion_tokens, 2, "the slot was freed");
    });

    await t.step(
      "SIGTERM drains: the stream in flight completes, /ready turns 503, then exit 0",
      async () => {
        // The longest generation allowed (greedy, no EOS): still in flight while /ready is polled below.
        const most = await room(s.url, "In the beginning");
        const res = await fetch(`${s.url}/v1/generate`, {
          method: "POST",
          headers: { authorization: `Bearer ${KEY}` },
          body: JSON.stringify({
            prompt: "In the beginning",
            max_tokens: most,
            temperature: 0,
            stream: true,
          }),
        });
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        let body = (await reader.read()).value ?? "";
        s.child.kill("SIGTERM");
        // While draining the server still answers: not ready, and no new generations.
        let ready = 200;
        for (let i = 0; i < 200 && ready === 200; i++) {
          const r = await fetch(`${s.url}/ready`);
          await r.body?.cancel();
          ready = r.status;
          if (ready === 200) await new Promise((r) => setTimeout(r, 5));
        }
        assert.equal(ready, 503);
        const refused = await fetch(`${s.url}/v1/generate`, {
          method: "POST",
          headers: { authorization: `Bearer ${KEY}` },
          body: JSON.stringify({ prompt: "x", max_tokens: 2 }),
        });
        assert.equal(refused.status, 503);
        assert.match((await refused.json()).error.message, /shutting down/);
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          body += value;
        }
        const events = body.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
        assert.equal(events.at(-1), "[DONE]");
        const last = JSON.parse(events.at(-2)!);
        assert.equal(last.finish_reason, "length");
        assert.equal(last.usage.completion_tokens, most);
        assert.equal((await s.child.status).code, 0);
        exited = true;
        assert.match(s.log(), /shutting down: draining 1 generation/);
      },
    );
  } finally {
    // stop() also removes the server's fresh SPECDEC_CACHE_DIR.
    await s.stop(exited ? "SIGTERM" : "SIGKILL");
  }
});
