/**
 * deploy/Containerfile, checked without a container engine:
 *
 * 1. static checks on its parse (dockerfile-ast): pinned Debian bases, COPY sources present in the repo and
 *    not excluded by .dockerignore, `COPY --from` naming earlier stages, the runtime contract of both final
 *    images (user 10001, tini, CMD `serve --host 0.0.0.0 --port 8000`, HEALTHCHECK, EXPOSE, ENV and the
 *    cache directory it creates), Deno's version = .ci/run's, the `binary` stage compiling with deno.json's
 *    compile task and the default build not depending on it;
 * 2. dockerfilelint (an old linter) reports nothing but its two documented false positives;
 * 3. the runtime behaviour the image relies on: the tree the Containerfile COPYs, with its `deno` build
 *    steps run offline, made read-only, serves with the ENTRYPOINT's flags and writes nothing into itself;
 * 4. the checker itself catches a missing or .dockerignore'd COPY source and an unknown `--from` stage.
 */
import assert from "node:assert/strict";
import { DockerfileParser, type Instruction, JSONInstruction } from "dockerfile-ast";
import { run as dockerfilelint } from "dockerfilelint";
import { spawnServer } from "./fixtures/server_process.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const CONTAINERFILE = `${ROOT}/deploy/Containerfile`;
const TEXT = Deno.readTextFileSync(CONTAINERFILE);
const IGNORE = Deno.readTextFileSync(`${ROOT}/.dockerignore`);
const CONTEXT: CheckContext = {
  root: ROOT,
  ignore: IGNORE,
  ci: Deno.readTextFileSync(`${ROOT}/.ci/run`),
  denoJson: JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)),
};
/** The uid/gid the Kubernetes manifests run the image as. */
const UID = "10001";
/** Where the image keeps its source tree. */
const APP = "/app";

// ---------------------------------------------------------------------------------------------------------
// .dockerignore

/** One .dockerignore pattern as a regular expression over slash-separated context paths. */
function patternRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*" && pattern[i + 1] === "*") {
      // `**` spans any number of directories, none included ("**/x" matches "x")
      i++;
      if (pattern[i + 1] === "/") {
        i++;
        re += "(?:.*/)?";
      } else re += ".*";
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/**
 * A matcher for the subset of .dockerignore syntax this repository uses (Docker's rules: `#` comments,
 * paths relative to the context root, `*`, `?`, `**`, `!` re-includes, the last matching pattern wins, a
 * pattern that matches a directory excludes everything under it).
 */
export function dockerignoreMatcher(text: string): (path: string) => boolean {
  const rules = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#")).map((l) => {
    const negate = l.startsWith("!");
    const p = (negate ? l.slice(1) : l).trim().replace(/^(\.?\/)+/, "").replace(/\/+$/, "");
    return { negate, re: patternRegExp(p) };
  });
  return (path) => {
    const parts = path.replace(/^(\.?\/)+/, "").replace(/\/+$/, "").split("/");
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const r of rules) {
      if (prefixes.some((p) => r.re.test(p))) excluded = !r.negate;
    }
    return excluded;
  };
}

// ---------------------------------------------------------------------------------------------------------
// The Containerfile's stages

interface Stage {
  index: number;
  name?: string;
  /** The FROM image, or the earlier stage it builds on. */
  base: string;
  parent?: Stage;
  /** Instructions after the FROM. */
  body: Instruction[];
  /** 0-based line of the FROM. */
  line: number;
}

function parseStages(text: string): Stage[] {
  const stages: Stage[] = [];
  for (const ins of DockerfileParser.parse(text).getInstructions()) {
    const keyword = ins.getKeyword();
    if (keyword === "FROM") {
      const args = ins.getArguments().map((a) => a.getValue());
      const as = args.findIndex((a) => a.toLowerCase() === "as");
      const name = as >= 0 ? args[as + 1] : undefined;
      const base = args.filter((a) => !a.startsWith("--"))[0];
      const parent = stages.find((s) => s.name === base);
      stages.push({ index: stages.length, name, base, parent, body: [], line: ins.getRange().start.line });
    } else if (stages.length) stages.at(-1)!.body.push(ins);
  }
  return stages;
}

/** The stage and its ancestors, base first. */
function chain(stage: Stage): Stage[] {
  return stage.parent ? [...chain(stage.parent), stage] : [stage];
}

