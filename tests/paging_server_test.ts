/**
 * A server whose target is paged from disk: when the checkpoint is truncated mid-run, the request that
 * needs the missing bytes fails with a 503 (the server log names the file), the server stays healthy and answers other
 * requests, and once the file is back generation resumes with the same output as before.
 */
import assert from "node:assert/strict";
import { createApp, localService } from "../src/server/app.ts";
import { Gpu } from "../src/gpu/device.ts";
import { GpuLlama } from "../src/gpu/llama/model.ts";
import { minPagedBudget } from "../src/gpu/paging/plan.ts";
import { DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";

Deno.test("paged server: a checkpoint truncated on disk fails one request (503), the server keeps serving", async () => {
  const dir = await Deno.makeTempDir({ prefix: "paged_server_" });
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]) {
    await Deno.copyFile(`${DEFAULT_TARGET_DIR}/${f}`, `${dir}/${f}`);
  }
  const folder = await openModelFolder(dir);
  const gpu = await Gpu.acquire();
  const model = await GpuLlama.load(gpu, folder, {
    gpuMemoryBudget: minPagedBudget(folder.checkpoint, folder.config),
    hostMemoryBudget: 0, // every refill reads the file
    maxBatch: 32,
  });
  const app = createApp(localService({ name: "paged", model, tokenizer: folder.tokenizer }));
  const generate = (prompt: string) =>
    app.request("/v1/generate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt, max_tokens: 12, temperature: 0 }),
    });
  const file = `${dir}/model.safetensors`;
  const good = await Deno.readFile(file);
  try {
    const before = await generate("And God said");
    assert.equal(before.status, 200);
    const want = (await before.json()).text;
    await Deno.truncate(file, good.byteLength - 4096);
    const broken = await generate("And God said");
    assert.equal(broken.status, 503);
    const err = await broken.json();
    assert.equal(err.error.code, "weights_unavailable");
    assert.match(err.error.message, /could not be read from disk/);
    assert.ok(!err.error.message.includes(dir), "no file paths in answers");
    assert.equal((await app.request("/health")).status, 200);
    // Other requests are still answered (and fail cleanly while the file stays broken).
    assert.equal((await app.request("/v1/models")).status, 200);
    await Deno.writeFile(file, good);
    const after = await generate("And God said");
    assert.equal(after.status, 200);
    assert.equal((await after.json()).text, want);
  } finally {
    model.dispose();
    folder.checkpoint.close();
    await Deno.remove(dir, { recursive: true });
  }
});
