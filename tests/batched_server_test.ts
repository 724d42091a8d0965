/**
 * End to end with batched streams: the real server (`serve --max-batch 4`, the bundled tiny pair on the
 * wasm backend) under 64 concurrent clients of mixed methods, temperatures and seeds. Every client is
 * either served the exact answer it gets alone, or refused with 429 (none mixed up, none lost); the
 * batches held several streams (/metrics); a request longer than a stream's KV capacity (--kv-budget)
 * gets 400 naming the limit.
 */
import assert from "node:assert/strict";
import { spawnServe } from "./fixtures/server_process.ts";
import { draftFolder, targetFolder } from "./fixtures/exact.ts";
import { kvSlotBytes } from "../src/runtime/stream_capacity.ts";

const STREAMS = 4;
const QUEUE = 12;
/** KV slots per stream the budget below leaves. */
const CAPACITY = 200;

interface Ask {
  prompt: string;
  max_tokens: number;
  temperature: number;
  seed: number;
  method: string;
}

const METHODS = ["ar", "sequoia", "specexec", "lookup", "chain", "specinfer"];
const PROMPTS = [
  "Once upon a time",
  "The little cat",
  "In the morning the sun",
  "She looked at the",
  "The big dog ran",
  "One day, a boy named Tim",
  "The bird sang a song about",
  "Lily and her mom went",
];

function ask(i: number): Ask {
  return {
    prompt: PROMPTS[i % PROMPTS.length],
    max_tokens: 8 + (i * 7) % 29,
    temperature: i % 3 === 0 ? 0 : 0.8,
    seed: 100 + i,
    method: METHODS[i % METHODS.length],
  };
}

async function generate(url: string, a: Ask): Promise<{ status: number; tokens?: number[] }> {
  const r = await fetch(`${url}/v1/generate`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(a),
  });
  const body = await r.json();
  return { status: r.status, tokens: r.status === 200 ? body.tokens : undefined };
}

Deno.test("e2e (batched streams): 64 clients of mixed methods, each served its solo answer or 429'd; KV capacity enforced", async () => {
  const slot = kvSlotBytes(targetFolder.config) + kvSlotBytes(draftFolder.config);
  const s = await spawnServe([
    "--backend",
    "wasm",
    "--threads",
    "2",
    "--max-batch",
    String(STREAMS),
    "--kv-budget",
    String((STREAMS * CAPACITY + targetFolder.config.maxPositions) * slot),
    "--queue-depth",
    String(QUEUE),
    "--method",
    "sequoia",
  ]);
  try {
    assert.match(s.log(), new RegExp(`batched streams: ${STREAMS} at once, ${CAPACITY} tokens each`));
    const asks = Array.from({ length: 64 }, (_, i) => ask(i));
    // Alone: one request at a time (each the only stream in its forwards).
    const solo: number[][] = [];
    for (const a of asks) {
      const r = await generate(s.url, a);
      assert.equal(r.status, 200);
      solo.push(r.tokens!);
    }
    // Together: all 64 at once.
    const together = await Promise.all(asks.map((a) => generate(s.url, a)));
    const served = together.filter((r) => r.status === 200).length;
    const refused = together.filter((r) => r.status === 429).length;
    console.log(`  64 clients: ${served} served, ${refused} x 429`);
    assert.equal(served + refused, 64, `statuses: ${together.map((r) => r.status).join(",")}`);
    assert.ok(served >= STREAMS + QUEUE, `${served} served`);
    together.forEach((r, i) => {
      if (r.status === 200) assert.deepEqual(r.tokens, solo[i], `client ${i} (${asks[i].method})`);
    });
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    const count = (le: string) => {
      const line = metrics.split("\n").find((l) => l.startsWith(`specdec_batch_streams_bucket{le="${le}"} `));
      assert.ok(line, `no specdec_batch_streams bucket ${le}`);
      return Number(line.split(" ")[1]);
    };
    assert.ok(count("+Inf") > count("1"), "some target forwards held more than one stream");
    assert.match(metrics, /specdec_inter_token_seconds_count [1-9]/);
    // Longer than a stream holds: refused before it runs, naming the limit.
    const long = await fetch(`${s.url}/v1/generate`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "Once upon a time", max_tokens: CAPACITY }),
    });
    assert.equal(long.status, 400);
    assert.match((await long.json()).error.message, new RegExp(String(CAPACITY)));
  } finally {
    await s.stop();
  }
});
