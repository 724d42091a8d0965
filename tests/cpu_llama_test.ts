import assert from "node:assert/strict";
import { CpuLlama } from "../src/cpu/llama.ts";
import { causalMask } from "../src/model/causal_lm.ts";
import { randomCpuModel, smallConfig } from "./fixtures/random_model.ts";

const config = smallConfig();

const W = randomCpuModel(config, 3).w;
const V = config.vocabSize;
const PREFIX = [1, 17, 40, 5, 63, 22, 9];

/** Logits of the last token of `seq`, computed from scratch, causally. */
function fresh(seq: number[]): Float32Array {
  const m = new CpuLlama(config, W);
  return m.forwardSync({
    tokens: Int32Array.from(seq),
    positions: Int32Array.from(seq, (_, i) => i),
    logitRows: [seq.length - 1],
  });
}

function assertClose(a: Float32Array, b: Float32Array, tol: number, what: string): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol, `${what}: index ${i}: ${a[i]} vs ${b[i]}`);
  }
}

Deno.test("cpu llama: incremental decoding equals full prefill", () => {
  const full = new CpuLlama(config, W).forwardSync({
    tokens: Int32Array.from(PREFIX),
    positions: Int32Array.from(PREFIX, (_, i) => i),
  });
  const m = new CpuLlama(config, W);
  for (let i = 0; i < PREFIX.length; i++) {
    const row = m.forwardSync({ tokens: Int32Array.of(PREFIX[i]), positions: Int32Array.of(i) });
    assertClose(row, full.subarray(i * V, (i + 1) * V), 1e-5, `row ${i}`);
  }
  assert.equal(m.kv.length, PREFIX.length);
});

Deno.test("cpu llama: an explicit causal mask equals the implicit one", () => {
  const a = new CpuLlama(config, W);
  a.forwardSync({ tokens: Int32Array.from(PREFIX.slice(0, 3)), positions: Int32Array.of(0, 1, 2) });
  const b = new CpuLlama(config, W);
  b.forwardSync({ tokens: Int32Array.from(PREFIX.slice(0, 3)), positions: Int32Array.of(0, 1, 2) });
  const rest = { tokens: Int32Array.from(PREFIX.slice(3)), positions: Int32Array.of(3, 4, 5, 6) };
  assertClose(a.forwardSync(rest), b.forwardSync({ ...rest, mask: causalMask(3, 4) }), 0, "masked");
});

// A token tree after PREFIX: node i has token TREE[i], parent PARENT[i] (-1 = the last prefix token).
//        n0 ── n1 ── n3
//          └── n2 ── n4
//   n5 (second root child)
const TREE = [30, 31, 32, 33, 34, 35];
const PARENT = [-1, 0, 0, 1, 2, -1];

function pathTo(i: number): number[] {
  const p: number[] = [];
  for (let v = i; v >= 0; v = PARENT[v]) p.unshift(v);
  return p;
}

function treeInput(past: number) {
  const n = TREE.length, w = past + n;
  const mask = new Uint8Array(n * w);
  const positions = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    mask.fill(1, i * w, i * w + past);
    const path = pathTo(i);
    for (const a of path) mask[i * w + past + a] = 1;
    positions[i] = past + path.length - 1;
  }
  return { tokens: Int32Array.from(TREE), positions, mask };
}

Deno.test("cpu llama: tree forward with an ancestor mask equals each path computed causally", () => {
  const m = new CpuLlama(config, W);
  m.forwardSync({ tokens: Int32Array.from(PREFIX), positions: Int32Array.from(PREFIX, (_, i) => i) });
  const logits = m.forwardSync(treeInput(PREFIX.length));
  for (let i = 0; i < TREE.length; i++) {
    const seq = [...PREFIX, ...pathTo(i).map((v) => TREE[v])];
    assertClose(logits.subarray(i * V, (i + 1) * V), fresh(seq), 2e-5, `node ${i}`);
  }
});

Deno.test("cpu llama: after commit, next-token logits equal recomputing the accepted path", () => {
  const m = new CpuLlama(config, W);
  const past = PREFIX.length;
  m.forwardSync({ tokens: Int32Array.from(PREFIX), positions: Int32Array.from(PREFIX, (_, i) => i) });
  m.forwardSync(treeInput(past));
  const accepted = pathTo(4); // n0 -> n2 -> n4: slots past+0, past+2, past+4
  m.kv.commit(past, accepted.map((v) => past + v));
  assert.equal(m.kv.length, past + 3);
  const next = 50;
  const got = m.forwardSync({ tokens: Int32Array.of(next), positions: Int32Array.of(past + 3) });
  assertClose(got, fresh([...PREFIX, ...accepted.map((v) => TREE[v]), next]), 2e-5, "after commit");
});

Deno.test("cpu llama: bad inputs are refused with the limit named", () => {
  const m = new CpuLlama(config, W, 8);
  assert.throws(
    () => m.forwardSync({ tokens: new Int32Array(9), positions: new Int32Array(9) }),
    /exceed the KV capacity 8/,
  );
  assert.throws(
    () => m.forwardSync({ tokens: Int32Array.of(V), positions: Int32Array.of(0) }),
    /outside vocabulary/,
  );
  assert.throws(
    () =>
      m.forwardSync({ tokens: Int32Array.of(1, 2), positions: Int32Array.of(0, 1), mask: new Uint8Array(3) }),
    /mask has 3 entries, expected 2 x 2/,
  );
  m.forwardSync({ tokens: Int32Array.of(1, 2, 3), positions: Int32Array.of(0, 1, 2) });
  assert.throws(() => m.kv.commit(2, [1]), /not an uncommitted slot/);
  assert.throws(() => m.kv.commit(1, [5]), /not an uncommitted slot/);
});
