/**
 * The GPU check's summary: every stage's record (status, seconds, figures) in one JSON object, and
 * the same as Markdown tables for a closing note. Pure functions over the records: the driver rewrites
 * both files after every stage, so an outer kill still leaves a summary of what finished.
 *
 * @module
 */

/** How a stage ended. */
export type StageStatus = "running" | "done" | "error" | "timeout" | "skipped";

/** What a stage's file holds (written by the stage's process; status settled by the driver). */
export interface StageRecord {
  stage: string;
  status: StageStatus;
  /** Wall seconds, process start included (set by the driver). */
  seconds?: number;
  /** The limit it ran under (set by the driver). */
  limitS?: number;
  error?: string;
  data: Record<string, unknown>;
}

/** The whole summary (gpu_check.json). */
export interface CheckSummary {
  check: "gpu_check";
  quick: boolean;
  startedAt: string;
  /** The overall limit and the wall seconds used so far. */
  limitS: number;
  seconds: number;
  deno: string;
  stages: Record<string, StageRecord>;
}

const f = (x: unknown, digits = 2) => typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "-";
const pct = (x: unknown) => typeof x === "number" && Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : "-";

function table(head: string[], rows: unknown[][], right = new Set<number>()): string[] {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map((_, i) => (right.has(i) ? "---:" : "---")).join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ];
}

/** Markdown for one model's t(n) and AR figures (forward1b and smollm2). */
function modelSection(title: string, m: Record<string, unknown> | undefined): string[] {
  if (!m) return [];
  const out = [
    `**${title}**: ${m.layers} layers, d=${m.hidden}, vocab ${m.vocab}, weights ${m.weightDtype} on the GPU, ${
      f((m.bytesPerToken as number) / 1e6, 0)
    } MB read per token; readback ${f(m.readbackMs)} ms (included in t(n))`,
    "",
  ];
  const tn = (m.tn as { n: number; ms: number; msPerToken: number }[] | undefined) ?? [];
  if (tn.length) {
    out.push(
      ...table(
        ["n", "t(n) ms", "ms/token", "t(n)/t(1)"],
        tn.map((r) => [r.n, f(r.ms), f(r.msPerToken, 3), f(r.ms / tn[0].ms)]),
        new Set([0, 1, 2, 3]),
      ),
      "",
      `t(64)/t(1) = ${f(m.t64OverT1)}, t(256)/t(1) = ${f(m.t256OverT1)}`,
    );
  }
  if (m.tnError) out.push(`t(n) stopped: ${m.tnError}`);
  const ar = m.ar as Record<string, number> | undefined;
  if (ar) {
    out.push(
      `AR: ${f(ar.tokPerS, 1)} tok/s (${ar.tokens} tokens, ${f(ar.syncsPerToken)} syncs/token) = ${
        f(ar.weightGbps, 1)
      } GB/s of weights = ${pct(ar.ofStream)} of streaming read`,
    );
  }
  out.push("");
  return out;
}

