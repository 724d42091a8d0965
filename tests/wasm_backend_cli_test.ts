/**
 * The wasm backend on the command line and the server, and `--backend auto`: greedy `generate` on wasm
 * gives the CPU reference's tokens; a server on wasm answers (AR and Sequoia alike) and reports its
 * backend and threads; bad --threads / --backend values exit 2 naming the flag; auto says what it picked
 * with both t(1) figures, caches the decision per thread count, and a second start reuses it; the
 * hardware profile is keyed by backend and threads. Every run has its own SPECDEC_CACHE_DIR (nothing
 * lands beside the bundled models).
 */
import assert from "node:assert/strict";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import type { CausalLM } from "../src/model/causal_lm.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { chooseBackend } from "../src/runtime/backend_choice.ts";
import {
  loadOrMeasureCosts,
  profileKey,
  WasmHost,
  writeProfileSection,
} from "../src/runtime/hardware_profile.ts";
import { freshCacheDir, spawnServe } from "./fixtures/server_process.ts";

const MAIN = new URL("../src/main.ts", import.meta.url).pathname;

/** Run src/main.ts with `args` and SPECDEC_CACHE_DIR = `cacheDir` (default: a fresh one, removed after). */
async function run(
  args: string[],
  cacheDir?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cache = cacheDir ?? freshCacheDir();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, ...args],
      env: { SPECDEC_CACHE_DIR: cache },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const d = new TextDecoder();
    return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
  } finally {
    if (cacheDir === undefined) await Deno.remove(cache, { recursive: true });
  }
}

const GREEDY = ["--prompt", "And God said", "--temperature", "0", "--json"];

Deno.test("wasm cli: generate --backend wasm --threads 2 gives the CPU reference's greedy tokens", async () => {
  const cpu = await run(["generate", ...GREEDY, "--max-tokens", "32", "--backend", "cpu"]);
  const wasm = await run([
    "generate",
    ...GREEDY,
    "--max-tokens",
    "32",
    "--backend",
    "wasm",
    "--threads",
    "2",
  ]);
  assert.equal(cpu.code, 0, cpu.stderr);
  assert.equal(wasm.code, 0, wasm.stderr);
  const c = JSON.parse(cpu.stdout), w = JSON.parse(wasm.stdout);
  assert.equal(w.tokens.length, 32);
  assert.deepEqual(w.tokens, c.tokens);
  assert.equal(w.text, c.text);
  assert.equal(w.stats.backend, "wasm");
  assert.equal(w.stats.threads, 2);
  assert.equal(w.stats.device, "wasm: 2 threads, SIMD128");
  assert.equal(w.stats.syncs, 0, "no device readbacks");
  assert.equal(w.stats.backend_choice, undefined, "a named backend is no auto decision");
  assert.equal(c.stats.backend, "cpu");
  assert.equal(c.stats.threads, undefined);
});

