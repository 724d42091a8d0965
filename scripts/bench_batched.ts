/**
 * Batched streams against one-at-a-time, same run, same machine: the real server (`serve`) started twice
 * per model, with `--max-batch 1` and `--max-batch N`, each under the load benchmark (src/bench/load.ts:
 * streaming completions, `max_tokens` per request, greedy unless --temperature):
 *
 *   - alone: 1 client on the `--max-batch 1` server (a stream's own inter-token latency);
 *   - one at a time: N clients on the `--max-batch 1` server (they queue: the aggregate of serial decoding);
 *   - batched: N clients on the `--max-batch N` server.
 *
 * Prints a Markdown table per model and writes the JSON with every report to --json.
 *
 *   deno run -A scripts/bench_batched.ts [--streams 8] [--requests 24] [--max-tokens 32] [--method ar]
 *     [--temperature 0] [--threads 2] [--pair tiny|smollm2|both] [--json bench/out/batched.json]
 *
 * Run from the repository root. The servers use the default cache dir, so committed or cached profiles
 * are used (no measurement at startup for the bundled pairs on a known machine class).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type LoadReport, runLoad } from "../src/bench/load.ts";

const PAIRS = {
  tiny: { model: "weights/tiny/target", draft: "weights/tiny/draft", prompts: "bench/prompts.json" },
  smollm2: {
    model: "weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    draft: "weights/smollm2-draft",
    prompts: "bench/prompts_smollm2_plain.json",
  },
} as const;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    streams: { type: "string", default: "8" },
    requests: { type: "string", default: "24" },
    "max-tokens": { type: "string", default: "32" },
    method: { type: "string", default: "ar" },
    temperature: { type: "string", default: "0" },
    threads: { type: "string", default: "2" },
    pair: { type: "string", default: "both" },
    json: { type: "string", default: "bench/out/batched.json" },
  },
});
const streams = Number(values.streams), requests = Number(values.requests);
const maxTokens = Number(values["max-tokens"]), temperature = Number(values.temperature);

/** A started server: its URL and how to stop it. */
async function serve(pair: typeof PAIRS[keyof typeof PAIRS], maxBatch: number) {
  const args = [
    "run",
    "-A",
    "src/main.ts",
    "serve",
    "--port",
    "0",
    "--backend",
    "wasm",
    "--threads",
    values.threads,
    "--model",
    pair.model,
    "--draft",
    values.method === "ar" || values.method === "lookup" ? "none" : pair.draft,
    "--method",
    values.method,
    "--max-batch",
    String(maxBatch),
    "--queue-depth",
    String(Math.max(64, requests)),
  ];
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "piped" }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "", url: string | undefined;
  while (!url) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server did not start:\n${log}`);
    log += value;
    url = log.match(/listening on (http:\/\/\S+)/)?.[1];
  }
  (async () => {
    for (;;) if ((await reader.read().catch(() => ({ done: true }))).done) break;
  })();
  return {
    url,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

async function prompts(file: string): Promise<string[]> {
  const j = JSON.parse(await Deno.readTextFile(file)) as { prompts: (string | { text: string })[] };
  return j.prompts.map((p) => typeof p === "string" ? p : p.text);
}

const out: Record<string, Record<string, Omit<LoadReport, "records">>> = {};
const names = values.pair === "both" ? ["tiny", "smollm2"] as const : [values.pair as keyof typeof PAIRS];
for (const name of names) {
  const pair = PAIRS[name];
  const ps = await prompts(pair.prompts);
  const load = async (url: string, concurrency: number, n: number) => {
    // One warm-up request first (JIT, caches), not counted.
    await runLoad({ url, concurrency: 1, requests: 1, maxTokens: 4, prompts: ps, temperature });
    const { records: _, ...r } = await runLoad({
      url,
      concurrency,
      requests: n,
      maxTokens,
      prompts: ps,
      temperature,
    });
    return r;
  };
  const rows: Record<string, Omit<LoadReport, "records">> = {};
  const serial = await serve(pair, 1);
  try {
    rows.alone = await load(serial.url, 1, Math.max(4, Math.ceil(requests / streams)));
    rows.oneAtATime = await load(serial.url, streams, requests);
  } finally {
    await serial.stop();
  }
  const batched = await serve(pair, streams);
  let perForward = "";
  try {
    rows.batched = await load(batched.url, streams, requests);
    // What the target's forwards held (the server's histograms: sum / count).
    const m = await (await fetch(`${batched.url}/metrics`)).text();
    const mean = (name: string) => {
      const v = (k: string) => Number(m.match(new RegExp(`^${name}_${k} (\\S+)$`, "m"))?.[1]);
      return v("sum") / v("count");
    };
    perForward = `; per target forward: ${mean("specdec_batch_streams").toFixed(2)} streams, ${
      mean("specdec_batch_tokens").toFixed(1)
    } tokens`;
  } finally {
    await batched.stop();
  }
  out[name] = rows;
  const f = (x: number) => x.toFixed(1);
  console.log(
    `\n### ${name}: ${pair.model} (--method ${values.method}, T = ${temperature}, ${maxTokens} tokens)\n`,
  );
  console.log(
    "| run | clients | --max-batch | served | tok/s (all clients) | ITL p50 ms | ITL p95 ms | latency p95 ms |",
  );
  console.log(
    "| --- | ------: | ----------: | -----: | ------------------: | ---------: | ---------: | -------------: |",
  );
  for (
    const [label, r, mb] of [["alone", rows.alone, 1], ["one at a time", rows.oneAtATime, 1], [
      "batched",
      rows.batched,
      streams,
    ]] as const
  ) {
    console.log(
      `| ${label} | ${r.concurrency} | ${mb} | ${r.ok}/${r.requests} | ${f(r.tokensPerS)} | ${
        f(r.interTokenMs.p50)
      } | ${f(r.interTokenMs.p95)} | ${f(r.latencyMs.p95)} |`,
    );
  }
  console.log(
    `\naggregate batched / one at a time: ${
      (rows.batched.tokensPerS / rows.oneAtATime.tokensPerS).toFixed(2)
    }x; ` +
      `ITL p95 batched / alone: ${
        (rows.batched.interTokenMs.p95 / rows.alone.interTokenMs.p95).toFixed(2)
      }x` +
      perForward,
  );
}
await Deno.mkdir("bench/out", { recursive: true });
await Deno.writeTextFile(values.json, JSON.stringify({ settings: values, results: out }, null, 1));
