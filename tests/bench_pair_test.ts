/**
 * The side-by-side benchmark on a chosen pair and prompt sets: prompt-file validation, chat prompts through
 * the target's template, SpecExec budgets, draft-free cases, and `--quick` runs on the tiny pair given by
 * --model/--draft/--prompt-set (CPU reference: no hardware profile to measure).
 */
import assert from "node:assert/strict";
import { buildCases, QUICK_SIZES, withSpecExecBudgets } from "../src/bench/cases.ts";
import {
  DEFAULT_PROMPT_SET,
  encodePromptSet,
  loadPromptSet,
  parsePromptSet,
  PromptSetError,
} from "../src/bench/prompts.ts";
import type { BenchReport } from "../src/bench/report.ts";
import { runSideBySide } from "../src/bench/runner.ts";
import { runBench } from "../src/cli/bench.ts";
import { UsageError } from "../src/cli/usage.ts";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import { ModelTokenizer } from "../src/model/tokenizer.ts";

const rejects = (json: unknown, pattern: RegExp) =>
  assert.throws(
    () => parsePromptSet(json, "sets/x.json"),
    (e) => e instanceof PromptSetError && pattern.test(e.message),
  );

Deno.test("bench prompt sets: entries are strings or {text, chat, kind}; errors name the file and index", () => {
  const set = parsePromptSet(
    { note: "n", prompts: ["plain one", { text: "chat one", chat: true, kind: "edit" }, { text: "t" }] },
    "sets/mixed.json",
  );
  assert.equal(set.name, "mixed");
  assert.equal(set.note, "n");
  assert.deepEqual(set.prompts, [
    { text: "plain one", chat: false },
    { text: "chat one", chat: true, kind: "edit" },
    { text: "t", chat: false },
  ]);
  rejects(["a"], /^sets\/x\.json: expected an object/);
  rejects({ prompts: [] }, /^sets\/x\.json: prompts: expected a non-empty array/);
  rejects({ prompts: ["a"], extra: 1 }, /unknown key "extra"/);
  rejects({ prompts: ["a", "  "] }, /^sets\/x\.json: prompts\[1\]: empty prompt/);
  rejects({ prompts: ["a", 3] }, /prompts\[1\]: expected a string or \{text, chat\?, kind\?\}, got 3/);
  rejects({ prompts: [{ text: "a", chat: "yes" }] }, /prompts\[0\]\.chat: expected a boolean, got "yes"/);
  rejects({ prompts: [{ text: "a" }, { chat: true }] }, /prompts\[1\]\.text: expected a non-empty string/);
  rejects({ prompts: [{ text: "a", chats: true }] }, /prompts\[0\]: unknown key "chats"/);
  rejects({ prompts: [{ text: "a", kind: 1 }] }, /prompts\[0\]\.kind: expected a string/);
  rejects({ prompts: ["a"], note: 2 }, /note: expected a string/);
});

