#!/usr/bin/env node
/**
 * llama.cpp (through node-llama-cpp's prebuilt binaries) on the same GGUF as specdec: a peer for the bench and
 * a second reference next to transformers (tests/fixtures/smollm2/golden.json).
 *
 *   bash tools/llama_cpp/install.sh                                   # once (npm ci, prebuilt binaries only)
 *   node tools/llama_cpp/reference.mjs --backends cpu,vulkan          # greedy + tokenization + bench, JSON on stdout
 *   node tools/llama_cpp/reference.mjs --greedy 0 --tokenize=false --bench-tokens 64 --bench-runs 3   # bench only
 *   node tools/llama_cpp/reference.mjs --backends cpu --fixture tests/fixtures/smollm2/llama_cpp.json
 *
 * Options (defaults in brackets):
 *   --model PATH          GGUF [weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
 *   --prompts PATH        golden.json-shaped file: prompts[] with name, ids, text, generated_ids, margins
 *                         [tests/fixtures/smollm2/golden.json]
 *   --backends LIST       cpu, vulkan or both, comma-separated [cpu]; each backend runs in its own child process
 *   --threads N           CPU threads (for Vulkan: the host side) [2]
 *   --greedy N            new tokens per prompt, greedy, fed the prompt's token ids, not stopping at EOS; 0 = skip [64]
 *   --only NAMES          comma-separated prompt names (default: all)
 *   --tokenize BOOL       llama.cpp's tokenization of each prompt text, compared with its ids [true]
 *   --bench-tokens N      decode tokens per timed run, prefill excluded; 0 = skip [64]
 *   --bench-runs R        timed runs after one untimed warm-up; the median is reported [3]
 *   --margin T            the tie threshold for the comparison (transformers' top-1/top-2 logit margin) [0.5]
 *   --out PATH            write the full JSON there (stdout otherwise)
 *   --fixture PATH        also write the small fixture (greedy tokens, tokenization, comparison, versions)
 *   --merge               with --fixture: keep the file's other backends and tokens, replace only this run's
 *                         backends (e.g. a slow Vulkan run on a few prompts after the CPU run on all)
 *
 * Greedy means: temperature 0, which makes node-llama-cpp's sampler chain [greedy] alone (its topK 40 / topP
 * 0.95 defaults apply only at temperature > 0, see AddonSampler::rebuildChainIfNeeded); no repeatPenalty,
 * dryRepeatPenalty, xtc, tokenBias or grammar is passed, so none is in the chain. yieldEogToken keeps generating
 * past <|im_end|> like the golden file does.
 *
 * Never builds or downloads: getLlama({build: "never", skipDownload: true, usePrebuiltBinaries: true}) and
 * NODE_LLAMA_CPP_SKIP_DOWNLOAD=true; a missing prebuilt binary is an error ("unavailable"), not a build.
 * Vulkan on Mesa's lavapipe needs GGML_VK_VISIBLE_DEVICES=0 and XDG_RUNTIME_DIR: both are set here when unset.
 */

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");