/** Instructions of `keyword` in effect for a stage (its ancestors' first). */
function instructions(stage: Stage, keyword: string): Instruction[] {
  return chain(stage).flatMap((s) => s.body.filter((i) => i.getKeyword() === keyword));
}

function last(stage: Stage, keyword: string): Instruction | undefined {
  return instructions(stage, keyword).at(-1);
}

/** Expand $VAR and ${VAR} from `env` (unknown variables are left as they are). */
function expand(s: string, env: Record<string, string>): string {
  return s.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a, b) => env[a ?? b] ?? m);
}

/** The ENV of a stage (ancestors included), values expanded as the builder does. */
function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of instructions(stage, "ENV")) {
    for (
      const p of (ins as unknown as { getProperties(): { getName(): string; getValue(): string | null }[] })
        .getProperties()
    ) {
      env[p.getName()] = expand((p.getValue() ?? "").replace(/^"(.*)"$/, "$1"), env);
    }
  }
  return env;
}

/** The strings of an exec-form (JSON) instruction, or undefined for the shell form. */
function execForm(ins: Instruction | undefined): string[] | undefined {
  if (!(ins instanceof JSONInstruction)) return undefined;
  const strings = ins.getJSONStrings().map((s) => s.getJSONValue());
  return strings.length ? strings : undefined;
}

/** The text of a RUN (continuations joined), `&&`-separated commands split apart. */
function runCommands(ins: Instruction): string[] {
  return (ins.getRawArgumentsContent() ?? "").replace(/\\\n/g, " ").split(/&&|;/).map((c) =>
    c.replace(/\s+/g, " ").trim()
  ).filter(Boolean);
}

function flagValue(ins: Instruction, name: string): string | undefined {
  const flags = (ins as unknown as { getFlags?(): { getName(): string; getValue(): string | null }[] })
    .getFlags?.() ?? [];
  return flags.find((f) => f.getName() === name)?.getValue() ?? undefined;
}

/** Source and destination arguments of a COPY/ADD (flags dropped). */
function copyArgs(ins: Instruction): { sources: string[]; dest: string } {
  const args = (execForm(ins) ?? ins.getArguments().map((a) => a.getValue())).filter((a) =>
    !a.startsWith("--")
  );
  return { sources: args.slice(0, -1), dest: args.at(-1)! };
}

/** Stages a stage needs built: its ancestors and every stage it copies from, transitively. */
function dependencies(stage: Stage, stages: Stage[]): Set<Stage> {
  const seen = new Set<Stage>();
  const visit = (s: Stage) => {
    if (seen.has(s)) return;
    seen.add(s);
    if (s.parent) visit(s.parent);
    for (const ins of s.body.filter((i) => i.getKeyword() === "COPY" || i.getKeyword() === "ADD")) {
      const from = flagValue(ins, "from");
      const dep = stages.find((t) => t.name === from);
      if (dep) visit(dep);
    }
  };
  visit(stage);
  return seen;
}

interface CheckContext {
  root: string;
  /** The text of .dockerignore. */
  ignore: string;
  /** The text of .ci/run. */
  ci: string;
  denoJson: { tasks: Record<string, string> };
}