/** The Markdown summary (gpu_check.md). */
export function renderMarkdown(s: CheckSummary): string {
  const st = s.stages;
  const a = st.adapter?.data ?? {};
  const info = (a.info ?? {}) as Record<string, unknown>;
  const out: string[] = [
    `# GPU check${s.quick ? " (quick)" : ""}`,
    "",
    `${info.description || info.vendor || "unknown adapter"}; Deno ${s.deno}; started ${s.startedAt}; ${
      f(s.seconds, 0)
    } s of ${s.limitS} s`,
    "",
    ...table(
      ["stage", "status", "seconds", "limit s", "error"],
      Object.values(st).map((r) => [
        r.stage,
        r.status,
        f(r.seconds, 1),
        r.limitS ?? "-",
        (r.error ?? "").replaceAll("|", "/").slice(0, 160),
      ]),
      new Set([2, 3]),
    ),
    "",
  ];
  if (st.adapter) {
    const impl = (a.implementation ?? {}) as Record<string, unknown>;
    out.push(
      "## Adapter",
      "",
      `- ${info.vendor} / ${info.architecture} / ${info.description} (device ${info.device}, fallback ${info.isFallbackAdapter})`,
      `- ${impl.name}, Deno ${impl.deno}; env ${JSON.stringify(impl.env ?? {})}`,
      `- nvidia-smi: ${a.nvidiaSmi ?? "none"}`,
      `- engine device: ${JSON.stringify(a.engineDevice ?? {})}`,
      `- features: ${((a.features ?? []) as string[]).join(", ")}`,
      `- limits: ${
        Object.entries((a.keyLimits ?? {}) as Record<string, unknown>).map(([k, v]) => `${k} ${v}`).join(", ")
      }`,
      "",
    );
  }
  const sd = st.stream?.data;
  if (sd) {
    const sync = (sd.sync ?? {}) as Record<string, number>;
    const copy = (sd.copy ?? {}) as Record<string, number>;
    out.push(
      "## Sync and streaming read",
      "",
      `Empty submit + onSubmittedWorkDone ${f(sync.submitMs, 3)} ms; 4-byte GPU->CPU readback ${
        f(sync.readbackMs, 3)
      } ms; host memcpy ${f(copy.memcpyGBps, 1)} GB/s, writeBuffer ${f(copy.writeBufferGBps, 1)} GB/s`,
      "",
      ...table(
        ["bytes", "workgroups", "ms", "GB/s"],
        ((sd.streamRead ?? []) as Record<string, number>[]).map((r) => [
          `${r.bytes >> 20} MiB`,
          r.groups,
          f(r.ms, 3),
          f(r.gbps, 1),
        ]),
        new Set([1, 2, 3]),
      ),
      "",
      `Best streaming read: ${f(sd.streamGbps, 1)} GB/s`,
      "",
    );
  }
  const mv = st.matvec?.data;
  if (mv) {
    out.push(
      "## Matvec (n = 1) per weight dtype",
      "",
      `Dtypes the GPU matrix holds: ${((mv.dtypes ?? []) as string[]).join(", ")}`,
      "",
      ...table(
        ["dtype", "matrix", "shape", "parts", "ms", "GB/s", "% of stream"],
        ((mv.rows ?? []) as Record<string, unknown>[]).map((r) => [
          r.dtype,
          r.name,
          r.shape,
          r.parts,
          f(r.ms, 3),
          f(r.gbps, 1),
          pct(r.ofStream),
        ]),
        new Set([3, 4, 5, 6]),
      ),
      "",
      ...((mv.skipped ?? []) as Record<string, string>[]).map((k) =>
        `- skipped ${k.dtype} ${k.shape}: ${k.reason}`
      ),
      "",
    );
  }
  const fb = st.forward1b?.data;
  if (fb) {
    const g = (fb.generate ?? {}) as Record<string, number>;
    out.push(
      "## 1B-shaped target (random F16 weights)",
      "",
      `Generated here in ${f(g.seconds, 1)} s (${f(g.bytes / 1e9)} GB); loaded in ${f(fb.f16LoadS, 1)} s.`,
      "",
      ...modelSection("Llama-3.2-1B shape", fb.f16 as Record<string, unknown>),
    );
  }
  const sm = st.smollm2?.data;
  if (sm) {
    out.push(
      "## SmolLM2-135M-shaped target (RANDOM weights: acceptance meaningless, no speculative figures)",
      "",
      ...modelSection("F16 safetensors", sm.f16 as Record<string, unknown>),
      ...modelSection("Q8_0 GGUF", sm.q8_0 as Record<string, unknown>),
    );
    if (sm.q8_0Skipped) out.push(`Q8_0 skipped: ${sm.q8_0Skipped}`, "");
  }
  const tn = st.tiny?.data;
  if (tn) {
    const costs = tn.costs as { sizes: number[]; target: number[]; draft: number[] } | undefined;
    out.push("## Tiny pair (weights/tiny): AR vs Sequoia", "");
    if (costs) {
      out.push(
        ...table(
          ["n", ...costs.sizes.map(String)],
          [["t_target ms", ...costs.target.map((x) => f(x))], [
            "t_draft ms",
            ...costs.draft.map((x) => f(x)),
          ]],
        ),
        "",
      );
    }
    out.push(
      ...table(
        ["T", "case", "tok/s", "tokens/step", "x AR", "predicted tok/s"],
        ((tn.rows ?? []) as Record<string, unknown>[]).map((r) => [
          r.temperature,
          r.label,
          f(r.tokPerS, 1),
          f(r.tokensPerStep),
          f(r.speedup),
          f(r.predictedTokPerS, 1),
        ]),
        new Set([2, 3, 4, 5]),
      ),
      "",
    );
  }
  return out.join("\n") + "\n";
}
