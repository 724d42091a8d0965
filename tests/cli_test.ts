/** The CLI as a user runs it: real subprocesses of src/main.ts. */
import assert from "node:assert/strict";
import { spawnServer } from "./fixtures/server_process.ts";

const MAIN = new URL("../src/main.ts", import.meta.url).pathname;
const DRAFT = new URL("../weights/tiny/draft", import.meta.url).pathname;

async function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
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
  );
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.tokens.length, 12);
  assert.equal(typeof j.text, "string");
  assert.equal(j.stats.completionTokens, 12);
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

Deno.test("cli: serve listens on a free port and answers", async () => {
  const server = await spawnServer(Deno.execPath(), [
    "run",
    "-A",
    MAIN,
    "serve",
    "--port",
    "0",
    "--model",
    DRAFT,
  ]);
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