/** What is wrong with a Containerfile (empty when nothing is). */
export function checkContainerfile(text: string, ctx: CheckContext): string[] {
  const problems: string[] = [];
  const stages = parseStages(text);
  if (!stages.length) return ["no FROM"];
  const ignored = dockerignoreMatcher(ctx.ignore);
  const at = (ins: Instruction) => `line ${ins.getRange().start.line + 1}`;

  // FROM: a pinned debian:bookworm tag (a digest allowed on top) or an earlier stage.
  for (const s of stages) {
    if (s.parent) continue;
    if (stages.some((t) => t.name === s.base)) {
      problems.push(`FROM ${s.base} (line ${s.line + 1}) names a stage defined later`);
    } else if (!/^debian:bookworm(-[a-z0-9.]+)*(@sha256:[0-9a-f]{64})?$/.test(s.base)) {
      problems.push(`FROM ${s.base} (line ${s.line + 1}): not a pinned debian:bookworm* tag`);
    }
  }

  // COPY/ADD: --from names an earlier stage; context sources exist and are not .dockerignore'd.
  for (const s of stages) {
    for (const ins of s.body.filter((i) => i.getKeyword() === "COPY" || i.getKeyword() === "ADD")) {
      const from = flagValue(ins, "from");
      if (from !== undefined) {
        const dep = stages.find((t) => t.name === from);
        if (!dep || dep.index >= s.index) problems.push(`${at(ins)}: COPY --from=${from}: no earlier stage`);
        continue;
      }
      for (const src of copyArgs(ins).sources) {
        if (/^[a-z]+:\/\//.test(src) || /[*?[]/.test(src)) {
          problems.push(`${at(ins)}: ${src}: URLs and globs are not checked; name paths`);
          continue;
        }
        const rel = src.replace(/^(\.\/)+/, "").replace(/\/+$/, "");
        let info: Deno.FileInfo;
        try {
          info = Deno.statSync(`${ctx.root}/${rel}`);
        } catch {
          problems.push(`${at(ins)}: COPY source ${src} does not exist`);
          continue;
        }
        if (ignored(rel)) problems.push(`${at(ins)}: COPY source ${src} is excluded by .dockerignore`);
        else if (info.isDirectory) {
          const dropped = walkFiles(`${ctx.root}/${rel}`).map((f) => f.slice(ctx.root.length + 1)).filter(
            ignored,
          );
          if (dropped.length) {
            problems.push(
              `${at(ins)}: .dockerignore drops ${dropped.length} file(s) of ${src}: ${dropped[0]}`,
            );
          }
        }
      }
    }
  }

  // Deno: the version .ci/run installs.
  const ciDeno = ctx.ci.match(/deno@(\d+\.\d+\.\d+)/)?.[1];
  const installs = stages.flatMap((s) => s.body.filter((i) => i.getKeyword() === "RUN")).flatMap(runCommands)
    .flatMap((c) => [...c.matchAll(/npm install -g deno@(\S+)/g)].map((m) => m[1]));
  if (!ciDeno) problems.push(".ci/run installs no deno@X.Y.Z");
  if (installs.length !== 1 || installs[0] !== ciDeno) {
    problems.push(`deno installed: ${installs.join(", ") || "none"}; .ci/run: deno@${ciDeno}`);
  }

  // Both final images: the runtime contract.
  const app = stages.at(-1)!;
  const binary = stages.find((s) => s.name === "binary");
  if (!binary) problems.push("no stage `binary`");
  for (const s of [app, ...binary && binary !== app ? [binary] : []]) {
    const where = `stage ${s.name ?? s.index}`;
    const env = envOf(s);
    const user = last(s, "USER")?.getArgumentsContent()?.trim();
    const useradd = instructions(s, "RUN").flatMap(runCommands).some((c) =>
      /useradd\b/.test(c) && c.includes(`--uid ${UID}`) && /\bspecdec$/.test(c)
    );
    if (!(user === UID || user === `${UID}:${UID}` || (user?.split(":")[0] === "specdec" && useradd))) {
      problems.push(`${where}: USER ${user ?? "(none)"}, want ${UID}`);
    }
    const health = last(s, "HEALTHCHECK")?.getArgumentsContent() ?? "";
    if (!health.includes("http://127.0.0.1:8000/health")) {
      problems.push(`${where}: no HEALTHCHECK on http://127.0.0.1:8000/health`);
    }
    if (!instructions(s, "EXPOSE").some((i) => i.getArguments().some((a) => a.getValue() === "8000"))) {
      problems.push(`${where}: no EXPOSE 8000`);
    }
    const entry = execForm(last(s, "ENTRYPOINT"));
    if (!entry || !/(^|\/)tini$/.test(entry[0]) || entry[1] !== "--") {
      problems.push(`${where}: ENTRYPOINT is not exec-form ["…tini", "--", …]: ${entry}`);
    }
    const cmd = execForm(last(s, "CMD"));
    const arg = (flag: string) => cmd?.[cmd.indexOf(flag) + 1];
    if (!cmd?.includes("serve") || arg("--host") !== "0.0.0.0" || arg("--port") !== "8000") {
      problems.push(`${where}: CMD is not exec-form serve --host 0.0.0.0 --port 8000: ${cmd}`);
    }
    const cache = env.SPECDEC_CACHE_DIR;
    const made = instructions(s, "RUN").flatMap(runCommands).map((c) => expand(c, env).replaceAll('"', ""));
    if (!cache) problems.push(`${where}: no ENV SPECDEC_CACHE_DIR`);
    else if (
      !made.some((c) => c.startsWith("mkdir -p ") && c.split(" ").includes(cache)) ||
      !made.some((c) => c === `chown ${UID}:${UID} ${cache}`)
    ) problems.push(`${where}: SPECDEC_CACHE_DIR ${cache} is not created and chowned to ${UID}:${UID}`);
    if (env.PORT !== "8000") problems.push(`${where}: ENV PORT=${env.PORT}, want 8000`);
    if (
      env.NVIDIA_VISIBLE_DEVICES !== "all" || !env.NVIDIA_DRIVER_CAPABILITIES?.split(",").includes("graphics")
    ) {
      problems.push(
        `${where}: NVIDIA_VISIBLE_DEVICES=all and NVIDIA_DRIVER_CAPABILITIES with graphics needed`,
      );
    }
    if (last(s, "WORKDIR")?.getArgumentsContent()?.trim() !== APP) {
      problems.push(`${where}: WORKDIR not ${APP}`);
    }
  }
  if (!execForm(last(app, "ENTRYPOINT"))?.includes("--cached-only")) {
    problems.push("the default image must run with --cached-only (no fetch at runtime)");
  }

  // The compile: `binary` needs a stage running `deno task compile`; the default image must not.
  if (!ctx.denoJson.tasks.compile) problems.push("deno.json has no compile task");
  const compiles = (s: Stage) =>
    s.body.some((i) => i.getKeyword() === "RUN" && runCommands(i).includes("deno task compile"));
  if (binary && ![...dependencies(binary, stages)].some(compiles)) {
    problems.push("stage binary does not depend on a `deno task compile`");
  }
  if ([...dependencies(app, stages)].some(compiles)) problems.push("the default build runs the compile");
  return problems;
}

function walkFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...walkFiles(p));
    else out.push(p);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// 1, 2: static checks and dockerfilelint

Deno.test("Containerfile: stages, COPY sources, runtime contract, Deno version, binary target", () => {
  assert.deepEqual(checkContainerfile(TEXT, CONTEXT), []);
  const stages = parseStages(TEXT);
  assert.equal(stages.at(-1)!.name, "app");
  assert.ok(stages.findIndex((s) => s.name === "binary") < stages.length - 1);
  // The optional model fetch: off by default, and it runs the models task's own command.
  const models = stages.find((s) => s.name === "models")!;
  assert.equal(last(models, "ARG")?.getArgumentsContent(), "WITH_SMOLLM2=0");
  assert.ok(
    models.body.some((i) =>
      i.getKeyword() === "RUN" && runCommands(i).includes(CONTEXT.denoJson.tasks.models)
    ),
  );
});

Deno.test("Containerfile: dockerfilelint finds nothing but its documented false positives", () => {
  const stages = parseStages(TEXT);
  const lines = TEXT.split("\n");
  const items = dockerfilelint(`${ROOT}/deploy`, TEXT); // no .dockerfilelintrc there: every rule is on
  const unexplained = items.filter((item) => {
    const line = lines[item.line - 1] ?? "";
    // 1.8.0 predates multi-stage builds in this rule: `FROM deps AS tree` has no tag because `deps` is
    // an earlier stage, not an image.
    if (item.rule === "missing_tag") return !stages.some((s) => s.line === item.line - 1 && s.parent);
    // Its HEALTHCHECK option scan matches `--\w+`, which cuts `--start-period` (Docker 17.05+) to
    // `--start` and calls it unknown. Accepted only on that line, and only for that option.
    if (item.rule === "invalid_format") {
      return !(line.startsWith("HEALTHCHECK ") && line.includes("--start-period="));
    }
    return true;
  });
  assert.deepEqual(unexplained, []);
});

// ---------------------------------------------------------------------------------------------------------
// 3: the read-only tree

/** Every path under `dir` with its size, mtime and mode: what a write would change. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      const p = `${d}/${e.name}`;
      const st = Deno.lstatSync(p);
      out.set(p.slice(dir.length), `${st.size} ${st.mtime?.getTime()} ${st.mode}`);
      if (e.isDirectory) visit(p);
    }
  };
  visit(dir);
  return out;
}

async function sh(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  const out = await new Deno.Command(cmd, { args, ...opts, stdout: "piped", stderr: "piped" }).output();
  const td = new TextDecoder();
  assert.equal(out.code, 0, `${cmd} ${args.join(" ")}:\n${td.decode(out.stdout)}${td.decode(out.stderr)}`);
}

/** Any proxy traffic goes nowhere: a download would fail, so success proves the step ran offline. */
const NO_NETWORK = { HTTPS_PROXY: "http://127.0.0.1:9", HTTP_PROXY: "http://127.0.0.1:9", NO_PROXY: "" };

