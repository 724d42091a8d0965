/**
 * The GPU check's driver (run through scripts/gpu_check.sh on a lent GPU machine): runs every stage of
 * src/bench/gpu_check.ts in its own Deno process under its own time limit, all within one overall limit,
 * and after each stage rewrites `<out>/gpu_check.json` and `<out>/gpu_check.md`. A stage killed at its
 * limit keeps the figures it had written (each stage rewrites `<out>/stages/<name>.json` after every
 * figure); a stage left no time is marked skipped. A process per stage because GPU work cannot be
 * cancelled from inside: a stage that outlives its limit is killed, and the next one starts on a fresh
 * device.
 *
 *   deno run -A scripts/gpu_check.ts [--quick] [--out DIR] [--limit S] [--scale K] [--only a,b] [--work DIR]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { STAGES } from "../src/bench/gpu_check.ts";
import type { StageContext } from "../src/bench/gpu_check_context.ts";
import { type CheckSummary, renderMarkdown, type StageRecord } from "../src/bench/gpu_check_report.ts";
import { writeAtomic } from "../src/runtime/cache_dir.ts";
import { convert } from "./convert_gguf.ts";

const USAGE =
  `Usage: deno run -A scripts/gpu_check.ts [--quick] [--out DIR] [--limit S] [--scale K] [--only LIST]
                                         [--work DIR]

  --quick      every stage at tiny sizes (well under a minute on llvmpipe)
  --out DIR    where gpu_check.json, gpu_check.md and stages/*.json go (default $OUT, else bench/out/gpu_check)
  --limit S    overall limit in seconds (default 420; quick 120); each stage also has its own:
${
    STAGES.map((s) =>
      `               ${s.name.padEnd(10)} ${s.limitS.full} s (quick ${s.limitS.quick} s)  ${s.title}`
    ).join("\n")
  }
  --scale K    multiply every stage's own limit by K (a slow adapter, e.g. llvmpipe: --scale 4 --limit 1500)
  --only LIST  run only these stages, e.g. stream,matvec
  --work DIR   scratch folder for the generated models (default: a new temporary folder, removed after)
`;

/** Seconds kept back from the overall limit for the last summary. */
const RESERVE_S = 3;

/** Run one stage in this process (the driver's child): its record goes to <out>/stages/<name>.json. */
async function runStage(name: string, out: string, workDir: string, quick: boolean): Promise<number> {
  const spec = STAGES.find((s) => s.name === name);
  if (!spec) throw new RangeError(`unknown stage ${name} (stages: ${STAGES.map((s) => s.name).join(", ")})`);
  const file = `${out}/stages/${name}.json`;
  const rec: StageRecord = { stage: name, status: "running", data: {} };
  // Writes are chained so a later put never lands before an earlier one.
  let writes = Promise.resolve();
  const save = () => (writes = writes.then(() => writeAtomic(file, JSON.stringify(rec, null, 2) + "\n")));
  const previous: StageContext["previous"] = {};
  for (const s of STAGES) {
    if (s.name === name) break;
    try {
      previous[s.name] =
        (JSON.parse(await Deno.readTextFile(`${out}/stages/${s.name}.json`)) as StageRecord).data;
    } catch {
      previous[s.name] = undefined; // not run (or --only)
    }
  }
  const t0 = performance.now();
  const ctx: StageContext = {
    quick,
    workDir,
    previous,
    put: (key, value) => {
      rec.data[key] = value;
      return save();
    },
    log: (line) => console.log(`[${name} +${((performance.now() - t0) / 1000).toFixed(1)}s] ${line}`),
    toGguf: async (folder, gguf, type) => {
      await convert({ input: folder, output: gguf, type, force: true, warn: () => {} });
    },
  };
  await save();
  try {
    await spec.run(ctx);
    rec.status = "done";
  } catch (e) {
    rec.status = "error";
    rec.error = e instanceof Error ? e.message : String(e);
    ctx.log(`error: ${rec.error}`);
  }
  await save();
  return rec.status === "done" ? 0 : 1;
}

