/**
 * The single binary (`deno task compile`): shaders and the default weights embedded, the WebGPU flag
 * baked in. `deno compile` downloads Deno's runtime (denort) from Deno's release host, which machines
 * without that network cannot reach; so everything up to that step is tested here on its own:
 *
 * 1. every asset the code locates relative to its own module (`new URL(..., import.meta.url)`) lies
 *    inside what the compile task embeds (`--include`);
 * 2. the compiled layout: exactly the module graph plus the included folders, copied elsewhere and run
 *    from another working directory with writes into it denied (an embedded file system is read-only),
 *    serves a generation on the GPU (shaders and weights found);
 * 3. `deno compile` itself: when it succeeds the binary must serve; it is skipped only when the runtime
 *    download is what failed (recognised in deno compile's stderr); any other failure fails.
 */
import assert from "node:assert/strict";
import { spawnServer } from "./fixtures/server_process.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
const TASK: string = config.tasks.compile;
const ARGS = TASK.split(/\s+/).slice(2); // after "deno compile"
const INCLUDES = ARGS.flatMap((a, i) => ARGS[i - 1] === "--include" ? [a.replace(/\/$/, "")] : []);
const ENTRY = ARGS.at(-1)!;

/**
 * Local files `deno compile` puts into the binary: the module graph of the entry point and of every
 * included module (a worker's entry is included with its own imports).
 */
async function moduleGraph(): Promise<string[]> {
  const entries = [ENTRY, ...INCLUDES.filter((i) => i.endsWith(".ts"))];
  const all = new Set<string>();
  for (const e of entries) for (const f of await graphOf(e)) all.add(f);
  return [...all];
}

async function graphOf(entry: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout));
  return info.modules.map((m: { specifier: string }) => m.specifier)
    .filter((s: string) => s.startsWith("file://"))
    .map((s: string) => new URL(s).pathname.slice(ROOT.length + 1));
}

async function* walk(dir: string): AsyncGenerator<string> {
  if ((await Deno.stat(dir)).isFile) { // an --include may name one file
    yield dir;
    return;
  }
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walk(p);
    else if (e.isFile) yield p;
  }
}