Deno.test({
  name:
    "Containerfile: the COPYed tree, built offline and made read-only, serves with the ENTRYPOINT's flags",
}, async () => {
  const stages = parseStages(TEXT);
  const app = stages.at(-1)!;
  // The stage /app comes from, and the chain of stages that built it.
  const appCopy = app.body.find((i) => i.getKeyword() === "COPY" && copyArgs(i).dest === APP)!;
  const builder = chain(stages.find((s) => s.name === flagValue(appCopy, "from"))!);
  const tmp = Deno.makeTempDirSync({ prefix: "specdec-container-" });
  const tree = `${tmp}/app`;
  const mapPath = (p: string) => p === APP || p.startsWith(`${APP}/`) ? tree + p.slice(APP.length) : p;
  const asRoot = Deno.uid() === 0;
  try {
    // The context COPYs of the chain, relative to its WORKDIR /app.
    Deno.mkdirSync(tree);
    for (const ins of builder.flatMap((s) => s.body.filter((i) => i.getKeyword() === "COPY"))) {
      if (flagValue(ins, "from") !== undefined) continue;
      const { sources, dest } = copyArgs(ins);
      const into = dest.startsWith("/") ? mapPath(dest) : `${tree}/${dest.replace(/^\.\//, "")}`;
      for (const src of sources) {
        const target = dest.endsWith("/") ? `${into}${src.split("/").at(-1)}` : into;
        Deno.mkdirSync(target.slice(0, target.lastIndexOf("/")), { recursive: true });
        await sh("cp", ["-R", `${ROOT}/${src}`, target]);
      }
    }
    // The chain's `deno ...` build steps, with its ENV (DENO_DIR inside the tree). Offline: Deno's npm
    // cache on this machine stands in for the registry, linked in as DENO_DIR/npm.
    const buildEnv = Object.fromEntries(
      Object.entries(envOf(builder.at(-1)!)).map(([k, v]) => [k, mapPath(v)]),
    );
    const denoDir = buildEnv.DENO_DIR;
    assert.ok(denoDir?.startsWith(tree), `DENO_DIR ${denoDir} must lie inside ${APP}`);
    const info = new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
      .outputSync();
    const npmCache: string = JSON.parse(new TextDecoder().decode(info.stdout)).npmCache;
    Deno.mkdirSync(denoDir, { recursive: true });
    Deno.symlinkSync(npmCache, `${denoDir}/npm`);
    const steps = builder.flatMap((s) => s.body.filter((i) => i.getKeyword() === "RUN")).flatMap(runCommands)
      .filter((c) => c.startsWith("deno ") && !c.startsWith("deno task compile"));
    assert.ok(steps.some((c) => c.startsWith("deno install ")), `no deno install in ${steps}`);
    for (const step of steps) {
      const args = step.replace(/\s*[12]?>\s*\/dev\/null/g, "").split(" ").slice(1);
      await sh(Deno.execPath(), [...args], { cwd: tree, env: { ...buildEnv, ...NO_NETWORK } });
    }
    // The tree stage drops the download cache; node_modules/ then holds hard links into this machine's
    // npm cache, which the chmod below must not touch: give its files their own copies.
    Deno.removeSync(`${denoDir}/npm`);
    await sh("cp", ["-a", `${tree}/node_modules`, `${tree}/node_modules.copy`]);
    Deno.removeSync(`${tree}/node_modules`, { recursive: true });
    Deno.renameSync(`${tree}/node_modules.copy`, `${tree}/node_modules`);

    // Read-only, like /app for uid 10001: root-owned there; here chmod a-w, and as root (which ignores
    // modes) the server runs as nobody (65534) through setpriv.
    const cacheDir = `${tmp}/cache`;
    const runtimeDir = `${tmp}/xdg`;
    Deno.mkdirSync(cacheDir);
    Deno.mkdirSync(runtimeDir, { mode: 0o700 });
    await sh("chmod", ["-R", "a-w", tree]);
    if (asRoot) {
      Deno.chmodSync(tmp, 0o755);
      Deno.chownSync(cacheDir, 65534, 65534);
      Deno.chownSync(runtimeDir, 65534, 65534);
    }
    const before = snapshot(tree);

    // The ENTRYPOINT after tini and CMD, on a free local port.
    const entry = execForm(last(app, "ENTRYPOINT"))!.slice(2);
    const cmd = execForm(last(app, "CMD"))!.map((a, i, all) =>
      all[i - 1] === "--port" ? "0" : all[i - 1] === "--host" ? "127.0.0.1" : a
    );
    assert.equal(entry[0], "deno");
    const runEnv = Object.fromEntries(Object.entries(envOf(app)).map(([k, v]) => [k, mapPath(v)]));
    const env = {
      ...runEnv,
      ...NO_NETWORK,
      SPECDEC_CACHE_DIR: cacheDir,
      XDG_RUNTIME_DIR: runtimeDir,
      HOME: "/nonexistent",
      NO_COLOR: "1",
    };
    const argv = [Deno.execPath(), ...entry.slice(1), ...cmd];
    const server = asRoot
      ? await spawnServer("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", ...argv], {
        cwd: tree,
        env,
      })
      : await spawnServer(argv[0], argv.slice(1), { cwd: tree, env });
    let code: number;
    try {
      const health = await fetch(`${server.url}/health`);
      assert.equal(health.status, 200, await health.text());
      // One short generation: tokenizer, shaders and weights all read from the read-only tree.
      const gen = await fetch(`${server.url}/v1/generate`, {
        method: "POST",
        body: JSON.stringify({ prompt: "And God said", max_tokens: 4, temperature: 0 }),
      });
      const body = await gen.text();
      assert.equal(gen.status, 200, body);
      assert.equal(typeof JSON.parse(body).text, "string", body);
    } finally {
      code = await server.stop("SIGTERM");
    }
    assert.equal(code, 0, server.log());
    assert.match(server.log(), /listening on http:\/\//);
    const after = snapshot(tree);
    const changed = [...new Set([...before.keys(), ...after.keys()])].filter((p) =>
      before.get(p) !== after.get(p)
    );
    assert.deepEqual(changed, [], "the server wrote into its tree");
  } finally {
    await new Deno.Command("chmod", { args: ["-R", "u+w", tmp] }).output();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
});

// ---------------------------------------------------------------------------------------------------------
// 4: the checker catches what it should

Deno.test("Containerfile checker: a missing or ignored COPY source and an unknown stage are caught", () => {
  const missing = TEXT.replace("COPY bench/prompts.json ", "COPY bench/no_such_prompts.json ");
  assert.notEqual(missing, TEXT);
  assert.ok(
    checkContainerfile(missing, CONTEXT).some((p) => p.includes("bench/no_such_prompts.json does not exist")),
  );
  const ignoredCtx = { ...CONTEXT, ignore: `${IGNORE}\nbench/prompts.json\n` };
  assert.ok(
    checkContainerfile(TEXT, ignoredCtx).some((p) => p.includes("bench/prompts.json is excluded")),
  );
  const partly = { ...CONTEXT, ignore: `${IGNORE}\nshaders/*.wgsl\n!shaders/matmul.wgsl\n` };
  assert.ok(checkContainerfile(TEXT, partly).some((p) => p.includes("file(s) of shaders")));
  const unknown = TEXT.replace("COPY --from=compile ", "COPY --from=nosuchstage ");
  assert.ok(
    checkContainerfile(unknown, CONTEXT).some((p) => p.includes("--from=nosuchstage: no earlier stage")),
  );
  const latest = TEXT.replace("FROM debian:bookworm-slim AS runtime", "FROM debian:latest AS runtime");
  assert.ok(checkContainerfile(latest, CONTEXT).some((p) => p.includes("not a pinned debian:bookworm")));
  const rootUser = TEXT.replace("USER 10001:10001", "USER root");
  assert.ok(checkContainerfile(rootUser, CONTEXT).some((p) => p.includes("USER root")));
});

Deno.test(".dockerignore matcher: Docker's pattern rules used here", () => {
  const m = dockerignoreMatcher("# c\n**/node_modules\nbench/out\n*.md\n!README.md\nweights/smollm2/\n");
  assert.ok(m("node_modules") && m("tools/llama_cpp/node_modules/x/y.js"));
  assert.ok(m("bench/out/a.json") && !m("bench/prompts.json"));
  assert.ok(m("NOTES.md") && !m("README.md") && !m("docs/NOTES.md"));
  assert.ok(m("weights/smollm2/x.gguf") && !m("weights/tiny/target/config.json"));
});