const { values: args } = parseArgs({
  options: {
    model: {
      type: "string",
      default: join(repo, "weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    },
    prompts: {
      type: "string",
      default: join(repo, "tests/fixtures/smollm2/golden.json"),
    },
    backends: { type: "string", default: "cpu" },
    threads: { type: "string", default: "2" },
    greedy: { type: "string", default: "64" },
    only: { type: "string" },
    tokenize: { type: "string", default: "true" },
    "bench-tokens": { type: "string", default: "64" },
    "bench-runs": { type: "string", default: "3" },
    margin: { type: "string", default: "0.5" },
    out: { type: "string" },
    fixture: { type: "string" },
    merge: { type: "boolean", default: false },
    child: { type: "boolean", default: false },
  },
});

const threads = Number(args.threads);
const greedyTokens = Number(args.greedy);
const benchTokens = Number(args["bench-tokens"]);
const benchRuns = Number(args["bench-runs"]);
const tieMargin = Number(args.margin);
const doTokenize = args.tokenize !== "false";
const backends = args.backends.split(",").map((b) => b.trim()).filter(Boolean);
for (const b of backends) {
  if (b !== "cpu" && b !== "vulkan") fail(`--backends: unknown backend ${b}`);
}

function fail(message) {
  process.stderr.write(`reference.mjs: ${message}\n`);
  process.exit(2);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const round = (x, d = 4) => Math.round(x * 10 ** d) / 10 ** d;

function loadPrompts() {
  const golden = JSON.parse(readFileSync(args.prompts, "utf8"));
  let prompts = golden.prompts;
  if (args.only) {
    const names = new Set(args.only.split(","));
    prompts = prompts.filter((p) => names.has(p.name));
    if (prompts.length === 0) {
      fail(`--only: none of ${args.only} is in ${args.prompts}`);
    }
  }
  return { golden, prompts };
}

/** Runs one backend in this process and returns its JSON section. */
async function runBackend(backend) {
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
  if (backend === "vulkan") {
    process.env.GGML_VK_VISIBLE_DEVICES ??= "0";
    process.env.XDG_RUNTIME_DIR ??= mkdtempSync(
      join(tmpdir(), "llama-cpp-xdg-"),
    );
  }
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
  const pkg = JSON.parse(
    readFileSync(
      join(here, "node_modules/node-llama-cpp/package.json"),
      "utf8",
    ),
  );
  const tLoad = performance.now();
  const llama = await getLlama({
    gpu: backend === "vulkan" ? "vulkan" : false,
    build: "never",
    skipDownload: true,
    usePrebuiltBinaries: true,
    progressLogs: false,
    maxThreads: threads,
    logLevel: LlamaLogLevel.error,
  });
  const model = await llama.loadModel({
    modelPath: args.model,
    gpuLayers: backend === "vulkan" ? "max" : 0,
  });
  const { prompts } = loadPrompts();
  const longest = Math.max(...prompts.map((p) => p.ids.length));
  const context = await model.createContext({
    contextSize: Math.max(
      256,
      longest + Math.max(greedyTokens, benchTokens) + 8,
    ),
    threads,
    batchSize: 512,
    sequences: 1,
  });
  const sequence = context.getSequence();
  const loadS = (performance.now() - tLoad) / 1000;
  const out = {
    backend,
    threads,
    gpu: llama.gpu,
    devices: backend === "vulkan" ? await llama.getGpuDeviceNames() : [],
    gpuLayers: model.gpuLayers,
    version: {
      nodeLlamaCpp: pkg.version,
      llamaCppRelease: llama.llamaCppRelease.release,
      llamaCppRepo: llama.llamaCppRelease.repo,
      buildType: llama.buildType,
      node: process.version,
    },
    systemInfo: llama.systemInfo.trim(),
    loadS: round(loadS, 2),
  };

  if (doTokenize) {
    out.tokenization = prompts.filter((p) => typeof p.text === "string").map(
      (p) => {
        const ids = Array.from(model.tokenize(p.text, true));
        const idsSplitSpecial = Array.from(model.tokenize(p.text, false));
        return {
          name: p.name,
          matches: sameIds(ids, p.ids),
          ids,
          idsNoSpecial: idsSplitSpecial,
        };
      },
    );
  }

  if (greedyTokens > 0) {
    out.greedy = [];
    for (const p of prompts) {
      // 1. Free-running greedy from the prompt ids, token by token (KV-cached decoding).
      await sequence.clearHistory();
      const tokens = [];
      const t0 = performance.now();
      for await (
        const token of sequence.evaluate(p.ids, {
          temperature: 0,
          yieldEogToken: true,
        })
      ) {
        tokens.push(token);
        if (tokens.length >= greedyTokens) break;
      }
      const seconds = (performance.now() - t0) / 1000;
      const row = {
        name: p.name,
        tokens,
        text: model.detokenize(tokens, true),
        seconds: round(seconds, 2),
      };
      // 2. Teacher-forced on transformers' continuation (one batched forward over prompt + reference): raw
      //    logits of llama.cpp's top 5 and of the reference token at every step, so disagreements can be
      //    told from ties on the same prefix.
      const ref = p.generated_ids;
      if (Array.isArray(ref) && ref.length > 0) {
        await sequence.clearHistory();
        const steps = Math.min(ref.length, greedyTokens);
        const input = [...p.ids.slice(0, -1)];
        for (let s = 0; s < steps; s++) {
          const tok = s === 0 ? p.ids[p.ids.length - 1] : ref[s - 1];
          input.push([tok, {
            generateNext: {
              logits: { filter: { tokens: [ref[s]], includeTop: 5 } },
            },
          }]);
        }
        const res = await sequence.controlledEvaluate(input);
        const forced = [];
        for (let s = 0; s < steps; s++) {
          const logits = res[p.ids.length - 1 + s]?.next?.logits;
          if (!logits) {
            throw new Error(`${p.name}: no logits at teacher-forced step ${s}`);
          }
          const sorted = [...logits.entries()].sort((a, b) => b[1] - a[1]);
          forced.push({
            top: sorted.slice(0, 5).map(([id, v]) => [id, round(v)]),
            ref: round(logits.get(ref[s])),
          });
        }
        row.forced = forced;
      }
      out.greedy.push(row);
    }
    out.comparison = compare(prompts, out.greedy, tieMargin);
  }

  if (benchTokens > 0) {
    const p = prompts[0];
    const runs = [];
    const prefills = [];
    for (let r = 0; r <= benchRuns; r++) {
      await sequence.clearHistory();
      let count = 0;
      let tFirst = 0;
      const t0 = performance.now();
      for await (
        const _ of sequence.evaluate(p.ids, {
          temperature: 0,
          yieldEogToken: true,
        })
      ) {
        if (count === 0) tFirst = performance.now();
        if (count === benchTokens) break;
        count++;
      }
      const tEnd = performance.now();
      if (r === 0) continue; // warm-up (Vulkan compiles its pipelines here)
      runs.push(benchTokens / ((tEnd - tFirst) / 1000));
      prefills.push((tFirst - t0) / 1000);
    }
    out.bench = {
      prompt: p.name,
      promptTokens: p.ids.length,
      decodeTokens: benchTokens,
      runs: benchRuns,
      tokPerS: round(median(runs), 2),
      runsTokPerS: runs.map((x) => round(x, 2)),
      prefillS: round(median(prefills), 4),
    };
  }

  await context.dispose();
  await model.dispose();
  await llama.dispose();
  return out;
}

function sameIds(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The margin rule: walk transformers' greedy continuation; the first step where llama.cpp's free-running greedy
 * picks another token ends the comparison. It is a tie when transformers' top-1/top-2 margin there is below
 * `threshold`, a mismatch otherwise. Tokens after the first disagreement are not compared (the prefixes
 * differ). The teacher-forced pass (llama.cpp's logits on transformers' prefix at every step) adds: how many of
 * the 64 steps llama.cpp's argmax matches, whether every disagreement there is a tie, and how far llama.cpp's
 * margin of the reference token is from transformers' margin where both agree.
 */
function compare(prompts, greedy, threshold) {
  const rows = [];
  const marginDiffs = [];
  for (let i = 0; i < prompts.length; i++) {
    const p = prompts[i];
    const g = greedy[i];
    const ref = p.generated_ids;
    if (!Array.isArray(ref)) continue;
    const n = Math.min(ref.length, g.tokens.length);
    let agree = 0;
    while (agree < n && ref[agree] === g.tokens[agree]) agree++;
    const row = { name: p.name, compared: n, agree };
    if (agree === n) row.verdict = "all agree";
    else {
      const m = p.margins?.[agree];
      const f = g.forced?.[agree];
      row.step = agree;
      row.transformers = ref[agree];
      row.llamaCpp = g.tokens[agree];
      row.transformersMargin = m;
      // llama.cpp's logit of its own pick minus the reference's, on the same prefix (teacher-forced pass).
      if (f) row.llamaCppGap = round(f.top[0][1] - f.ref);
      row.verdict = m !== undefined && m < threshold ? "tie" : "MISMATCH";
    }
    if (g.forced) {
      let forcedAgree = 0;
      const forcedDisagreements = [];
      for (let s = 0; s < g.forced.length; s++) {
        const f = g.forced[s];
        const m = p.margins?.[s];
        if (f.top[0][0] === ref[s]) {
          forcedAgree++;
          const second = f.top.find(([id]) => id !== ref[s]);
          if (m !== undefined && second) {
            marginDiffs.push(Math.abs(m - (f.ref - second[1])));
          }
        } else {
          forcedDisagreements.push({
            step: s,
            transformersMargin: m,
            llamaCppGap: round(f.top[0][1] - f.ref),
            tie: m !== undefined && m < threshold,
          });
        }
      }
      row.forcedAgree = forcedAgree;
      row.forcedSteps = g.forced.length;
      row.forcedDisagreements = forcedDisagreements;
      // Raw logits against transformers' top-5 (the first steps golden.json records), ids both report.
      let maxLogitDiff = 0;
      for (const t of p.top5 ?? []) {
        const f = g.forced[t.step];
        if (!f) continue;
        const mine = new Map(f.top);
        mine.set(ref[t.step], f.ref);
        for (const [id, logit] of t.top) {
          if (mine.has(id)) {
            maxLogitDiff = Math.max(
              maxLogitDiff,
              Math.abs(mine.get(id) - logit),
            );
          }
        }
      }
      row.top5MaxAbsLogitDiff = p.top5 ? round(maxLogitDiff) : null;
    }
    rows.push(row);
  }
  const sortedDiffs = [...marginDiffs].sort((a, b) => a - b);
  const q = (x) =>
    sortedDiffs.length
      ? round(
        sortedDiffs[
          Math.min(sortedDiffs.length - 1, Math.floor(x * sortedDiffs.length))
        ],
      )
      : null;
  const forcedRows = rows.filter((r) => r.forcedDisagreements);
  return {
    threshold,
    rule: "compare transformers' greedy tokens in order; at the first disagreement stop: a tie when " +
      "transformers' top-1/top-2 logit margin there is below the threshold, else a mismatch",
    prompts: rows.length,
    allAgree: rows.filter((r) => r.verdict === "all agree").length,
    ties: rows.filter((r) => r.verdict === "tie").length,
    mismatches: rows.filter((r) => r.verdict === "MISMATCH").length,
    tokensAgreed: rows.reduce((a, r) => a + r.agree, 0),
    tokensCompared: rows.reduce((a, r) => a + r.compared, 0),
    forced: {
      stepsAgreed: forcedRows.reduce((a, r) => a + r.forcedAgree, 0),
      steps: forcedRows.reduce((a, r) => a + r.forcedSteps, 0),
      disagreementsNotTies: forcedRows.reduce(
        (a, r) => a + r.forcedDisagreements.filter((d) => !d.tie).length,
        0,
      ),
      marginAbsDiff: {
        median: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        max: sortedDiffs.length ? round(sortedDiffs.at(-1)) : null,
      },
    },
    rows,
  };
}

function fixtureOf(result, golden) {
  const sections = result.backends.filter((b) => !b.error);
  const first = sections[0];
  return {
    $comment: "Written by tools/llama_cpp/reference.mjs (node-llama-cpp's prebuilt llama.cpp) from " +
      "tests/fixtures/smollm2/golden.json's prompt ids: greedy (temperature 0, greedy sampler alone, no " +
      "penalties), not stopping at EOS. tokens: the CPU backend's; a backend whose tokens differ lists its " +
      "own (tokens_<backend>); a backend's comparison.rows name the prompts it ran. comparison: the margin " +
      "rule against transformers' generated_ids (see reference.mjs).",
    source: golden.source,
    versions: first?.version,
    new_tokens: greedyTokens,
    backends: sections.map((b) => ({
      backend: b.backend,
      threads: b.threads,
      devices: b.devices,
      comparison: b.comparison && {
        threshold: b.comparison.threshold,
        allAgree: b.comparison.allAgree,
        ties: b.comparison.ties,
        mismatches: b.comparison.mismatches,
        forced: b.comparison.forced,
        tokensAgreed: b.comparison.tokensAgreed,
        tokensCompared: b.comparison.tokensCompared,
        rows: b.comparison.rows.map((r) => ({
          name: r.name,
          agree: r.agree,
          verdict: r.verdict,
          ...(r.step === undefined ? {} : {
            step: r.step,
            transformers: r.transformers,
            llamaCpp: r.llamaCpp,
            transformersMargin: r.transformersMargin,
            llamaCppGap: r.llamaCppGap,
          }),
          forcedAgree: r.forcedAgree,
          forcedNonTies: r.forcedDisagreements?.filter((d) => !d.tie).map((d) => d.step),
          top5MaxAbsLogitDiff: r.top5MaxAbsLogitDiff,
        })),
      },
    })),
    tokenization: first?.tokenization?.map((t) => ({
      name: t.name,
      matches: t.matches,
    })),
    prompts: (first?.greedy ?? []).map((g) => {
      const row = { name: g.name, tokens: g.tokens };
      for (const b of sections.slice(1)) {
        const other = b.greedy?.find((x) => x.name === g.name);
        if (other && !sameIds(other.tokens, g.tokens)) {
          row[`tokens_${b.backend}`] = other.tokens;
        }
      }
      return row;
    }),
  };
}

/** JSON as `deno fmt` leaves it (2-space indent, one value a line). */
function stringify(value) {
  return JSON.stringify(value, null, 2) + "\n";
}

if (args.child) {
  // One backend per process: the CPU and Vulkan addons are separate binaries.
  try {
    process.stdout.write(JSON.stringify(await runBackend(backends[0])));
  } catch (e) {
    process.stdout.write(
      JSON.stringify({ backend: backends[0], error: String(e?.message ?? e) }),
    );
  }
  process.exit(0);
}

const sections = [];
for (const backend of backends) {
  const childArgs = process.argv.slice(2).filter((a, i, all) =>
    !a.startsWith("--backends") && all[i - 1] !== "--backends" &&
    !a.startsWith("--out") &&
    all[i - 1] !== "--out" && !a.startsWith("--fixture") &&
    all[i - 1] !== "--fixture"
  );
  const r = spawnSync(process.execPath, [
    fileURLToPath(import.meta.url),
    ...childArgs,
    "--backends",
    backend,
    "--child",
  ], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 256 * 1024 * 1024,
  });
  try {
    sections.push(JSON.parse(r.stdout));
  } catch {
    sections.push({
      backend,
      error: `child exited ${r.status ?? r.signal}: ${r.stdout.slice(0, 400)}`,
    });
  }
}
const result = { model: args.model, backends: sections };
if (args.out) writeFileSync(args.out, JSON.stringify(result, null, 1) + "\n");
else process.stdout.write(JSON.stringify(result) + "\n");
if (args.fixture) {
  let fixture = fixtureOf(result, loadPrompts().golden);
  if (args.merge) {
    fixture = mergeFixture(
      JSON.parse(readFileSync(args.fixture, "utf8")),
      fixture,
    );
  }
  writeFileSync(args.fixture, stringify(fixture));
}

/** The old fixture with this run's backends replaced; prompt tokens of a non-first backend become tokens_<b>. */
function mergeFixture(old, now) {
  const names = new Set(now.backends.map((b) => b.backend));
  const merged = {
    ...old,
    backends: [
      ...old.backends.filter((b) => !names.has(b.backend)),
      ...now.backends,
    ],
  };
  const base = old.backends[0]?.backend;
  merged.prompts = old.prompts.map((p) => {
    const row = { ...p };
    for (const b of now.backends) {
      if (b.backend === base) continue;
      delete row[`tokens_${b.backend}`];
      const mine = now.prompts.find((x) => x.name === p.name);
      if (mine && !sameIds(mine.tokens, p.tokens)) {
        row[`tokens_${b.backend}`] = mine.tokens;
      }
    }
    return row;
  });
  return merged;
}