/** Run the stages one by one under their limits; returns whether every stage finished. */
async function drive(
  o: { out: string; quick: boolean; limitS: number; scale: number; only?: string[]; workDir?: string },
) {
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  await Deno.mkdir(`${o.out}/stages`, { recursive: true });
  for (const s of STAGES) await Deno.remove(`${o.out}/stages/${s.name}.json`).catch(() => {});
  const workDir = o.workDir ?? await Deno.makeTempDir({ prefix: "gpu_check_" });
  const summary: CheckSummary = {
    check: "gpu_check",
    quick: o.quick,
    startedAt: new Date().toISOString(),
    limitS: o.limitS,
    seconds: 0,
    deno: Deno.version.deno,
    stages: {},
  };
  const write = async () => {
    summary.seconds = elapsed();
    await writeAtomic(`${o.out}/gpu_check.json`, JSON.stringify(summary, null, 2) + "\n");
    await writeAtomic(`${o.out}/gpu_check.md`, renderMarkdown(summary));
  };
  const stages = STAGES.filter((s) => !o.only || o.only.includes(s.name));
  for (const spec of stages) {
    const own = o.scale * (o.quick ? spec.limitS.quick : spec.limitS.full);
    const limitS = Math.floor(Math.min(own, o.limitS - RESERVE_S - elapsed()));
    if (limitS < 3) {
      summary.stages[spec.name] = {
        stage: spec.name,
        status: "skipped",
        error: "no time left",
        data: {},
        limitS: 0,
      };
      console.log(`== ${spec.name}: skipped (no time left of the ${o.limitS} s limit)`);
      await write();
      continue;
    }
    console.log(`== ${spec.name}: ${spec.title} (limit ${limitS} s)`);
    const s0 = performance.now();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        // The driver's own start resolved every module (the stages import nothing it does not): never
        // the network, which a lent machine does not have.
        "--cached-only",
        import.meta.filename!,
        "--stage",
        spec.name,
        "--out",
        o.out,
        "--work",
        workDir,
        ...(o.quick ? ["--quick"] : []),
      ],
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    let timedOut = false;
    let killer: ReturnType<typeof setTimeout> | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGTERM");
      killer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }, 2000);
    }, limitS * 1000);
    const status = await child.status;
    clearTimeout(timer);
    clearTimeout(killer);
    let rec: StageRecord;
    try {
      rec = JSON.parse(await Deno.readTextFile(`${o.out}/stages/${spec.name}.json`));
    } catch {
      rec = { stage: spec.name, status: "error", error: "the stage wrote no record", data: {} };
    }
    if (timedOut) {
      rec.status = "timeout";
      rec.error = `killed at its ${limitS} s limit (figures up to then kept)`;
    } else if (rec.status === "running") {
      rec.status = "error";
      rec.error = `exited with code ${status.code}${status.signal ? ` (${status.signal})` : ""}`;
    }
    rec.seconds = (performance.now() - s0) / 1000;
    rec.limitS = limitS;
    summary.stages[spec.name] = rec;
    await write();
    console.log(
      `== ${spec.name}: ${rec.status} in ${rec.seconds.toFixed(1)} s${rec.error ? `: ${rec.error}` : ""}`,
    );
  }
  if (!o.workDir) await Deno.remove(workDir, { recursive: true }).catch(() => {});
  await write();
  console.log(`\n${renderMarkdown(summary)}`);
  console.log(`wrote ${o.out}/gpu_check.json and ${o.out}/gpu_check.md in ${elapsed().toFixed(1)} s`);
  return Object.values(summary.stages).every((r) => r.status === "done");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      out: { type: "string" },
      limit: { type: "string" },
      only: { type: "string" },
      work: { type: "string" },
      stage: { type: "string" },
      scale: { type: "string", default: "1" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const out = values.out ?? Deno.env.get("OUT") ?? "bench/out/gpu_check";
  if (values.stage) {
    if (!values.work) {
      console.error("--stage needs --work (the driver passes both)");
      Deno.exit(2);
    }
    // Deno.exit: the WebGPU device would keep the process alive.
    Deno.exit(await runStage(values.stage, out, values.work, values.quick));
  }
  const limitS = values.limit === undefined ? (values.quick ? 120 : 420) : Number(values.limit);
  if (!(limitS > 0)) {
    console.error(`--limit must be a positive number of seconds, got ${values.limit}\n\n${USAGE}`);
    Deno.exit(2);
  }
  const scale = Number(values.scale);
  if (!(scale > 0)) {
    console.error(`--scale must be a positive number, got ${values.scale}\n\n${USAGE}`);
    Deno.exit(2);
  }
  const only = values.only?.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = only?.filter((n) => !STAGES.some((s) => s.name === n));
  if (unknown?.length) {
    console.error(`unknown stage(s) ${unknown.join(", ")}; stages: ${STAGES.map((s) => s.name).join(", ")}`);
    Deno.exit(2);
  }
  const ok = await drive({ out, quick: values.quick, limitS, scale, only, workDir: values.work });
  Deno.exit(ok ? 0 : 1);
}
