/**
 * `--webgpu deno|dawn|auto`: the flag's validation, auto's decision rule and cache, Dawn's errors, and
 * the engine on Dawn (greedy speculative = AR, verification on the device). Dawn's tests need Dawn with an
 * adapter (CI: scripts/dawn_mesa.sh + SPECDEC_DAWN_ICD); without one they are skipped, unless
 * SPECDEC_REQUIRE_DAWN=1 (CI sets it) makes a missing Dawn a failure.
 */
import assert from "node:assert/strict";
import { backendFlags } from "../src/cli/backend_flags.ts";
import { UsageError } from "../src/cli/usage.ts";
import { Gpu } from "../src/gpu/device.ts";
import { DAWN_ICD_ENV, parseWebGpuChoice } from "../src/gpu/webgpu_impl.ts";
import { GpuLlama } from "../src/gpu/llama/model.ts";
import { adapterId } from "../src/runtime/hardware_profile.ts";
import { chooseWebGpu, fasterWebGpu, stepMs } from "../src/runtime/webgpu_choice.ts";
import { openCheckpoint } from "../src/model/folder.ts";
import { draftFolder, prompts, run, targetFolder } from "./fixtures/exact.ts";
import { freshCacheDir } from "./fixtures/server_process.ts";

/** Auto's measurement cut short (the decision logic is what these tests check, not the figures). */
const QUICK = { warmup: 0, reps: 1 };
const MAIN = new URL("../src/main.ts", import.meta.url).pathname;
const TARGET = new URL("../weights/tiny/target", import.meta.url).pathname;

/** Dawn's device, or undefined (with the reason logged) when it cannot run here. */
const dawn: Gpu | undefined = await Gpu.acquire("dawn").catch((e) => {
  if (Deno.env.get("SPECDEC_REQUIRE_DAWN") === "1") throw e;
  console.error(`Dawn's tests skipped: ${(e as Error).message}`);
  return undefined;
});

Deno.test("webgpu: --webgpu is validated and names itself; dawn and auto need a WebGPU backend", () => {
  assert.equal(backendFlags({ webgpu: "dawn" }).webgpu, "dawn");
  assert.equal(backendFlags({ webgpu: "auto", backend: "gpu" }).webgpu, "auto");
  assert.throws(
    () => backendFlags({ webgpu: "wgpu" }),
    (e) => e instanceof UsageError && /--webgpu/.test(e.message),
  );
  assert.throws(
    () => backendFlags({ webgpu: "dawn", backend: "wasm" }),
    (e) => e instanceof UsageError && /--backend gpu or auto/.test(e.message),
  );
  assert.equal(backendFlags({ webgpu: "deno", backend: "cpu" }).webgpu, "deno");
  assert.throws(
    () => parseWebGpuChoice("Dawn", "$SPECDEC_WEBGPU"),
    /\$SPECDEC_WEBGPU must be one of deno, dawn, auto/,
  );
});

Deno.test("webgpu: auto picks the smaller t(1) + t(16); an implementation that cannot run loses", () => {
  const c = (t1: number, t16: number) => ({ t1_ms: t1, t16_ms: t16 });
  assert.equal(fasterWebGpu({ deno: c(12, 30), dawn: c(4, 20) }), "dawn");
  // Dawn's faster AR step does not win when its verification step costs more in all.
  assert.equal(fasterWebGpu({ deno: c(12, 30), dawn: c(4, 40) }), "deno");
  assert.equal(fasterWebGpu({ deno: c(10, 10), dawn: c(10, 10) }), "deno"); // a tie keeps the default
  assert.equal(fasterWebGpu({ deno: null, dawn: c(100, 100) }), "dawn");
  assert.equal(fasterWebGpu({ deno: null, dawn: null }), undefined);
});

Deno.test("webgpu: Dawn's measurements are cached apart from Deno's (adapter key)", () => {
  const a = {
    vendor: "v",
    architecture: "a",
    device: "d",
    description: "llvmpipe",
    isFallbackAdapter: false,
  };
  assert.equal(adapterId(a), "v|a|d|llvmpipe"); // Deno's keys as before: old caches stay valid
  assert.equal(adapterId({ ...a, webgpu: "deno" }), "v|a|d|llvmpipe");
  assert.notEqual(adapterId({ ...a, webgpu: "dawn" }), adapterId(a));
});