Deno.test("compile: the task embeds the shaders and the default weights, with the WebGPU flag", async () => {
  assert.ok(ARGS.includes("--unstable-webgpu"), TASK);
  assert.ok(INCLUDES.includes("shaders") && INCLUDES.includes("weights/tiny"), TASK);
  assert.equal(ENTRY, "src/main.ts");
  for (const inc of INCLUDES) {
    const st = await Deno.stat(`${ROOT}/${inc}`);
    assert.ok(st.isDirectory || st.isFile, `${inc} exists`);
  }
  // Every asset located relative to a module (not an import) must be embedded.
  const assetRef = /new URL\(\s*[`"']([^`"']+)[`"']\s*,\s*import\.meta\.url\s*\)/g;
  const found: string[] = [];
  for await (const file of walk(`${ROOT}/src`)) {
    if (!file.endsWith(".ts")) continue;
    const src = await Deno.readTextFile(file);
    for (const m of src.matchAll(assetRef)) {
      // A template literal names a folder and a variable file (`../../shaders/${name}.wgsl`): check the folder.
      const t = m[1].indexOf("${");
      const rel = t < 0 ? m[1] : m[1].slice(0, t).replace(/[^/]*$/, "");
      const target = new URL(rel, `file://${file}`).pathname.slice(ROOT.length + 1).replace(/\/$/, "");
      if (target.endsWith(".ts")) continue;
      found.push(target);
      assert.ok(
        INCLUDES.some((inc) => target === inc || target.startsWith(`${inc}/`)),
        `${file.slice(ROOT.length + 1)} reads ${target}, which the compile task does not --include`,
      );
    }
  }
  // A worker's entry is no import either: deno compile embeds it (and its graph) only when included.
  const workerRef = /new Worker\(\s*new URL\(\s*[`"']([^`"']+)[`"']\s*,\s*import\.meta\.url\s*\)/g;
  const workers: string[] = [];
  for await (const file of walk(`${ROOT}/src`)) {
    if (!file.endsWith(".ts")) continue;
    for (const m of (await Deno.readTextFile(file)).matchAll(workerRef)) {
      const target = new URL(m[1], `file://${file}`).pathname.slice(ROOT.length + 1);
      workers.push(target);
      assert.ok(
        INCLUDES.includes(target),
        `${file.slice(ROOT.length + 1)} starts worker ${target}: --include it`,
      );
    }
  }
  assert.ok(workers.includes("src/server/engine_worker.ts"), `workers found: ${workers}`);
  assert.ok(workers.includes("src/wasm/thread_worker.ts"), `workers found: ${workers}`);
  assert.ok(found.includes("src/wasm/kernels/llama.wasm"), `wasm kernels lookup found: ${found}`);
  assert.ok(found.some((f) => f.startsWith("shaders")), `shader lookup found: ${found}`);
  assert.ok(found.some((f) => f.startsWith("weights/tiny")), `weights lookup found: ${found}`);
});

/** Start `cmd serve --port 0 ...` and return its URL, or throw with its log. */
function serve(cmd: string, args: string[], cwd: string) {
  return spawnServer(cmd, args, { cwd, env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" } });
}

async function generates(url: string): Promise<void> {
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    body: JSON.stringify({ prompt: "And God said", max_tokens: 4, temperature: 0 }),
  });
  const j = await res.json();
  assert.equal(res.status, 200, JSON.stringify(j));
  assert.equal(j.usage.completion_tokens, 4);
}

Deno.test("compile: the compiled layout (module graph + includes only, read-only) serves (default backend: auto)", async () => {
  const stage = await Deno.makeTempDir({ prefix: "specdec-layout-" });
  const elsewhere = await Deno.makeTempDir({ prefix: "specdec-cwd-" });
  try {
    for (const rel of [...await moduleGraph(), "deno.json", "deno.lock"]) {
      await Deno.mkdir(`${stage}/${rel}`.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.copyFile(`${ROOT}/${rel}`, `${stage}/${rel}`);
    }
    for (const inc of INCLUDES) {
      for await (const f of walk(`${ROOT}/${inc}`)) {
        const rel = f.slice(ROOT.length + 1);
        await Deno.mkdir(`${stage}/${rel}`.replace(/\/[^/]*$/, ""), { recursive: true });
        await Deno.copyFile(f, `${stage}/${rel}`);
      }
    }
    // npm packages are embedded by deno compile too; share the installed ones.
    await Deno.symlink(`${ROOT}/node_modules`, `${stage}/node_modules`);
    const s = await serve(Deno.execPath(), [
      "run",
      "-A",
      `--deny-write=${stage}`,
      `--config=${stage}/deno.json`,
      `${stage}/src/main.ts`,
      "serve",
      "--port",
      "0",
    ], elsewhere);
    try {
      assert.match(
        s.log(),
        new RegExp(`target ${stage}/weights/tiny/target`),
        "weights come from the layout",
      );
      await generates(s.url);
    } finally {
      assert.equal(await s.stop(), 0, s.log());
    }
  } finally {
    await Deno.remove(stage, { recursive: true });
    await Deno.remove(elsewhere, { recursive: true });
  }
});

// Run the real compile once, before registering the test, so a blocked runtime download can mark it
// skipped (Deno.test has no run-time skip).
const outDir = await Deno.makeTempDir({ prefix: "specdec-bin-" });
const binary = `${outDir}/specdec`;
const compileArgs = ARGS.map((a, i) => ARGS[i - 1] === "-o" ? binary : a);
const compiled = await new Deno.Command(Deno.execPath(), {
  args: ["compile", ...compileArgs],
  cwd: ROOT,
  stdout: "piped",
  stderr: "piped",
  env: { NO_COLOR: "1" },
}).output();
const compileLog = new TextDecoder().decode(compiled.stderr) + new TextDecoder().decode(compiled.stdout);

/**
 * True when deno compile failed fetching its base runtime (denort) over the network, and for no other
 * reason: the error chain names the base-binary setup, the denort archive, and a network failure.
 */
function runtimeDownloadFailed(stderr: string): boolean {
  return /Setting up base binary/.test(stderr) && /denort[^\s)]*\.zip/.test(stderr) &&
    /error sending request|dns error|Connection refused|timed out|certificate|Connect\)|status code|could not be found/i
      .test(stderr);
}

const blocked = compiled.code !== 0 && runtimeDownloadFailed(compileLog);
if (blocked) await Deno.remove(outDir, { recursive: true });

Deno.test({
  name: blocked
    ? "compile: deno task compile builds a serving binary (skipped: the denort runtime download failed, no network)"
    : "compile: deno task compile builds a serving binary",
  ignore: blocked,
  fn: async () => {
    try {
      assert.equal(compiled.code, 0, `deno compile failed:\n${compileLog}`);
      const s = await serve(binary, ["serve", "--port", "0"], outDir);
      try {
        await generates(s.url);
      } finally {
        assert.equal(await s.stop(), 0, s.log());
      }
    } finally {
      await Deno.remove(outDir, { recursive: true });
    }
  },
});

Deno.test("compile: the download-failure check recognises only a failed runtime download", () => {
  const chain = (cause: string) =>
    `Download https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip\n` +
    `error: Writing deno compile executable to temporary file 'bin/specdec.tmp'\n\nCaused by:\n` +
    `    0: Setting up base binary.\n    1: ${cause}`;
  assert.ok(runtimeDownloadFailed(chain(
    "error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error (Connect): dns error",
  )));
  assert.ok(
    !runtimeDownloadFailed("error: TS2322 [ERROR]: Type 'string' is not assignable to type 'number'."),
  );
  assert.ok(!runtimeDownloadFailed('error: Module not found "file:///work/main/src/nope.ts".'));
  assert.ok(
    !runtimeDownloadFailed(chain("Permission denied (os error 13)")),
    "a local failure is not a download",
  );
});
