/**
 * `deno task bench --peers`: flag checks (no model load), and, when the model has been fetched, a short
 * run whose rows carry tok/s and bytes per token for this engine and a llama.cpp row (measured, or the
 * reason it is unavailable).
 */
import assert from "node:assert/strict";
import { runBench } from "../src/cli/bench.ts";
import { UsageError } from "../src/cli/usage.ts";
import { benchPeers, PEER_DEFAULTS } from "../src/bench/peers.ts";
import { haveSmollm2 } from "./fixtures/smollm2.ts";

Deno.test("bench --peers: flags that do not go with it are refused", async () => {
  await assert.rejects(() => runBench(["--peers", "--ar"]), UsageError);
  await assert.rejects(() => runBench(["--vulkan"]), /--vulkan goes with --peers only/);
  await assert.rejects(
    () => runBench(["--ar", "--model", "x.gguf"]),
    /--model goes with --kernels, --peers or the side-by-side run only/,
  );
});

Deno.test({
  name: "bench --peers: this engine's rows and a llama.cpp row on the real model",
  ignore: !haveSmollm2,
  fn: async () => {
    const rows = await benchPeers({ ...PEER_DEFAULTS, tokens: 4, runs: 1, vulkan: false });
    const engine = rows.filter((r) => r.engine.startsWith("specdec"));
    // The wasm rows and llama.cpp's CPU rows at the same thread counts (1 and 2, as far as the cores go).
    const threads = [1, 2].filter((t) => t <= Math.max(1, navigator.hardwareConcurrency || 1));
    assert.deepEqual(engine.map((r) => r.engine), [
      ...threads.map((t) => `specdec wasm (${t} thread${t === 1 ? "" : "s"})`),
      "specdec WebGPU, 8/submission",
      "specdec WebGPU, 1/submission",
      "specdec CPU reference",
    ]);
    for (const r of engine) {
      assert.ok(r.tokPerS! > 0 && r.bytesPerToken! > 90e6, `${r.engine}: ${JSON.stringify(r)}`);
    }
    const peers = rows.filter((r) => r.engine.startsWith("llama.cpp cpu"));
    assert.deepEqual(
      peers.map((r) => r.engine),
      threads.map((t) => `llama.cpp cpu (${t} thread${t === 1 ? "" : "s"})`),
    );
    for (const peer of peers) {
      assert.ok(peer.tokPerS! > 0 || /^unavailable: /.test(peer.note!), JSON.stringify(peer));
    }
  },
});
