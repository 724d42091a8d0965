/**
 * A small SVG chart writer for the benchmark's plots: line/scatter charts (linear or log axes) and
 * grouped bar charts, with axes, ticks, labels, a legend and escaped text. Pure string building: no DOM,
 * no browser, deterministic output (numbers rounded to 0.1 px).
 *
 * @module
 */

/** Escape text for SVG/XML content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

/** Categorical palette (Tableau 10). */
export const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
];

/** An axis: its label, linear or logarithmic, optional fixed bounds. */
export interface Axis {
  label: string;
  log?: boolean;
  min?: number;
  max?: number;
}

/** One series of a line chart. */
export interface LineSeries {
  name: string;
  /** Points; a `label` is written beside its marker. */
  points: { x: number; y: number; label?: string }[];
  color?: string;
  /** Join the points (default true). */
  line?: boolean;
  /** Draw a marker at each point (default true). */
  markers?: boolean;
  dashed?: boolean;
  /** Where point labels go (default above). */
  labelPosition?: "above" | "below";
}

/** A line (or scatter) chart. */
export interface LineChartOptions {
  title: string;
  subtitle?: string;
  x: Axis;
  y: Axis;
  series: LineSeries[];
  width?: number;
  height?: number;
}

/** One group of bars, with an optional dashed reference level drawn across it (e.g. the baseline). */
export interface BarGroup {
  label: string;
  bars: { name: string; value: number }[];
  reference?: { label: string; value: number };
}

/** A grouped bar chart; bars are coloured by name (same name, same colour in every group). */
export interface BarChartOptions {
  title: string;
  subtitle?: string;
  yLabel: string;
  groups: BarGroup[];
  width?: number;
  height?: number;
}

const r1 = (v: number) => (Math.round(v * 10) / 10).toString();

/** Tick label: integers as is, otherwise up to 3 significant digits. */
export function formatTick(v: number): string {
  if (v === 0) return "0";
  if (Number.isInteger(v) && Math.abs(v) < 1e7) return v.toString();
  return Number(v.toPrecision(3)).toString();
}

/** About `count` round tick values (1, 2, 5 x 10^k steps) covering [min, max]. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) max = min + 1;
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const lo = Math.floor(min / step + 1e-9) * step, hi = Math.ceil(max / step - 1e-9) * step;
  const out: number[] = [];
  for (let v = lo; v <= hi + step / 2; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Tick values of a log axis over [min, max]: powers of 2 for narrow ranges, else powers of 10. */
export function logTicks(min: number, max: number): number[] {
  const base = max / min <= 2 ** 12 ? 2 : 10;
  const lo = Math.floor(Math.log(min) / Math.log(base) + 1e-9);
  const hi = Math.ceil(Math.log(max) / Math.log(base) - 1e-9);
  const out: number[] = [];
  for (let e = lo; e <= hi; e++) out.push(base ** e);
  return out;
}

interface Scale {
  (v: number): number;
  ticks: number[];
}

function scale(axis: Axis, values: number[], from: number, to: number): Scale {
  const vs = values.filter((v) => Number.isFinite(v) && (!axis.log || v > 0));
  let lo = axis.min ?? (vs.length ? Math.min(...vs) : axis.log ? 1 : 0);
  // 5% headroom above the data on linear axes, so the top point or bar label stays inside the frame.
  let hi = axis.max ?? (vs.length ? Math.max(...vs) * (axis.log ? 1 : 1.05) : lo + 1);
  let ticks: number[];
  if (axis.log) {
    if (!(lo > 0)) lo = 1;
    if (!(hi > lo)) hi = lo * 2;
    ticks = logTicks(lo, hi);
    lo = Math.min(lo, ticks[0]);
    hi = Math.max(hi, ticks[ticks.length - 1]);
    const f = ((v: number) => from + (to - from) * (Math.log(v / lo) / Math.log(hi / lo))) as Scale;
    f.ticks = ticks;
    return f;
  }
  if (axis.min === undefined && lo > 0 && lo < hi / 3) lo = 0; // include zero when the data is near it
  ticks = niceTicks(lo, hi);
  if (axis.min === undefined) lo = ticks[0];
  if (axis.max === undefined) hi = ticks[ticks.length - 1];
  ticks = ticks.filter((t) => t >= lo - 1e-9 && t <= hi + 1e-9);
  const f = ((v: number) => from + (to - from) * ((v - lo) / (hi - lo || 1))) as Scale;
  f.ticks = ticks;
  return f;
}

