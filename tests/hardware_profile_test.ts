import assert from "node:assert/strict";
import { loadOrMeasureCosts, profileKey } from "../src/runtime/hardware_profile.ts";
import type { Gpu } from "../src/gpu/device.ts";
import type { GpuLlama } from "../src/gpu/llama/model.ts";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import { SafetensorsModel } from "../src/model/safetensors.ts";
import { randomTensors, SMALL_CONFIG, smallConfig, writeModelFolder } from "./fixtures/random_model.ts";

// Whatever this file's code would cache goes to a fresh directory, never beside the bundled draft.
const CACHE = Deno.makeTempDirSync({ prefix: "specdec-cache-" });
Deno.env.set("SPECDEC_CACHE_DIR", CACHE);

/** A GPU whose only usable property is its adapter description; measuring on it fails the test. */
const adapter = (description: string) =>
  new Proxy({}, {
    get: (_, prop) => {
      if (prop === "adapter") {
        return { vendor: "v", architecture: "a", device: "d", description, isFallbackAdapter: false };
      }
      throw new Error("measured although a valid cached profile exists");
    },
  }) as Gpu;
/** A resident model that fails the test if anything tries to measure it (only its paging plan and weight types are read). */
const untouchable = new Proxy({}, {
  get: (_, prop) => {
    if (prop === "paging" || prop === "weightsDtype") return undefined;
    throw new Error("measured although a valid cached profile exists");
  },
}) as GpuLlama;

Deno.test("hardware profile: reused from cache; invalidated by adapter, Deno version or model changes", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "profile_" });
  // A private copy of the draft folder so the test does not touch the committed cache.
  await Deno.mkdir(`${dir}/draft`);
  for await (const e of Deno.readDir(DEFAULT_DRAFT_DIR)) {
    if (e.isFile && e.name !== "profile.json") {
      await Deno.copyFile(`${DEFAULT_DRAFT_DIR}/${e.name}`, `${dir}/draft/${e.name}`);
    }
  }
  const targetFolder = await openModelFolder(DEFAULT_TARGET_DIR);
  const draftFolder = await openModelFolder(`${dir}/draft`);
  const key = await profileKey(adapter("gpu A"), targetFolder, draftFolder);
  const costs = { sizes: [1, 2], target: [10, 12], draft: [1, 1.2], sync: 11, arTokensPerSubmission: 8 };
  await Deno.writeTextFile(
    `${dir}/draft/profile.json`,
    JSON.stringify({ version: 1, entries: [{ ...costs, key, measured_at: "then" }] }),
  );
  const pair = { targetFolder, draftFolder, target: untouchable, draft: untouchable };
  const hit = await loadOrMeasureCosts(adapter("gpu A"), pair);
  assert.equal(hit.cached, true);
  assert.deepEqual(hit.costs.target, [10, 12]);
  // Another adapter, or --reprofile: a measurement is attempted (and the untouchable models object).
  await assert.rejects(loadOrMeasureCosts(adapter("gpu B"), pair), /measured although/);
  await assert.rejects(loadOrMeasureCosts(adapter("gpu A"), pair, { reprofile: true }), /measured although/);
  // A paged target (its forward cost is dominated by streaming weights) is profiled on its own.
  const paged = new Proxy({}, {
    get: (_, prop) => {
      if (prop === "paging") return { residentLayers: 0, ringSlots: 2 };
      if (prop === "weightsDtype") return "q8_0";
      throw new Error("measured although a valid cached profile exists");
    },
  }) as GpuLlama;
  const pagedKey = await profileKey(adapter("gpu A"), targetFolder, draftFolder, paged);
  assert.equal(pagedKey.paging, "paged r0 s2");
  // A target loaded with --weights-dtype is another model to the profile (its t(n) differs).
  assert.ok(
    pagedKey.target.endsWith(" weights q8_0") && pagedKey.target.startsWith(key.target),
    pagedKey.target,
  );
  await assert.rejects(loadOrMeasureCosts(adapter("gpu A"), { ...pair, target: paged }), /measured although/);
  // A profile made under another Deno version is not reused.
  await Deno.writeTextFile(
    `${dir}/draft/profile.json`,
    JSON.stringify({
      version: 1,
      entries: [{ ...costs, key: { ...key, deno: "0.0.1" }, measured_at: "then" }],
    }),
  );
  await assert.rejects(loadOrMeasureCosts(adapter("gpu A"), pair), /measured although/);
  // Other weights give another key.
  const other = `${dir}/other`;
  await writeModelFolder(other, SMALL_CONFIG, randomTensors(smallConfig(), 3));
  const smallFolder = { ...draftFolder, dir: other, checkpoint: await SafetensorsModel.open(other) };
  const k3 = await profileKey(adapter("gpu A"), targetFolder, smallFolder);
  assert.notEqual(k3.draft, key.draft, "a different draft model changes the key");
  assert.equal(k3.target, key.target);
  targetFolder.checkpoint.close();
  draftFolder.checkpoint.close();
  smallFolder.checkpoint.close();
  // Nothing was measured, so nothing was cached.
  assert.deepEqual([...Deno.readDirSync(CACHE)], []);
  Deno.removeSync(CACHE);
});
