/**
 * The measured caches (profile.json, acceptance.json): where they are read and written
 * (SPECDEC_CACHE_DIR), and what an unusable (truncated) file does. CPU only, no measurement of the GPU.
 */
import assert from "node:assert/strict";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import { CACHE_DIR_ENV, cacheFiles, resolveCacheDir } from "../src/runtime/cache_dir.ts";
import { acceptanceTexts, heldoutSource, loadOrMeasureAcceptance } from "../src/runtime/acceptance.ts";
import { modelId, saveAcceptance } from "../src/runtime/acceptance_store.ts";
import { loadOrMeasureCosts, profileKey } from "../src/runtime/hardware_profile.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import type { Gpu } from "../src/gpu/device.ts";
import type { GpuLlama } from "../src/gpu/llama/model.ts";

const SAMPLING = { temperature: 0.7, topK: 0, topP: 1 };

/** A private copy of the bundled draft's model files (no caches), in its own temp directory. */
async function draftCopy(): Promise<string> {
  const dir = `${await Deno.makeTempDir({ prefix: "runtime_caches_" })}/draft`;
  await Deno.mkdir(dir);
  for (const n of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]) {
    await Deno.copyFile(`${DEFAULT_DRAFT_DIR}/${n}`, `${dir}/${n}`);
  }
  return dir;
}

/** A GPU and models that fail the test if anything is measured on them. */
const untouchableGpu = new Proxy({}, {
  get: (_, prop) => {
    if (prop === "adapter") {
      return {
        vendor: "v",
        architecture: "a",
        device: "d",
        description: "test gpu",
        isFallbackAdapter: false,
      };
    }
    throw new Error("measured");
  },
}) as Gpu;
const untouchable = new Proxy({}, {
  get: (_, prop) => {
    if (prop === "paging" || prop === "weightsDtype") return undefined; // what cache keys read
    throw new Error("measured");
  },
}) as GpuLlama;

Deno.test("cache dir: SPECDEC_CACHE_DIR is read first and written; the draft's file only read", () => {
  const before = Deno.env.get(CACHE_DIR_ENV);
  try {
    Deno.env.set(CACHE_DIR_ENV, "/tmp/specdec-cache");
    assert.equal(resolveCacheDir(undefined), "/tmp/specdec-cache");
    assert.equal(resolveCacheDir(null), undefined, "null: beside the draft whatever the environment says");
    assert.equal(resolveCacheDir("/elsewhere"), "/elsewhere");
    assert.deepEqual(cacheFiles("/m/draft", "profile.json"), {
      read: ["/tmp/specdec-cache/profile.json", "/m/draft/profile.json"],
      write: "/tmp/specdec-cache/profile.json",
    });
    Deno.env.set(CACHE_DIR_ENV, "");
    assert.deepEqual(cacheFiles("/m/draft", "profile.json"), {
      read: ["/m/draft/profile.json"],
      write: "/m/draft/profile.json",
    });
  } finally {
    if (before === undefined) Deno.env.delete(CACHE_DIR_ENV);
    else Deno.env.set(CACHE_DIR_ENV, before);
  }
});

Deno.test("cache dir: acceptance and profile fall back to the draft's shipped files, write only the cache", async () => {
  const draftDir = await draftCopy();
  const cacheDir = `${draftDir}/../cache/nested`; // need not exist yet
  const folder = await openModelFolder(draftDir);
  const target = await openModelFolder(DEFAULT_TARGET_DIR);
  try {
    const id = await modelId(folder);
    // Shipped beside the draft (as the bundled pair has them).
    const v = { acceptance: [0.5, 0.25], reject: 0.25, trials: 8 };
    await saveAcceptance(draftDir, id, id, SAMPLING, v, { cacheDir: null });
    const shipped = await Deno.readTextFile(`${draftDir}/acceptance.json`);
    const key = await profileKey(untouchableGpu, target, folder);
    const costs = { sizes: [1, 2], target: [10, 12], draft: [1, 1.2], sync: 11, arTokensPerSubmission: 8 };
    const profile = JSON.stringify({ version: 1, entries: [{ ...costs, key, measured_at: "then" }] });
    await Deno.writeTextFile(`${draftDir}/profile.json`, profile);

    const pair = { targetFolder: folder, draftFolder: folder, target: untouchable, draft: untouchable };
    const hit = await loadOrMeasureAcceptance(pair, SAMPLING, { cacheDir });
    assert.deepEqual(hit, { acceptance: [0.5, 0.25], cached: true, path: `${draftDir}/acceptance.json` });
    const gpuPair = { targetFolder: target, draftFolder: folder, target: untouchable, draft: untouchable };
    const p = await loadOrMeasureCosts(untouchableGpu, gpuPair, { cacheDir });
    assert.equal(p.cached, true);
    assert.deepEqual(p.costs.target, [10, 12]);

    // A new entry goes to the cache directory; the draft's file is untouched, and the cache wins next.
    const saved = await saveAcceptance(draftDir, id, id, SAMPLING, { ...v, reject: 0.5 }, { cacheDir });
    assert.equal(saved.path, `${cacheDir}/acceptance.json`);
    assert.equal(await Deno.readTextFile(`${draftDir}/acceptance.json`), shipped);
    assert.equal((await loadOrMeasureAcceptance(pair, SAMPLING, { cacheDir })).path, saved.path);
    assert.equal(await Deno.readTextFile(`${draftDir}/profile.json`), profile);
  } finally {
    folder.checkpoint.close();
    target.checkpoint.close();
  }
});

