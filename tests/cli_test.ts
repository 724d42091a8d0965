/** The CLI as a user runs it: real subprocesses of src/main.ts. */
import { backendFlags } from "../src/cli/backend_flags.ts";
import assert from "node:assert/strict";
import { freshCacheDir, spawnServe } from "./fixtures/server_process.ts";

const MAIN = new URL("../src/main.ts", import.meta.url).pathname;
const DRAFT = new URL("../weights/tiny/draft", import.meta.url).pathname;

/** Run src/main.ts with `args` in this process's environment. */
async function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return await runIn({ ...Deno.env.toObject() }, ...args);
}

/**
 * Run src/main.ts with `args` in exactly `env`, plus a fresh SPECDEC_CACHE_DIR (so nothing it caches
 * lands beside the bundled draft).
 */
async function runIn(
  env: Record<string, string>,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cache = freshCacheDir();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, ...args],
      env: { ...env, SPECDEC_CACHE_DIR: cache },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const d = new TextDecoder();
    return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
}

Deno.test("cli: generate --json prints {text, tokens, stats}", async () => {
  const r = await run(
    "generate",
    "--model",
    DRAFT,
    "--prompt",
    "And God said",
    "--max-tokens",
    "12",
    "--temperature",
    "0",
    "--json",
    "--backend",
    "gpu",
  );
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.tokens.length, 12);
  assert.equal(typeof j.text, "string");
  assert.equal(j.stats.completion_tokens, 12);
  assert.equal(j.stats.backend, "gpu");
  assert.equal(j.stats.method, "ar");
  assert.ok(
    j.stats.syncs >= 1 && j.stats.syncs <= 3,
    `syncs ${j.stats.syncs}: prefill + 11 tokens at 8 per submission`,
  );
});

Deno.test("cli: generate streams the prompt and its continuation as text", async () => {
  const r = await run(
    "generate",
    "--model",
    DRAFT,
    "--prompt",
    "The LORD",
    "--max-tokens",
    "8",
    "--seed",
    "3",
  );
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.startsWith("The LORD"));
  assert.ok(r.stdout.length > "The LORD".length + 8);
  assert.match(r.stderr, /8 tokens/);
});

Deno.test("cli: usage errors exit 2 and name the option; a bad model folder exits 1 naming the file", async () => {
  let r = await run("generate", "--model", DRAFT, "--prompt", "x", "--top-p", "2");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--top-p: /);
  r = await run("generate", "--model", DRAFT);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--prompt is required/);
  r = await run("generate", "--prompt", "x", "--backend", "tpu");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--backend/);
  r = await run("generate", "--prompt", "x", "--model", "/nonexistent/model");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /\/nonexistent\/model\/config\.json/);
  r = await run("frobnicate");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Unknown command "frobnicate"/);
});

Deno.test("cli: without XDG_RUNTIME_DIR, a start prints no loader warning about it", async () => {
  const env = Deno.env.toObject();
  delete env.XDG_RUNTIME_DIR;
  const r = await runIn(
    env,
    "generate",
    "--model",
    DRAFT,
    "--prompt",
    "x",
    "--max-tokens",
    "1",
    "--method",
    "ar",
    "--backend",
    "gpu",
  );
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /XDG_RUNTIME_DIR/);
  assert.match(r.stderr, /1 tokens/, "it did generate on the adapter");
});

Deno.test("cli: serve listens on a free port and answers", async () => {
  // AR only: this test needs no profile or acceptance vector.
  const server = await spawnServe(["--model", DRAFT, "--draft", "none"]);
  let code: number | undefined;
  try {
    const res = await fetch(`${server.url}/v1/generate`, {
      method: "POST",
      body: JSON.stringify({ prompt: "Jesus wept", max_tokens: 5, temperature: 0 }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).tokens.length, 5);
  } finally {
    code = await server.stop();
  }
  assert.equal(code, 0, "SIGTERM shuts down cleanly");
});

/** The tiny target's own greedy loop: lookup copies from it (see tests/lookup_test.ts). */
const LOOPING =
  "And the LORD said unto Moses, Behold, I will not be a burnt offering, nor a burnt offering, " +
  "and the burnt offering, and the burnt offering,";

Deno.test("cli: generate --method lookup loads no draft and prints AR's tokens", async () => {
  const args = ["generate", "--prompt", LOOPING, "--max-tokens", "24", "--temperature", "0", "--json"];
  const ar = await run(...args);
  const lk = await run(...args, "--method", "lookup", "--draft", "/nonexistent");
  assert.equal(lk.code, 0, lk.stderr);
  const a = JSON.parse(ar.stdout), l = JSON.parse(lk.stdout);
  assert.deepEqual(l.tokens, a.tokens);
  assert.equal(l.stats.method, "lookup");
  assert.equal(l.stats.draft, undefined, "no draft loaded (a bad --draft is never opened)");
  assert.equal(l.stats.draft_forwards, 0);
  assert.ok(l.stats.tokens_per_step > 1, `${l.stats.tokens_per_step} tokens/step`);
});

Deno.test("cli: serve --method lookup --draft none serves lookup by default", async () => {
  const server = await spawnServe(["--method", "lookup", "--draft", "none"]);
  let code: number | undefined;
  try {
    const res = await fetch(`${server.url}/v1/generate`, {
      method: "POST",
      body: JSON.stringify({ prompt: LOOPING, max_tokens: 16, temperature: 0 }),
      headers: { "content-type": "application/json" },
    });
    const j = await res.json();
    assert.equal(res.status, 200, JSON.stringify(j));
    assert.equal(j.method, "lookup");
    assert.ok(j.stats.tokensPerStep > 1);
    const st = await (await fetch(`${server.url}/v1/status`)).json();
    assert.deepEqual(st.methods, ["ar", "lookup"]);
    assert.equal(st.default_method, "lookup");
  } finally {
    code = await server.stop();
  }
  assert.equal(code, 0);
});

Deno.test("cli: --kv-dtype takes f32 or f16, and f16 only with --backend gpu", () => {
  assert.equal(backendFlags({ backend: "gpu", "kv-dtype": "f16" }).kvDtype, "f16");
  assert.equal(backendFlags({ backend: "wasm" }).kvDtype, "f32");
  assert.throws(() => backendFlags({ backend: "gpu", "kv-dtype": "bf16" }), /--kv-dtype must be f32 or f16/);
  assert.throws(
    () => backendFlags({ backend: "wasm", "kv-dtype": "f16" }),
    /--kv-dtype f16 needs --backend gpu/,
  );
  assert.throws(
    () => backendFlags({ backend: "auto", "kv-dtype": "f16" }),
    /--kv-dtype f16 needs --backend gpu/,
  );
});

Deno.test("cli: --weights-dtype takes auto, f16, q8_0 or q4_0 on every backend", () => {
  assert.equal(backendFlags({}).weightsDtype, "auto");
  for (const w of ["f16", "q8_0", "q4_0"]) {
    for (const backend of ["gpu", "wasm", "cpu", "auto"]) {
      assert.equal(backendFlags({ backend, "weights-dtype": w }).weightsDtype, w);
    }
  }
  assert.throws(
    () => backendFlags({ "weights-dtype": "q5_k" }),
    /--weights-dtype must be one of auto, f16, q8_0, q4_0, got "q5_k"/,
  );
});
