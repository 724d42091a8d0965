/**
 * The committed kernels are what the source builds to: `bash scripts/build_wasm.sh <tmp>/llama.wasm`
 * (Debian 12's clang-14 and lld-14, reproducible) reproduces src/wasm/kernels/llama.wasm byte for byte,
 * so a kernel change cannot ship without its rebuild (or a rebuild without its source). Ignored, with the
 * reason in its name, where the toolchain is absent (CI installs clang-14 and lld-14).
 */
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url).pathname;
const COMMITTED = `${root}src/wasm/kernels/llama.wasm`;

/** Whether an executable `name` is in a directory of PATH. */
function onPath(name: string): boolean {
  return (Deno.env.get("PATH") ?? "").split(":").filter(Boolean).some((dir) => {
    try {
      const s = Deno.statSync(`${dir}/${name}`);
      return s.isFile && ((s.mode ?? 0o111) & 0o111) !== 0;
    } catch {
      return false;
    }
  });
}

const missing = ["clang-14", "wasm-ld-14"].filter((t) => !onPath(t));

Deno.test({
  name: "wasm build: scripts/build_wasm.sh reproduces the committed llama.wasm byte for byte" +
    (missing.length
      ? ` (ignored: ${missing.join(", ")} not on PATH; apt-get install -y clang-14 lld-14)`
      : ""),
  ignore: missing.length > 0,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "wasm_build_" });
    try {
      const out = `${dir}/llama.wasm`;
      const r = await new Deno.Command("bash", {
        args: [`${root}scripts/build_wasm.sh`, out],
        cwd: root,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const td = new TextDecoder();
      assert.equal(
        r.code,
        0,
        `scripts/build_wasm.sh exited with ${r.code}:\n${td.decode(r.stdout)}${td.decode(r.stderr)}`,
      );
      const built = await Deno.readFile(out), committed = await Deno.readFile(COMMITTED);
      let at = 0;
      while (at < built.length && at < committed.length && built[at] === committed[at]) at++;
      assert.ok(
        at === built.length && at === committed.length,
        `src/wasm/kernels/llama.wasm (${committed.length} bytes) is not what src/wasm/kernels/llama.c ` +
          `builds to (${built.length} bytes, first difference at byte ${at}): run \`bash scripts/build_wasm.sh\` ` +
          `and commit src/wasm/kernels/llama.wasm`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