interface Frame {
  width: number;
  height: number;
  left: number;
  top: number;
  right: number;
  bottom: number;
}

function frame(width: number, height: number): Frame {
  return { width, height, left: 72, top: 62, right: width - 230, bottom: height - 58 };
}

function open(f: Frame, title: string, subtitle?: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect x="0" y="0" width="${f.width}" height="${f.height}" fill="#ffffff"/>`,
    `<text x="${f.left}" y="26" font-size="16" font-weight="bold" fill="#222">${escapeXml(title)}</text>`,
    ...(subtitle
      ? [`<text x="${f.left}" y="45" font-size="11" fill="#555">${escapeXml(subtitle)}</text>`]
      : []),
  ];
}

function yAxis(f: Frame, y: Scale, label: string): string[] {
  const out = [`<g class="y-axis" font-size="11" fill="#333">`];
  for (const t of y.ticks) {
    const py = r1(y(t));
    out.push(
      `<line x1="${f.left}" x2="${f.right}" y1="${py}" y2="${py}" stroke="#e5e5e5"/>`,
      `<text x="${f.left - 6}" y="${py}" text-anchor="end" dominant-baseline="middle">${
        formatTick(t)
      }</text>`,
    );
  }
  const cy = r1((f.top + f.bottom) / 2);
  out.push(
    `<line x1="${f.left}" x2="${f.left}" y1="${f.top}" y2="${f.bottom}" stroke="#333"/>`,
    `<text x="18" y="${cy}" text-anchor="middle" transform="rotate(-90 18 ${cy})" font-size="12">${
      escapeXml(label)
    }</text>`,
    `</g>`,
  );
  return out;
}

function legend(
  f: Frame,
  items: { name: string; color: string; kind: "line" | "dashed" | "box" | "marker" }[],
) {
  const out = [`<g class="legend" font-size="11" fill="#222">`];
  items.forEach((it, i) => {
    const x = f.right + 16, y = f.top + 6 + i * 18;
    if (it.kind === "box") {
      out.push(`<rect x="${x}" y="${y - 5}" width="14" height="10" fill="${it.color}"/>`);
    } else if (it.kind === "marker") {
      out.push(`<circle cx="${x + 7}" cy="${y}" r="3.5" fill="${it.color}"/>`);
    } else {
      out.push(
        `<line x1="${x}" x2="${x + 14}" y1="${y}" y2="${y}" stroke="${it.color}" stroke-width="2"${
          it.kind === "dashed" ? ' stroke-dasharray="4 3"' : ""
        }/>`,
      );
    }
    out.push(`<text x="${x + 20}" y="${y}" dominant-baseline="middle">${escapeXml(it.name)}</text>`);
  });
  out.push(`</g>`);
  return out;
}

/** Render a line/scatter chart as a standalone SVG document. */
export function lineChart(o: LineChartOptions): string {
  const f = frame(o.width ?? 760, o.height ?? 440);
  const ok = (p: { x: number; y: number; label?: string }) =>
    Number.isFinite(p.x) && Number.isFinite(p.y) && (!o.x.log || p.x > 0) && (!o.y.log || p.y > 0);
  const pts = o.series.map((s) => s.points.filter(ok));
  const x = scale(o.x, pts.flat().map((p) => p.x), f.left, f.right);
  const y = scale(o.y, pts.flat().map((p) => p.y), f.bottom, f.top);
  const out = open(f, o.title, o.subtitle);
  out.push(...yAxis(f, y, o.y.label));
  out.push(`<g class="x-axis" font-size="11" fill="#333">`);
  for (const t of x.ticks) {
    const px = r1(x(t));
    out.push(
      `<line x1="${px}" x2="${px}" y1="${f.bottom}" y2="${f.bottom + 5}" stroke="#333"/>`,
      `<text x="${px}" y="${f.bottom + 18}" text-anchor="middle">${formatTick(t)}</text>`,
    );
  }
  out.push(
    `<line x1="${f.left}" x2="${f.right}" y1="${f.bottom}" y2="${f.bottom}" stroke="#333"/>`,
    `<text x="${r1((f.left + f.right) / 2)}" y="${f.bottom + 40}" text-anchor="middle" font-size="12">${
      escapeXml(o.x.label)
    }</text>`,
    `</g>`,
  );
  const items: Parameters<typeof legend>[1] = [];
  o.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const p = pts[i];
    const line = s.line ?? true, markers = s.markers ?? true;
    out.push(`<g class="series" data-name="${escapeXml(s.name)}">`);
    if (line && p.length > 1) {
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2"${
          s.dashed ? ' stroke-dasharray="6 4"' : ""
        } points="${p.map((q) => `${r1(x(q.x))},${r1(y(q.y))}`).join(" ")}"/>`,
      );
    }
    if (markers) {
      for (const q of p) {
        out.push(
          `<circle cx="${r1(x(q.x))}" cy="${r1(y(q.y))}" r="3.5" fill="${color}"><title>${
            escapeXml(`${s.name}: (${formatTick(q.x)}, ${formatTick(q.y)})`)
          }</title></circle>`,
        );
        if (q.label) {
          // Labels right of their marker, or left of it near the plot's right edge (the legend is there).
          const left = x(q.x) + 6 + 6 * q.label.length > f.right;
          out.push(
            `<text x="${r1(x(q.x) + (left ? -6 : 6))}" y="${
              r1(y(q.y) + (s.labelPosition === "below" ? 14 : -6))
            }" font-size="10" fill="${color}"${left ? ' text-anchor="end"' : ""}>${
              escapeXml(q.label)
            }</text>`,
          );
        }
      }
    }
    out.push(`</g>`);
    items.push({ name: s.name, color, kind: line ? (s.dashed ? "dashed" : "line") : "marker" });
  });
  out.push(...legend(f, items), `</svg>`);
  return out.join("\n") + "\n";
}

