/**
 * The Runtime on the CPU backend (small and fast): opening the bundled pair, its plans per scope and
 * method, decoding, the context check; and `generate` refusing what does not fit, printing snake_case stats.
 */
import assert from "node:assert/strict";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR } from "../src/model/folder.ts";
import { SAMPLING_DEFAULTS } from "../src/model/sampling.ts";
import { Runtime, startupStageCount } from "../src/runtime/runtime.ts";
import { ContextLengthError } from "../src/runtime/context_length.ts";
import { Progress } from "../src/runtime/progress.ts";

const MAIN = new URL("../src/main.ts", import.meta.url).pathname;

/** A private, empty cache directory: the bundled pair's shipped caches are read, nothing is written. */
const cacheDir = () => Deno.makeTempDirSync({ prefix: "runtime_test_" });

async function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { SPECDEC_CACHE_DIR: cacheDir() },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("runtime: opens the pair with numbered stages; plans per scope and method on the CPU", async () => {
  const lines: string[] = [];
  const opts = { model: DEFAULT_TARGET_DIR, draft: DEFAULT_DRAFT_DIR, backend: "cpu" as const };
  const progress = new Progress(startupStageCount(opts), (l) => lines.push(l));
  const rt = await Runtime.open({ ...opts, cacheDir: cacheDir(), stages: progress });
  try {
    assert.equal(rt.target.device, "cpu reference");
    assert.equal(rt.draft?.device, "cpu reference");
    assert.equal(rt.context, rt.target.folder.config.maxPositions);
    // The server's plan: every method a request may ask for; no hardware profile off the GPU -> ar.
    const served = await rt.plan(SAMPLING_DEFAULTS.profile, "auto", { scope: "server" });
    assert.equal(served.method, "ar");
    assert.deepEqual(served.tree, { treeSize: 32, depth: 8 });
    assert.equal(served.acceptance?.length, 16);
    assert.ok(served.adaptive && served.pick === undefined && served.status === undefined);
    assert.deepEqual(lines.map((l) => l.replace(/\(\d+ ms\)$/, "(ms)")), [
      `[1/3] target ${DEFAULT_TARGET_DIR} ...`,
      `[1/3] target ${DEFAULT_TARGET_DIR}: 6 layers, width 256 on cpu reference (ms)`,
      `[2/3] draft ${DEFAULT_DRAFT_DIR} ...`,
      `[2/3] draft ${DEFAULT_DRAFT_DIR}: 2 layers, width 128 on cpu reference (ms)`,
      "[3/3] acceptance vector (T=0.7) ...",
      `[3/3] acceptance vector (T=0.7): p1 = ${served.acceptance![0].toFixed(3)} (ms)`,
    ]);
    // One generation: only what its method needs; explicit tree settings are kept.
    const chain = await rt.plan(SAMPLING_DEFAULTS.cli, "chain", { tree: { depth: 3 } });
    assert.deepEqual(chain, { method: "chain", tree: { depth: 3 } });
    const seq = await rt.plan(SAMPLING_DEFAULTS.profile, "sequoia", { tree: { treeSize: 12 } });
    assert.equal(seq.method, "sequoia");
    assert.deepEqual(seq.tree, { treeSize: 12 });
    assert.equal(seq.adaptive?.n, 12);
    // Decoding through the runtime: greedy AR and greedy Sequoia agree (exact verification).
    const tokens = async (p: Awaited<ReturnType<Runtime["plan"]>>) => {
      const ids: number[] = [];
      const prompt = rt.target.folder.tokenizer.encode("And God said");
      const events = rt.decode(p.method, prompt, {
        tree: p.tree,
        acceptance: p.acceptance,
        adaptive: p.adaptive,
        maxTokens: 8,
        sampling: { temperature: 0, topK: 0, topP: 1 },
        seed: 0,
      });
      for await (const ev of events) if (ev.type === "token") ids.push(ev.id);
      return ids;
    };
    assert.deepEqual(await tokens(seq), await tokens({ method: "ar", tree: {} }));
    // The context check names both numbers and the limit.
    assert.throws(() => rt.checkContext(10, rt.context, "--max-tokens"), (e) => {
      assert.ok(e instanceof ContextLengthError);
      assert.match(e.message, new RegExp(`prompt \\(10 tokens\\) \\+ --max-tokens \\(${rt.context}\\)`));
      assert.match(e.message, new RegExp(`context of ${rt.context} tokens`));
      return true;
    });
    rt.checkContext(10, rt.context - 10);
  } finally {
    rt.close();
    rt.close(); // idempotent
  }
});

Deno.test("runtime: without a draft only ar and lookup are planned (auto: ar)", async () => {
  const rt = await Runtime.open({ model: DEFAULT_DRAFT_DIR, backend: "cpu", cacheDir: cacheDir() });
  try {
    assert.equal(rt.draft, undefined);
    assert.deepEqual(await rt.plan(SAMPLING_DEFAULTS.profile, "auto", { scope: "server" }), {
      method: "ar",
      tree: {},
    });
    await assert.rejects(rt.plan(SAMPLING_DEFAULTS.cli, "sequoia"), /needs a draft model/);
    assert.deepEqual(
      await rt.plan(SAMPLING_DEFAULTS.profile, "lookup", { scope: "server", tree: { treeSize: 8 } }),
      {
        method: "lookup",
        tree: { treeSize: 8 },
      },
    );
  } finally {
    rt.close();
  }
});

Deno.test("cli: generate refuses a prompt + --max-tokens beyond the context (exit 2, both numbers)", async () => {
  const r = await run(
    "generate",
    "--backend",
    "cpu",
    "--model",
    DEFAULT_DRAFT_DIR,
    "--prompt",
    "And God said",
    "--max-tokens",
    "600",
  );
  assert.equal(r.code, 2, r.stderr);
  assert.match(
    r.stderr,
    /prompt \(4 tokens\) \+ --max-tokens \(600\) = 604 exceeds the model's context of 512 tokens/,
  );
  assert.equal(r.stdout, "", "refused before printing the prompt");
});

Deno.test("cli: generate --json stats have one spelling per field (snake_case)", async () => {
  const r = await run(
    "generate",
    "--backend",
    "cpu",
    "--method",
    "chain",
    "--prompt",
    "And God said",
    "--max-tokens",
    "6",
    "--temperature",
    "0",
    "--json",
  );
  assert.equal(r.code, 0, r.stderr);
  const { stats } = JSON.parse(r.stdout);
  assert.equal(stats.completion_tokens, 6);
  assert.ok(stats.tok_per_s > 0 && stats.tokens_per_step >= 1 && stats.target_forwards >= 1);
  assert.equal(stats.method, "chain");
  assert.ok(stats.steps.length >= 1);
  const camel = [...Object.keys(stats), ...stats.steps.flatMap(Object.keys)].filter((k) => /[A-Z]/.test(k));
  assert.deepEqual(camel, []);
});
