/** The side-by-side benchmark: its pure parts (aggregation, tables, SVG, JSON) and one tiny CPU run. */
import assert from "node:assert/strict";
import { barChart, escapeXml, lineChart, logTicks, niceTicks } from "../src/util/svg.ts";
import { type BenchRow, type RunSample, summarize } from "../src/bench/report.ts";
import { type BenchCase, buildCases, FULL_SIZES, QUICK_SIZES } from "../src/bench/cases.ts";
import { markdownTable, modeTable, sweepTable } from "../src/bench/markdown.ts";
import { costPlot, tokensPerStepPlot, tokPerSPlot } from "../src/bench/plots.ts";
import { loadPrompts } from "../src/bench/prompts.ts";
import { replot } from "../src/bench/replot.ts";
import { runSideBySide } from "../src/bench/runner.ts";
import { runBench } from "../src/cli/bench.ts";
import { UsageError } from "../src/cli/usage.ts";
import type { TreeChoice } from "../src/speculative/tree_choice.ts";

/** Well-formed XML (tags balanced and properly nested, no raw `<` or `&` in text): throws if not. */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  const body = xml.replace(/<\?xml[^>]*\?>/, "");
  const re = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<|&(?!(?:amp|lt|gt|quot|#39);)/g;
  for (const m of body.matchAll(re)) {
    if (m[0] === "<" || m[0] === "&") {
      throw new Error(`stray "${m[0]}" at ${m.index}: ${body.slice(m.index, 60)}`);
    }
    const [, close, name, , self] = m;
    if (self) continue;
    if (close) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
    } else stack.push(name);
  }
  assert.deepEqual(stack, [], "unclosed tags");
  assert.match(body.trim(), /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"[\s\S]*<\/svg>$/);
}

const sample = (o: Partial<RunSample> = {}): RunSample => ({
  tokens: 20,
  decodeMs: 1000,
  steps: 8,
  stepTokens: 19,
  treeNodes: 64,
  targetForwards: 9,
  syncs: 8,
  draftMs: 400,
  verifyMs: 100,
  ...o,
});

const CASE: BenchCase = {
  label: "sequoia n=8 d=2",
  series: "sequoia (profiler's pick)",
  method: "sequoia",
  tree: { treeSize: 8, depth: 2 },
  group: "main",
  prompts: 2,
  maxTokens: 10,
  sequoia: { n: 8, depth: 2, predicted: 2.3, pick: true },
};

Deno.test("bench: summarize takes the median tok/s over runs and pools the other figures", () => {
  const runs = [sample({ decodeMs: 1000 }), sample({ decodeMs: 500 }), sample({ decodeMs: 2000, syncs: 12 })];
  const r = summarize(CASE, { mode: "resident", temperature: 0.7, arTokPerS: 40 }, runs);
  assert.equal(r.tokPerS, 20); // 20, 40, 10 tok/s -> median 20
  assert.deepEqual(r.tokPerSRuns, [20, 40, 10]);
  assert.equal(r.speedup, 0.5);
  assert.equal(r.tokensPerStep, 57 / 24);
  assert.equal(r.treeNodesPerStep, 8);
  assert.equal(r.syncsPerToken, 28 / 60);
  assert.equal(r.targetForwardsPerToken, 27 / 60);
  assert.equal(r.draftMsPerStep, 1200 / 24);
  assert.equal(r.verifyMsPerStep, 300 / 24);
  assert.equal(r.tokens, 20);
  assert.equal(r.runs, 3);
  assert.equal(r.predictedTokensPerStep, 2.3);
  assert.equal(r.pick, true);
  assert.equal(r.paging, undefined);

  const ar = summarize(
    { ...CASE, label: "ar", method: "ar", tree: {}, sequoia: undefined },
    { mode: "paged", temperature: 0, arTokPerS: NaN },
    [
      sample({ steps: 0, paging: { bytes: 40e6, uploadMs: 100, stallMs: 25 } }),
      sample({ steps: 0, paging: { bytes: 40e6, uploadMs: 100, stallMs: 75 } }),
    ],
  );
  assert.equal(ar.speedup, 1);
  assert.equal(ar.tokensPerStep, 1);
  assert.equal(ar.draftMsPerStep, undefined);
  assert.deepEqual(ar.paging, {
    uploadMBPerToken: 2,
    uploadMsPerToken: 5,
    stallMsPerToken: 2.5,
    overlap: 0.5,
  });
  assert.throws(() => summarize(CASE, { mode: "resident", temperature: 0, arTokPerS: 1 }, []), RangeError);
});

Deno.test("bench: Markdown tables are aligned and escape pipes", () => {
  const t = markdownTable(["T", "method", "tok/s"], ["r", "l", "r"], [["0", "a|b", "12.5"], [
    "0.7",
    "ar",
    "3",
  ]]);
  assert.equal(
    t,
    [
      "|   T | method | tok/s |",
      "| --: | ------ | ----: |",
      "|   0 | a\\|b   |  12.5 |",
      "| 0.7 | ar     |     3 |",
    ].join("\n"),
  );
});

function rows(): BenchRow[] {
  const out: BenchRow[] = [];
  for (const mode of ["resident", "paged"] as const) {
    for (const temperature of [0, 0.7]) {
      const ctx = { mode, temperature, arTokPerS: 50 };
      const paging = mode === "paged" ? { bytes: 8e6, uploadMs: 10, stallMs: 5 } : undefined;
      out.push(
        summarize({ ...CASE, label: "ar", series: "ar", method: "ar", tree: {}, sequoia: undefined }, ctx, [
          sample({ steps: 0, decodeMs: 400, paging }),
        ]),
        summarize(CASE, ctx, [sample({ paging })]),
        summarize(
          {
            ...CASE,
            label: "specexec K=64",
            series: "specexec K=64",
            method: "specexec",
            tree: { budget: 64 },
          },
          ctx,
          [sample({ treeNodes: 8 * 60, paging })],
        ),
      );
      if (mode === "resident") {
        out.push(summarize(
          {
            ...CASE,
            group: "sweep",
            label: "sequoia n=16 d=3",
            sequoia: { n: 16, depth: 3, predicted: 3, pick: false },
          },
          ctx,
          [sample({ stepTokens: 26 })],
        ));
      }
    }
  }
  return out;
}

Deno.test("bench: mode and sweep tables carry every row, paged columns only for paged rows", () => {
  const rs = rows();
  const resident = modeTable(rs, "resident");
  assert.equal(resident.split("\n").length, 2 + 6); // header, rule, 3 main rows x 2 temperatures
  assert.match(resident, /sequoia n=8 d=2 \(pick\)/);
  assert.doesNotMatch(resident, /upload MB\/token|n=16/);
  const paged = modeTable(rs, "paged");
  assert.match(paged, /upload MB\/token \| overlap/);
  assert.match(paged, /\|\s+0\.40 \|\s+50% \|/); // 8 MB over 20 tokens; 1 - 5/10
  const sweep = sweepTable(rs);
  assert.equal(sweep.split("\n").length, 2 + 6); // resident pick + n=16, paged pick, x 2 temperatures
  assert.match(sweep.split("\n")[2], /^\| resident .* 8 \|/);
  assert.match(sweep, /\|\s+3\.25 \|\s+3\.00 \|\s+\+8% \|/);
});

Deno.test("bench: SVG charts are well-formed, escape text and contain the data", () => {
  const svg = lineChart({
    title: "a <b> & 'c'",
    x: { label: "n", log: true },
    y: { label: "y" },
    series: [
      { name: "s1 <x>", points: [{ x: 1, y: 2 }, { x: 4, y: 3, label: "K=64 & up" }, { x: 0, y: 1 }] },
      {
        name: "s2",
        dashed: true,
        markers: false,
        points: [{ x: 2, y: NaN }, { x: 8, y: 5 }, { x: 16, y: 6 }],
      },
    ],
  });
  assertWellFormed(svg);
  assert.match(svg, /a &lt;b&gt; &amp; &#39;c&#39;/);
  assert.match(svg, /s1 &lt;x&gt;/);
  assert.match(svg, /K=64 &amp; up/);
  assert.equal(svg.match(/<circle /g)!.length, 2, "x = 0 cannot sit on a log axis; s2 has no markers");
  assert.match(svg, /stroke-dasharray="6 4" points="[\d.]+,[\d.]+ [\d.]+,[\d.]+"/);

  const bars = barChart({
    title: "bars",
    yLabel: "tok/s",
    groups: [
      {
        label: "g1",
        bars: [{ name: "ar", value: 60 }, { name: "chain", value: 30 }],
        reference: { label: "AR", value: 60 },
      },
      { label: "g2", bars: [{ name: "ar", value: 50 }, { name: "chain", value: NaN }] },
    ],
  });
  assertWellFormed(bars);
  assert.equal(bars.match(/<rect [^>]*><title>/g)!.length, 3, "three finite bars");
  assert.equal(bars.match(/class="reference"/g)!.length, 1);
  assert.match(bars, /g1, chain: 30/);

  const rs = rows();
  const sub = "llvmpipe; Deno 2";
  const tps = tokensPerStepPlot(rs, sub);
  assertWellFormed(tps);
  assert.match(tps, /Sequoia measured, T=0\.7/);
  assert.match(tps, /planner G\(n, d\), T=0/);
  assert.match(tps, /Sequoia measured, T=0: \(16, 3\.25\)/);
  assertWellFormed(tokPerSPlot(rs, sub));
  assert.match(tokPerSPlot(rs, sub), /paged, T=0\.7/);
  const costs = {
    sizes: [1, 2, 4],
    target: [10, 12, 20],
    draft: [2, 3, 4],
    sync: 11,
    arTokensPerSubmission: 8,
  };
  const tn = costPlot([{ mode: "resident", device: "d", costs, picks: [] }], sub);
  assertWellFormed(tn);
  assert.match(tn, /target, resident: \(4, 20\)/);
  assert.match(tn, /draft: \(2, 3\)/);
});

Deno.test("bench: axis ticks", () => {
  assert.deepEqual(niceTicks(0, 4.2), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(niceTicks(0, 90), [0, 20, 40, 60, 80, 100]);
  assert.deepEqual(logTicks(3, 100), [2, 4, 8, 16, 32, 64, 128]);
  assert.deepEqual(logTicks(1, 1e6), [1, 10, 100, 1000, 10000, 100000, 1000000]);
  assert.equal(escapeXml(`<a href="x">&</a>`), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
});

Deno.test("bench: cases keep AR under --methods; the sweep takes the profiler's depth and skips the pick", () => {
  const ranked = [
    { n: 8, depth: 2, tokensPerStep: 2.3 },
    { n: 4, depth: 1, tokensPerStep: 1.8 },
    { n: 8, depth: 3, tokensPerStep: 2.4 },
    { n: 16, depth: 3, tokensPerStep: 2.8 },
  ] as TreeChoice[];
  const all = buildCases(QUICK_SIZES, { pick: { n: 8, depth: 2 }, ranked, withSweep: true });
  assert.deepEqual(all.map((c) => c.label), [
    "ar",
    "chain k=4",
    "specinfer 4x4",
    "sequoia n=8 d=2",
    "specexec K=64",
    "specexec K=256",
    "specexec K=1024",
    "lookup n=8",
    "sequoia n=4 d=1",
    "sequoia n=16 d=3",
  ]);
  assert.equal(all[3].sequoia?.predicted, 2.3);
  assert.deepEqual(all[7].tree, { treeSize: 8 }, "lookup: the pick's node budget, its own depth");
  assert.equal(all[9].group, "sweep");
  const some = buildCases(FULL_SIZES, { pick: { n: 8, depth: 2 }, ranked, withSweep: false }, ["specexec"]);
  assert.deepEqual(some.map((c) => `${c.label} ${c.prompts}x${c.maxTokens}`), [
    "ar 4x48",
    "specexec K=64 2x24",
    "specexec K=256 2x12",
    "specexec K=1024 1x8",
  ]);
});

Deno.test("bench: the shipped prompts are held-out text", async () => {
  const prompts = await loadPrompts();
  const heldout = await Deno.readTextFile(new URL("../weights/tiny/heldout.txt", import.meta.url));
  assert.ok(prompts.length >= FULL_SIZES.main.prompts);
  for (const p of prompts) assert.ok(heldout.includes(p), `"${p}" is not in heldout.txt`);
  assert.equal(new Set(prompts).size, prompts.length);
});

Deno.test("bench: usage errors", async () => {
  for (
    const args of [
      ["--offload", "--resident-only"],
      ["--methods", "ar,beam"],
      ["--runs", "0"],
      ["--temperatures", "0,x"],
      ["--backend", "cpu", "--offload"],
      ["--kernels", "--sweep"],
      ["--concurrency", "4"],
      ["--load", "localhost:8000"],
      ["--load", "http://127.0.0.1:1", "--concurrency", "0"],
      ["--load", "http://127.0.0.1:1", "--temperatures", "0,0.7"],
      ["--load", "http://127.0.0.1:1", "--kernels"],
    ]
  ) {
    await assert.rejects(runBench(args), (e) => e instanceof UsageError && e.exitCode === 2, args.join(" "));
  }
  await assert.rejects(runBench(["--help"]), (e) => e instanceof UsageError && e.exitCode === 0);
});

Deno.test("bench: a tiny side-by-side run on the CPU reference writes tables, JSON and plots", async () => {
  const dir = await Deno.makeTempDir();
  let printed = "";
  try {
    const report = await runSideBySide({
      quick: true,
      modes: ["resident"],
      temperatures: [0],
      runs: 1,
      backend: "cpu",
      sizes: {
        main: { prompts: 1, maxTokens: 4 },
        sweep: { sizes: [4], prompts: 1, maxTokens: 4 },
        specexec: [{ budget: 8, prompts: 1, maxTokens: 3 }],
      },
      methods: ["chain", "sequoia", "specexec", "lookup"],
      command: "deno task bench --test",
      outDir: dir,
      jsonPath: `${dir}/report.json`,
      log: () => {},
      print: (t) => (printed += t + "\n"),
    });
    assert.match(printed, /command: deno task bench --test/);
    assert.match(
      printed,
      new RegExp(`Deno ${Deno.version.deno.replace(/\./g, "\\.")}; adapter: cpu reference`),
    );
    assert.match(printed, /\| chain k=4 /);
    const json = JSON.parse(await Deno.readTextFile(`${dir}/report.json`));
    assert.equal(json.version, 1);
    assert.equal(json.deno, Deno.version.deno);
    const labels = json.rows.map((r: BenchRow) => r.label);
    assert.deepEqual(labels.slice(0, 5), [
      "ar",
      "chain k=4",
      "sequoia n=8 d=3",
      "specexec K=8",
      "lookup n=8",
    ]);
    assert.match(labels[5], /^sequoia n=4 d=[1-3]$/, "the sweep's size at the planner's depth");
    assert.equal(json.rows[5].group, "sweep");
    assert.deepEqual(json, JSON.parse(JSON.stringify(report)));
    for (const r of json.rows as BenchRow[]) {
      assert.equal(r.tokens, r.maxTokens, r.label);
      assert.ok(r.tokPerS > 0 && r.tokensPerStep >= 1, r.label);
      assert.equal(r.mode, "resident");
    }
    assert.deepEqual(report.plots.map((p) => p.slice(dir.length + 1)), ["tokens_per_step.svg", "tok_s.svg"]);
    for (const p of report.plots) assertWellFormed(await Deno.readTextFile(p));
    // --replot: the same tables and plots from the saved JSON, without measuring.
    let again = "";
    await Deno.remove(report.plots[0]);
    await replot(`${dir}/report.json`, dir, (t) => (again += t + "\n"));
    const tables = (s: string) => s.split("\n").filter((l) => l.startsWith("|"));
    assert.deepEqual(tables(again), tables(printed));
    assert.equal(tables(printed).length, 2 + 5 + 2 + 2); // mode table: 5 main rows; sweep: pick + n=4
    assertWellFormed(await Deno.readTextFile(report.plots[0]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench --load: counts complete streams, and catches a cut stream, an error status and a refused connection", async () => {
  const { runLoad, loadMarkdown, percentiles } = await import("../src/bench/load.ts");
  assert.deepEqual(percentiles([5, 1, 4, 2, 3]), { p50: 3, p95: 5, max: 5 });
  let n = 0;
  const enc = new TextEncoder();
  // A fake OpenAI stream: request 2 is cut before [DONE], request 3 answers 429.
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const body = await req.json();
    assert.equal(body.stream, true);
    assert.deepEqual(body.stream_options, { include_usage: true });
    const i = n++;
    if (i === 3) return new Response(JSON.stringify({ error: { message: "queue full" } }), { status: 429 });
    const events = [
      { choices: [{ index: 0, text: "a", finish_reason: null }] },
      { choices: [{ index: 0, text: "b", finish_reason: "length" }] },
      { choices: [], usage: { completion_tokens: 2 } },
    ];
    const stream = new ReadableStream({
      start(c) {
        for (const e of events) c.enqueue(enc.encode(`data: ${JSON.stringify(e)}\n\n`));
        if (i !== 2) c.enqueue(enc.encode("data: [DONE]\n\n"));
        c.close();
      },
    });
    return new Response(stream, { headers: { "content-type": "text/event-stream" } });
  });
  try {
    const url = `http://127.0.0.1:${server.addr.port}`;
    const r = await runLoad({
      url,
      concurrency: 2,
      requests: 6,
      maxTokens: 2,
      temperature: 0,
      prompts: ["x"],
    });
    assert.equal(r.requests, 6);
    assert.equal(r.ok, 4);
    assert.equal(r.incomplete, 1);
    assert.deepEqual(r.statuses, { 200: 5, 429: 1 });
    assert.equal(r.records.filter((x) => x.complete).reduce((s, x) => s + x.tokens, 0), 8);
    assert.match(r.records.find((x) => x.status === 200 && !x.complete)!.error!, /cut before \[DONE\]/);
    assert.match(loadMarkdown([{ report: r }]), /1 x 429; 1 cut/);
    const refused = await runLoad({
      url: "http://127.0.0.1:1",
      concurrency: 1,
      requests: 1,
      maxTokens: 1,
      temperature: 0,
      prompts: ["x"],
    });
    assert.equal(refused.statuses["0"], 1);
    assert.ok(refused.records[0].error);
  } finally {
    await server.shutdown();
  }
});