/** `generate` on the tiny target in exactly `env` (plus PATH, HOME, XDG_RUNTIME_DIR and a fresh cache). */
async function generate(env: Record<string, string>, ...args: string[]) {
  const cache = freshCacheDir();
  try {
    const keep = ["PATH", "HOME", "XDG_RUNTIME_DIR", "DENO_DIR"].flatMap((k) => {
      const v = Deno.env.get(k);
      return v === undefined ? [] : [[k, v]];
    });
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "generate", "--prompt", "In the beginning", "--max-tokens", "4", ...args],
      env: { ...Object.fromEntries(keep), ...env, SPECDEC_CACHE_DIR: cache },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
}

Deno.test("webgpu: Dawn without a usable driver fails with what to install; a missing manifest is named", async () => {
  // No Vulkan driver at all (the loader reads an empty list): Dawn finds no adapter.
  const none = await generate(
    { VK_DRIVER_FILES: "/nonexistent/icd.json", VK_ICD_FILENAMES: "/nonexistent/icd.json" },
    "--backend",
    "gpu",
    "--webgpu",
    "dawn",
  );
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /Dawn's WebGPU found no adapter/);
  assert.match(none.stderr, /scripts\/dawn_mesa\.sh/);
  const missing = await generate(
    { [DAWN_ICD_ENV]: "/nonexistent/lvp_icd.json" },
    "--backend",
    "gpu",
    "--webgpu",
    "dawn",
  );
  assert.notEqual(missing.code, 0);
  assert.match(
    missing.stderr,
    /SPECDEC_DAWN_ICD: cannot read the Vulkan driver manifest \/nonexistent\/lvp_icd\.json/,
  );
});

Deno.test({
  name:
    "webgpu: on Dawn, greedy Sequoia (fused step) and SpecExec (host tree) equal AR, verified on the device",
  ignore: !dawn,
  fn: async () => {
    const [p] = await prompts(1);
    const pair = {
      target: await GpuLlama.load(dawn!, targetFolder),
      draft: await GpuLlama.load(dawn!, draftFolder),
    };
    try {
      // Two methods, not every one: each new tree shape compiles pipelines, minutes on lavapipe under Dawn
      // (deno task test:dawn runs the whole GPU exactness suite on Dawn).
      const ar = (await run(pair, "ar", p, 24)).ids;
      assert.equal(ar.length, 24);
      for (const m of ["sequoia", "specexec"] as const) {
        assert.deepEqual((await run(pair, m, p, 24)).ids, ar, `${m} on Dawn`);
      }
      // Verification on the device reads back O(depth) bytes per step on Dawn too (after the prefill, which
      // reads the root's logits once: the first token is sampled on the host).
      const before = pair.target.counters.readbackBytes, steps0 = pair.target.counters.readbacks;
      const r = await run(pair, "sequoia", p, 24);
      const steps = pair.target.counters.readbacks - steps0;
      assert.ok(r.tokensPerStep > 1);
      assert.ok(
        pair.target.counters.readbackBytes - before <=
          4 * targetFolder.config.vocabSize + steps * 4 * (5 + 16),
        `${pair.target.counters.readbackBytes - before} bytes in ${steps} syncs`,
      );
    } finally {
      pair.target.dispose();
      pair.draft.dispose();
    }
  },
});

Deno.test({
  name: "webgpu: auto measures both implementations once, caches the decision, --reprofile measures again",
  ignore: !dawn,
  fn: async () => {
    const cacheDir = freshCacheDir();
    const folder = await openCheckpoint(TARGET);
    try {
      const first = await chooseWebGpu(folder, { measure: QUICK, cacheDir });
      assert.equal(first.basis, "measured");
      for (const i of ["deno", "dawn"] as const) {
        assert.ok(
          first.costs![i]!.t1_ms > 0 && first.costs![i]!.t16_ms > 0,
          `${i}: ${JSON.stringify(first.costs)}`,
        );
      }
      const file = JSON.parse(await Deno.readTextFile(`${cacheDir}/profile.json`));
      assert.equal(file.webgpu.length, 1);
      assert.equal(file.webgpu[0].webgpu, first.webgpu);
      const again = await chooseWebGpu(folder, { measure: QUICK, cacheDir });
      assert.equal(again.basis, "cached");
      assert.equal(again.webgpu, first.webgpu);
      assert.equal(
        (await chooseWebGpu(folder, { measure: QUICK, cacheDir, reprofile: true })).basis,
        "measured",
      );
    } finally {
      folder.checkpoint.close();
      await Deno.remove(cacheDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "webgpu: stepMs times an n-token step with its readback and leaves the cache empty",
  ignore: !dawn,
  fn: async () => {
    const m = await GpuLlama.load(dawn!, targetFolder);
    try {
      const t = await stepMs(m, 4, { warmup: 1, reps: 2 });
      assert.ok(t > 0 && Number.isFinite(t));
      assert.equal(m.kv.length, 0);
    } finally {
      m.dispose();
    }
  },
});