Deno.test("bench prompt sets: files that cannot be read or parsed are named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.json`, "{ not json");
    await assert.rejects(
      loadPromptSet(`${dir}/bad.json`),
      (e) => e instanceof PromptSetError && /bad\.json: not JSON/.test(e.message),
    );
    await assert.rejects(loadPromptSet(`${dir}/missing.json`), /missing\.json: cannot read the prompt set/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench prompt sets: the shipped sets parse; the edit prompts are chat prompts of 80-250 words", async () => {
  const plain = await loadPromptSet(DEFAULT_PROMPT_SET);
  assert.equal(plain.name, "prompts");
  assert.ok(plain.prompts.every((p) => !p.chat));
  const edit = await loadPromptSet(new URL("../bench/prompts_edit.json", import.meta.url).pathname);
  assert.equal(edit.name, "prompts_edit");
  assert.ok(edit.prompts.length >= 8);
  for (const [i, p] of edit.prompts.entries()) {
    const words = p.text.split(/\s+/).filter((w) => w).length;
    assert.ok(p.chat && p.kind?.startsWith("edit/"), `prompts[${i}]`);
    assert.ok(words >= 80 && words <= 250, `prompts[${i}]: ${words} words`);
  }
  assert.equal(new Set(edit.prompts.map((p) => p.kind)).size, edit.prompts.length);
});

Deno.test("bench prompt sets: chat prompts go through the target's chat template, plain ones are raw text", async () => {
  const folder = await openModelFolder(DEFAULT_TARGET_DIR);
  try {
    const tok = folder.tokenizer;
    const set = parsePromptSet({ prompts: ["And God said", { text: "Fix this.", chat: true }] }, "s.json");
    const [plain, chat] = encodePromptSet(set, tok);
    assert.deepEqual(plain, tok.encode("And God said"));
    assert.deepEqual(chat, tok.encodeChat([{ role: "user", content: "Fix this." }]));
    // The tiny target's template: "<bos>User: ...\nAssistant:" (generation prompt added).
    assert.equal(tok.decode(chat), "User: Fix this.\nAssistant:");
    assert.equal(encodePromptSet(set, tok, 1).length, 1);
    const json = JSON.parse(await Deno.readTextFile(`${DEFAULT_TARGET_DIR}/tokenizer.json`));
    const bare = ModelTokenizer.fromJson(json, {}, { source: "bare" });
    assert.throws(
      () => encodePromptSet(set, bare),
      (e) =>
        e instanceof PromptSetError &&
        /^s\.json: prompts\[1\] is a chat prompt, but the target has no chat template/.test(e.message),
    );
  } finally {
    folder.checkpoint.close();
  }
});

Deno.test("bench cases: --specexec-budgets sizes, and AR + lookup only without a draft", () => {
  assert.deepEqual(withSpecExecBudgets(QUICK_SIZES, [16, 512, 4096]).specexec, [
    { budget: 16, prompts: 1, maxTokens: 8 },
    { budget: 512, prompts: 1, maxTokens: 4 },
    { budget: 4096, prompts: 1, maxTokens: 4 },
  ]);
  const free = buildCases(QUICK_SIZES, undefined);
  assert.deepEqual(free.map((c) => c.label), ["ar", "lookup n=16"]);
  assert.deepEqual(buildCases(QUICK_SIZES, undefined, ["lookup"]).map((c) => c.method), ["ar", "lookup"]);
});

Deno.test("bench: usage errors of the pair and prompt-set flags", async () => {
  for (
    const [args, pattern] of [
      [["--draft", "none", "--methods", "sequoia,lookup"], /--methods sequoia needs a draft model/],
      [["--prompt-set", "no/such/set.json"], /no\/such\/set\.json: cannot read the prompt set/],
      [["--prompt-set", ","], /--prompt-set needs FILE/],
      [["--specexec-budgets", "64,0"], /--specexec-budgets must be a positive integer/],
      [["--draft", "x", "--kernels"], /--draft goes with the side-by-side run only/],
      [["--host-memory-budget", "0", "--resident-only"], /--host-memory-budget is for paged rows/],
      [["--host-memory-budget", "lots"], /--host-memory-budget/],
    ] as [string[], RegExp][]
  ) {
    await assert.rejects(
      runBench(args),
      (e) => e instanceof UsageError && e.exitCode === 2 && pattern.test(e.message),
      args.join(" "),
    );
  }
});

Deno.test("bench --quick with --model, --draft and two --prompt-set files: a table per set, rows per set in the JSON", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/chat_set.json`,
      JSON.stringify({
        note: "chat",
        prompts: [{ text: "Repeat: the LORD is my shepherd.", chat: true, kind: "edit" }],
      }),
    );
    await Deno.writeTextFile(`${dir}/plain_set.json`, JSON.stringify({ prompts: ["And God said"] }));
    const log = console.log;
    let printed = "";
    console.log = (t: string) => (printed += t + "\n");
    try {
      await runBench([
        "--quick",
        "--backend=cpu",
        "--resident-only",
        `--model=${DEFAULT_TARGET_DIR}`,
        `--draft=${DEFAULT_DRAFT_DIR}`,
        `--prompt-set=${dir}/chat_set.json,${dir}/plain_set.json`,
        "--methods=sequoia,specexec,lookup",
        "--specexec-budgets=8",
        "--temperatures=0",
        "--max-tokens=4",
        `--json=${dir}/r.json`,
        `--out=${dir}`,
      ]);
    } finally {
      console.log = log;
    }
    assert.match(
      printed,
      /prompt sets: chat_set \(.*chat_set\.json: 1 of 1 prompts, chat\); plain_set \(.*: 1 of 1 prompts, plain\)/,
    );
    assert.match(printed, /### resident, prompt set chat_set/);
    assert.match(printed, /### resident, prompt set plain_set/);
    const r: BenchReport = JSON.parse(await Deno.readTextFile(`${dir}/r.json`));
    assert.deepEqual(r.promptSets!.map((s) => [s.name, s.prompts.length]), [["chat_set", 1], [
      "plain_set",
      1,
    ]]);
    assert.deepEqual(r.models, { target: DEFAULT_TARGET_DIR, draft: DEFAULT_DRAFT_DIR });
    for (const set of ["chat_set", "plain_set"]) {
      const rows = r.rows.filter((x) => x.set === set && x.group === "main");
      assert.deepEqual(
        rows.map((x) => x.label),
        ["ar", "sequoia n=8 d=3", "specexec K=8", "lookup n=8"],
        set,
      );
      for (const x of rows) assert.equal(x.tokens, x.method === "specexec" ? 8 : 4, `${set} ${x.label}`);
    }
    // Plots per set when there are several.
    assert.ok(
      r.plots.some((p) => p.endsWith("tok_s.chat_set.svg")) &&
        r.plots.some((p) => p.endsWith("tok_s.plain_set.svg")),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench with no draft: AR and lookup rows only, no Sequoia pick", async () => {
  let printed = "";
  const report = await runSideBySide({
    quick: true,
    modes: ["resident"],
    temperatures: [0],
    runs: 1,
    backend: "cpu",
    sizes: { ...QUICK_SIZES, main: { prompts: 1, maxTokens: 4 } },
    command: "deno task bench --draft none",
    draftDir: null,
    log: () => {},
    print: (t) => (printed += t + "\n"),
  });
  assert.deepEqual(report.rows.map((r) => r.label), ["ar", "lookup n=16"]);
  assert.equal(report.rows[0].set, "prompts");
  assert.deepEqual(report.modes[0].picks, []);
  assert.equal(report.models!.draft, null);
  assert.match(printed, /draft: none \(AR and lookup only\)/);
  assert.match(printed, /no draft model: AR and lookup only/);
});
