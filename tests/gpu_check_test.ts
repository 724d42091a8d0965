/**
 * The GPU check (scripts/gpu_check.sh) in quick mode on whatever adapter is here (CI: llvmpipe): every
 * stage runs in its own process and finishes, and the JSON summary holds each stage's figures; a stage
 * given no time is reported skipped, and the pure helpers size and fill their data as documented.
 */
import assert from "node:assert/strict";
import { GPU_MATRIX_DTYPES, STAGES } from "../src/bench/gpu_check.ts";
import { randomMatrixBytes, tiledRandom } from "../src/bench/random_weights.ts";
import { DTYPE_CODE } from "../src/gpu/tensor.ts";
import type { CheckSummary } from "../src/bench/gpu_check_report.ts";
import { f16ToF32Table } from "../src/model/dtype.ts";

const SCRIPT = new URL("../scripts/gpu_check.sh", import.meta.url).pathname;

async function runCheck(args: string[]): Promise<{ code: number; out: string; summary: CheckSummary }> {
  const dir = await Deno.makeTempDir({ prefix: "gpu_check_test_" });
  const r = await new Deno.Command("bash", {
    args: [SCRIPT, "--out", dir, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  const summary = JSON.parse(await Deno.readTextFile(`${dir}/gpu_check.json`)) as CheckSummary;
  const md = await Deno.readTextFile(`${dir}/gpu_check.md`);
  assert.match(md, /^# GPU check/);
  await Deno.remove(dir, { recursive: true });
  return { code: r.code, out, summary };
}

Deno.test("gpu_check --quick: every stage finishes and the JSON holds its figures", async () => {
  const { code, out, summary } = await runCheck(["--quick"]);
  assert.equal(code, 0, out);
  assert.equal(summary.quick, true);
  assert.deepEqual(Object.keys(summary.stages), STAGES.map((s) => s.name));
  for (const r of Object.values(summary.stages)) {
    assert.equal(r.status, "done", `${r.stage}: ${r.error}\n${out}`);
    assert.ok(r.seconds! > 0 && r.seconds! <= r.limitS!, `${r.stage}: ${r.seconds} s of ${r.limitS}`);
  }
  // deno-lint-ignore no-explicit-any
  const d = (name: string) => summary.stages[name].data as Record<string, any>;
  assert.equal(typeof d("adapter").keyLimits.maxStorageBufferBindingSize, "number");
  assert.ok(Array.isArray(d("adapter").features));
  assert.ok(d("stream").streamGbps > 0 && d("stream").sync.readbackMs > 0);
  // One row per dtype x shape, or a skip with its reason: none silently missing.
  const mv = d("matvec");
  assert.deepEqual(mv.dtypes, Object.keys(DTYPE_CODE));
  assert.equal(mv.rows.length + mv.skipped.length, GPU_MATRIX_DTYPES.length * 3);
  for (const r of mv.rows) assert.ok(r.gbps > 0 && r.ms > 0, JSON.stringify(r));
  assert.ok(mv.rows.some((r: { parts: number }) => r.parts > 1), "the LM-head-like matrix is split in parts");
  for (const [stage, keys] of [["forward1b", ["f16"]], ["smollm2", ["f16", "q8_0"]]] as const) {
    for (const k of keys) {
      const m = d(stage)[k];
      assert.deepEqual(m.tn.map((r: { n: number }) => r.n), [1, 2, 4], `${stage} ${k}`);
      assert.ok(m.tn.every((r: { ms: number }) => r.ms > 0));
      assert.ok(m.ar.tokPerS > 0 && m.ar.ofStream > 0, `${stage} ${k}: ${JSON.stringify(m.ar)}`);
      assert.ok(m.bytesPerToken > 0);
    }
  }
  const tiny = d("tiny").rows as { method: string; tokPerS: number; tokensPerStep: number }[];
  assert.deepEqual(tiny.map((r) => r.method), ["ar", "sequoia"]);
  assert.ok(tiny.every((r) => r.tokPerS > 0));
  // Real acceptance on the tiny pair: a Sequoia step accepts more than its root token.
  assert.ok(tiny[1].tokensPerStep > 1, JSON.stringify(tiny[1]));
});

Deno.test("gpu_check: a stage left no time is reported skipped, and --only runs just the stages named", async () => {
  const { code, summary } = await runCheck(["--quick", "--only", "adapter,stream", "--limit", "4"]);
  assert.equal(code, 1); // not every stage done
  assert.deepEqual(Object.keys(summary.stages), ["adapter", "stream"]);
  // 4 s minus the 3 s reserve leaves under the 3 s a stage needs.
  assert.equal(summary.stages.adapter.status, "skipped");
  assert.equal(summary.stages.stream.status, "skipped");
});

Deno.test("gpu_check: random matrix bytes have each dtype's size, and ggml scales stay finite", () => {
  const x = tiledRandom(3_000_000, 1);
  assert.equal(x.length, 3_000_000);
  assert.ok(x.every((v) => Math.abs(v) <= 0.05));
  assert.equal(x[5], x[5 + (1 << 20)]); // one 1 Mi block, repeated
  assert.equal(randomMatrixBytes("F32", 3, 64, 1).byteLength, 3 * 64 * 4);
  assert.equal(randomMatrixBytes("F16", 3, 64, 1).byteLength, 3 * 64 * 2);
  assert.equal(randomMatrixBytes("BF16", 5, 64, 1).byteLength, 5 * 64 * 2);
  const q8 = randomMatrixBytes("Q8_0", 3, 64, 1);
  assert.equal(q8.byteLength, 3 * 2 * 34);
  const t = f16ToF32Table();
  const view = new DataView(q8.buffer, q8.byteOffset, q8.byteLength);
  for (let b = 0; b < 6; b++) {
    const d = t[view.getUint16(b * 34, true)];
    assert.ok(Number.isFinite(d) && Math.abs(d) < 2, `block ${b}: scale ${d}`);
  }
  assert.equal(randomMatrixBytes("Q4_K", 2, 256, 1).byteLength, 2 * 144);
  assert.throws(() => randomMatrixBytes("Q8_0", 2, 48, 1), /48 columns is not whole 32-element blocks/);
  assert.throws(() => randomMatrixBytes("I8", 2, 48, 1), /no random data for dtype I8/);
});