/** Render a grouped bar chart as a standalone SVG document. */
export function barChart(o: BarChartOptions): string {
  const f = frame(o.width ?? 860, o.height ?? 460);
  const names = [...new Set(o.groups.flatMap((g) => g.bars.map((b) => b.name)))];
  const color = (n: string) => PALETTE[names.indexOf(n) % PALETTE.length];
  const values = o.groups.flatMap((g) => [...g.bars.map((b) => b.value), g.reference?.value ?? 0]);
  const y = scale({ label: o.yLabel, min: 0 }, values.filter(Number.isFinite), f.bottom, f.top);
  const out = open(f, o.title, o.subtitle);
  out.push(...yAxis(f, y, o.yLabel));
  const gw = (f.right - f.left) / Math.max(1, o.groups.length);
  o.groups.forEach((g, gi) => {
    const x0 = f.left + gi * gw, pad = Math.min(16, gw * 0.08);
    const bw = (gw - 2 * pad) / Math.max(1, g.bars.length);
    out.push(`<g class="group" data-label="${escapeXml(g.label)}">`);
    g.bars.forEach((b, bi) => {
      if (!Number.isFinite(b.value)) return;
      const bx = x0 + pad + bi * bw, by = y(Math.max(0, b.value));
      out.push(
        `<rect x="${r1(bx + 1)}" y="${r1(by)}" width="${r1(Math.max(1, bw - 2))}" height="${
          r1(f.bottom - by)
        }" fill="${color(b.name)}"><title>${
          escapeXml(`${g.label}, ${b.name}: ${formatTick(b.value)}`)
        }</title></rect>`,
      );
      const tx = r1(bx + bw / 2), ty = r1(by - 4);
      out.push(
        `<text x="${tx}" y="${ty}" font-size="9" fill="#333" transform="rotate(-90 ${tx} ${ty})" dominant-baseline="middle">${
          formatTick(Number(b.value.toPrecision(3)))
        }</text>`,
      );
    });
    if (g.reference && Number.isFinite(g.reference.value)) {
      const ry = r1(y(g.reference.value));
      out.push(
        `<line class="reference" x1="${r1(x0 + 2)}" x2="${
          r1(x0 + gw - 2)
        }" y1="${ry}" y2="${ry}" stroke="#222" stroke-width="1.5" stroke-dasharray="5 3"/>`,
        `<text x="${r1(x0 + gw - 4)}" y="${
          r1(y(g.reference.value) - 5)
        }" font-size="10" text-anchor="end" fill="#222">${escapeXml(g.reference.label)}</text>`,
      );
    }
    out.push(
      `<text x="${r1(x0 + gw / 2)}" y="${f.bottom + 18}" text-anchor="middle" font-size="11" fill="#333">${
        escapeXml(g.label)
      }</text>`,
      `</g>`,
    );
  });
  out.push(`<line x1="${f.left}" x2="${f.right}" y1="${f.bottom}" y2="${f.bottom}" stroke="#333"/>`);
  out.push(...legend(f, names.map((n) => ({ name: n, color: color(n), kind: "box" as const }))), `</svg>`);
  return out.join("\n") + "\n";
}