Deno.test("wasm cli: bad --threads and --backend exit 2 naming the flag, before loading anything", async () => {
  for (const bad of ["0", "65", "1.5", "two"]) {
    const r = await run(["generate", "--prompt", "x", "--backend", "wasm", "--threads", bad]);
    assert.equal(r.code, 2, `--threads ${bad}: ${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(`--threads must be an integer 1\\.\\.64, got ${bad.replace(".", "\\.")}`),
    );
    assert.equal(r.stdout, "");
  }
  for (const cmd of ["serve", "profile", "bench"]) {
    const r = await run([cmd, "--threads", "0"]);
    assert.equal(r.code, 2, `${cmd}: ${r.stderr}`);
    assert.match(r.stderr, /--threads must be an integer 1\.\.64, got 0/, cmd);
  }
  let r = await run(["serve", "--backend", "tpu"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--backend must be one of gpu, cpu, wasm, auto, got "tpu"/);
  // Paged weights need the GPU: with wasm that is a usage error, not a failed load.
  r = await run(["generate", "--prompt", "x", "--backend", "wasm", "--gpu-memory-budget", "1MB"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--gpu-memory-budget \(paged weights\) needs --backend gpu \(or auto\), not wasm/);
});

Deno.test("wasm server: serve --backend wasm answers /v1/generate (AR and Sequoia alike) and reports it", async () => {
  const server = await spawnServe(["--backend", "wasm", "--threads", "2"]);
  let code: number | undefined;
  try {
    const ask = async (body: Record<string, unknown>) => {
      const res = await fetch(`${server.url}/v1/generate`, {
        method: "POST",
        body: JSON.stringify({ prompt: "And God said", max_tokens: 16, temperature: 0, ...body }),
        headers: { "content-type": "application/json" },
      });
      const j = await res.json();
      assert.equal(res.status, 200, JSON.stringify(j));
      return j;
    };
    const ar = await ask({ method: "ar" });
    assert.equal(ar.tokens.length, 16);
    const seq = await ask({ method: "sequoia" });
    assert.deepEqual(seq.tokens, ar.tokens, "exact speculation on wasm");
    const st = await (await fetch(`${server.url}/v1/status`)).json();
    assert.equal(st.backend, "wasm");
    assert.equal(st.threads, 2);
    assert.equal(st.device, "wasm: 2 threads, SIMD128");
    assert.equal(st.backend_choice, null);
    // The startup profile was measured on wasm (never the shipped gpu profile), keyed by threads.
    assert.equal(st.profile.backend, "wasm");
    assert.equal(st.profile.adapter.vendor, "wasm");
    assert.equal(st.profile.costs.sync, 0);
    if (!st.profile.cached) { // (a wasm profile beside the bundled draft would be read instead)
      const file = JSON.parse(await Deno.readTextFile(`${server.cacheDir}/profile.json`));
      const keys = file.entries.map((e: { key: { backend?: string; threads?: number } }) => e.key);
      assert.ok(
        keys.some((k: { backend?: string; threads?: number }) => k.backend === "wasm" && k.threads === 2),
      );
    }
    assert.match(server.log(), /target .* on wasm: 2 threads, SIMD128/);
  } finally {
    code = await server.stop();
  }
  assert.equal(code, 0, server.log());
});

Deno.test("wasm cli: --backend auto says what it picked with both t(1); the next start reuses it", async () => {
  const cache = freshCacheDir();
  // A copy of the bundled target without its profile.json (which caches this machine class's choice).
  const model = await Deno.makeTempDir({ prefix: "auto_target_" });
  for await (const e of Deno.readDir(DEFAULT_TARGET_DIR)) {
    if (e.isFile && e.name !== "profile.json") {
      await Deno.copyFile(`${DEFAULT_TARGET_DIR}/${e.name}`, `${model}/${e.name}`);
    }
  }
  try {
    const args = ["generate", ...GREEDY, "--model", model, "--max-tokens", "4", "--threads", "2"];
    const first = await run(args, cache);
    assert.equal(first.code, 0, first.stderr);
    const line =
      /backend auto: (wasm|gpu): t\(1\) (?:wasm|gpu) [\d.]+ ms on .* vs (?:wasm|gpu) [\d.]+ ms on .*; (\w+)/;
    const m1 = first.stderr.match(line);
    assert.ok(m1, first.stderr);
    assert.equal(m1[2], "measured");
    const picked = m1[1];
    const s1 = JSON.parse(first.stdout).stats;
    assert.equal(s1.backend, picked);
    assert.equal(s1.backend_choice.basis, "measured");
    assert.ok(s1.backend_choice.t1_ms.wasm > 0 && s1.backend_choice.t1_ms.gpu > 0);
    const file = JSON.parse(await Deno.readTextFile(`${cache}/profile.json`));
    assert.equal(file.backends.length, 1);
    assert.equal(file.backends[0].backend, picked);
    assert.equal(file.backends[0].key.threads, 2);

    const second = await run(args, cache);
    assert.equal(second.code, 0, second.stderr);
    const m2 = second.stderr.match(line);
    assert.ok(m2, second.stderr);
    assert.deepEqual([m2[1], m2[2]], [picked, "cached"]);
    assert.doesNotMatch(second.stderr, /measuring t\(1\)/);
    const s2 = JSON.parse(second.stdout).stats;
    assert.equal(s2.backend, picked);
    assert.deepEqual(s2.backend_choice.t1_ms, file.backends[0].t1_ms);
    assert.deepEqual(JSON.parse(second.stdout).tokens, JSON.parse(first.stdout).tokens);

    // Another thread count is another key: measured again, both decisions kept.
    const one = await run(
      ["generate", ...GREEDY, "--model", model, "--max-tokens", "4", "--threads", "1"],
      cache,
    );
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stderr, /; measured/);
    const both = JSON.parse(await Deno.readTextFile(`${cache}/profile.json`));
    assert.deepEqual(both.backends.map((e: { key: { threads: number } }) => e.key.threads).sort(), [1, 2]);
  } finally {
    await Deno.remove(cache, { recursive: true });
    await Deno.remove(model, { recursive: true });
  }
});

Deno.test("backend auto: no WebGPU adapter -> wasm, paged weights -> gpu, neither measured", async () => {
  const folder = await openModelFolder(DEFAULT_TARGET_DIR);
  const cacheDir = freshCacheDir();
  const gpu = Object.getOwnPropertyDescriptor(navigator, "gpu");
  try {
    Object.defineProperty(navigator, "gpu", {
      value: { requestAdapter: () => Promise.resolve(null) },
      configurable: true,
    });
    const none = await chooseBackend(folder, { threads: 2, cacheDir });
    assert.deepEqual(none, { backend: "wasm", basis: "no WebGPU adapter", threads: 2 });
    const paged = await chooseBackend(folder, { threads: 2, cacheDir, paging: { gpuMemoryBudget: 1 << 20 } });
    assert.deepEqual(paged, { backend: "gpu", basis: "paged weights", threads: 2 });
    assert.deepEqual([...Deno.readDirSync(cacheDir)], [], "nothing cached");
  } finally {
    if (gpu) Object.defineProperty(navigator, "gpu", gpu);
    else delete (navigator as { gpu?: unknown }).gpu;
    folder.checkpoint.close();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("hardware profile: keyed by backend and wasm threads; a gpu profile is never used for wasm", async () => {
  const targetFolder = await openModelFolder(DEFAULT_TARGET_DIR);
  const draftFolder = await openModelFolder(DEFAULT_DRAFT_DIR);
  const cacheDir = freshCacheDir();
  // Devices and models that fail the test if anything is measured on them (only identities are read).
  const gpu = new Proxy({}, {
    get: (_, p) => {
      if (p === "adapter") {
        return { vendor: "v", architecture: "a", device: "d", description: "gpu", isFallbackAdapter: false };
      }
      throw new Error("measured");
    },
  }) as Gpu;
  const untouchable = new Proxy({}, {
    get: (_, p) => {
      if (p === "paging" || p === "weightsDtype") return undefined; // what cache keys read
      throw new Error("measured");
    },
  }) as CausalLM;
  try {
    const kg = await profileKey(gpu, targetFolder, draftFolder);
    const k2 = await profileKey(new WasmHost(2, "test cpu"), targetFolder, draftFolder);
    assert.equal(kg.backend, "gpu");
    assert.equal(kg.threads, undefined);
    assert.deepEqual([k2.backend, k2.threads], ["wasm", 2]);
    assert.match(k2.adapter, /^wasm\|.*test cpu, 2 threads$/);
    const costs = (t: number) => ({
      sizes: [1, 2],
      target: [t, t],
      draft: [1, 1],
      sync: 0,
      arTokensPerSubmission: 1,
    });
    const path = `${cacheDir}/profile.json`;
    await writeProfileSection(path, "entries", [
      { ...costs(10), key: kg, measured_at: "then" },
      { ...costs(2), key: k2, measured_at: "then" },
    ]);
    // The auto decisions share the file: writing them keeps the profiles, and the other way round.
    await writeProfileSection(path, "backends", [{
      key: {},
      backend: "wasm",
      t1_ms: {},
      measured_at: "then",
    }]);
    const pair = { targetFolder, draftFolder, target: untouchable, draft: untouchable };
    const onGpu = await loadOrMeasureCosts(gpu, pair, { cacheDir });
    assert.deepEqual([onGpu.cached, onGpu.costs.target[0]], [true, 10]);
    const onWasm = await loadOrMeasureCosts(new WasmHost(2, "test cpu"), pair, { cacheDir });
    assert.deepEqual([onWasm.cached, onWasm.costs.target[0]], [true, 2]);
    // Another thread count is another profile: it would be measured.
    await assert.rejects(loadOrMeasureCosts(new WasmHost(1, "test cpu"), pair, { cacheDir }), /measured/);
    const file = JSON.parse(await Deno.readTextFile(path));
    assert.equal(file.entries.length, 2);
    assert.equal(file.backends.length, 1);
  } finally {
    targetFolder.checkpoint.close();
    draftFolder.checkpoint.close();
    await Deno.remove(cacheDir, { recursive: true });
  }
});