Deno.test("acceptance: a truncated acceptance.json is named in a warning, re-measured and rewritten", async () => {
  const draftDir = await draftCopy();
  const path = `${draftDir}/acceptance.json`;
  await Deno.writeTextFile(path, '{"version": 1, "entries": [{"target": "ab');
  const folder = await openModelFolder(draftDir);
  const a = await loadCpuModel(folder), b = await loadCpuModel(folder);
  try {
    const lines: string[] = [];
    const pair = { targetFolder: folder, draftFolder: folder, target: a, draft: b };
    const r = await loadOrMeasureAcceptance(pair, SAMPLING, { cacheDir: null, log: (l) => lines.push(l) });
    assert.equal(r.cached, false);
    assert.equal(r.path, path);
    const warning = lines.find((l) => l.startsWith("warning:"));
    assert.ok(
      warning?.includes(path) && /not valid JSON/.test(warning) && /re-measured/.test(warning),
      warning,
    );
    // No held-out text belongs to this copy: the generic prompts, said so (never the tiny pair's text).
    assert.ok(lines.some((l) => /generic prompts .*bench\/prompts\.json/.test(l)), lines.join("\n"));
    const j = JSON.parse(await Deno.readTextFile(path));
    assert.equal(j.entries.length, 1);
    assert.equal(j.entries[0].acceptance.length, 16);
    const again = await loadOrMeasureAcceptance(pair, SAMPLING, { cacheDir: null });
    assert.equal(again.cached, true);
  } finally {
    a.dispose();
    b.dispose();
    folder.checkpoint.close();
  }
});

Deno.test("hardware profile: a truncated profile.json is named in a warning before re-profiling", async () => {
  const draftDir = await draftCopy();
  const path = `${draftDir}/profile.json`;
  await Deno.writeTextFile(path, '{"version": 1, "entries": [{"key": {"adapter": "65541|');
  const folder = await openModelFolder(draftDir);
  const target = await openModelFolder(DEFAULT_TARGET_DIR);
  try {
    const lines: string[] = [];
    const pair = { targetFolder: target, draftFolder: folder, target: untouchable, draft: untouchable };
    await assert.rejects(
      loadOrMeasureCosts(untouchableGpu, pair, { cacheDir: null, log: (l) => lines.push(l) }),
      /measured/,
    );
    assert.ok(lines[0]?.startsWith(`warning: ${path}: not valid JSON`), lines.join("\n"));
    assert.match(lines[0], /re-measured/);
  } finally {
    folder.checkpoint.close();
    target.checkpoint.close();
  }
});

Deno.test("acceptance: held-out text belongs to the model, else the generic prompt set", async () => {
  const bundled = await heldoutSource(DEFAULT_TARGET_DIR);
  assert.equal(bundled.kind, "model");
  assert.match(bundled.path, /weights\/tiny\/heldout\.txt$/);
  const other = await heldoutSource(await draftCopy());
  assert.equal(other.kind, "generic");
  assert.match(other.path, /bench\/prompts\.json$/);
  assert.ok(other.passages.length >= 6);
});

Deno.test("acceptance: a draft's own heldout.txt comes first, whole prompts split at <|endofprompt|> lines", async () => {
  const dir = await Deno.makeTempDir({ prefix: "draft_heldout_" });
  try {
    const chat =
      "<|im_start|>user\nFix this:\n\nfirst paragraph\n\nsecond<|im_end|>\n<|im_start|>assistant\n";
    await Deno.writeTextFile(`${dir}/heldout.txt`, `${chat}\n<|endofprompt|>\nplain text prompt\n`);
    const src = await heldoutSource(DEFAULT_TARGET_DIR, dir);
    assert.equal(src.kind, "draft");
    assert.deepEqual(src.passages, [chat, "plain text prompt\n"], "blank lines inside a prompt stay in it");
    const target = await openModelFolder(DEFAULT_TARGET_DIR);
    try {
      // Whole prompts keep their end (where the answer starts).
      const [ids] = await acceptanceTexts(target, 1, 5, undefined, dir);
      assert.deepEqual(ids, target.tokenizer.encode(chat).slice(-5));
    } finally {
      target.checkpoint.close();
    }
    // Without the draft's file: the target's own held-out text, as before.
    assert.equal((await heldoutSource(DEFAULT_TARGET_DIR, `${dir}/missing`)).kind, "model");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
