/**
 * Prometheus metrics in the text exposition format (version 0.0.4), without a client library: counters
 * with labels, gauges read at scrape time, and cumulative histograms.
 *
 * @module
 */

type Labels = Record<string, string>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelText(l: Labels): string {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function num(v: number): string {
  return v === Infinity ? "+Inf" : v === -Infinity ? "-Inf" : String(v);
}

interface Metric {
  name: string;
  help: string;
  render(): string[];
}

/** A monotonically increasing count, one series per label set. */
export class Counter implements Metric {
  private readonly series = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string) {}

  /** Add `by` (>= 0) to the series of `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const s = this.series.get(key);
    if (s) s.value += by;
    else this.series.set(key, { labels, value: by });
  }

  /** Current value of the series of `labels` (0 when never incremented). */
  get(labels: Labels = {}): number {
    return this.series.get(labelText(labels))?.value ?? 0;
  }

  render(): string[] {
    return [
      `# HELP ${this.name} ${this.help}`,
      `# TYPE ${this.name} counter`,
      ...[...this.series.values()].map((s) => `${this.name}${labelText(s.labels)} ${num(s.value)}`),
    ];
  }
}

/** A value read when scraped (e.g. the queue depth). */
export class Gauge implements Metric {
  constructor(readonly name: string, readonly help: string, private readonly read: () => number) {}

  render(): string[] {
    return [
      `# HELP ${this.name} ${this.help}`,
      `# TYPE ${this.name} gauge`,
      `${this.name} ${num(this.read())}`,
    ];
  }
}

/** Observations counted into cumulative buckets (upper bounds `le`), with their sum and count. */
export class Histogram implements Metric {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {
    this.counts = new Array(buckets.length).fill(0);
  }

  /** Record `value` `times` times (e.g. one per step of a run of equal steps). */
  observe(value: number, times = 1): void {
    if (!(times > 0) || !Number.isFinite(value)) return;
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) this.counts[i] += times;
    this.sum += value * times;
    this.count += times;
  }

  /** Number of observations. */
  get total(): number {
    return this.count;
  }

  render(): string[] {
    return [
      `# HELP ${this.name} ${this.help}`,
      `# TYPE ${this.name} histogram`,
      ...this.buckets.map((b, i) => `${this.name}_bucket{le="${num(b)}"} ${this.counts[i]}`),
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${num(this.sum)}`,
      `${this.name}_count ${this.count}`,
    ];
  }
}

/** The server's metrics; `render()` is the body of GET /metrics. */
export class ServerMetrics {
  readonly requests = new Counter("specdec_requests_total", "HTTP requests by route and status code.");
  readonly promptTokens = new Counter(
    "specdec_prompt_tokens_total",
    "Prompt tokens of finished generations.",
  );
  readonly completionTokens = new Counter(
    "specdec_completion_tokens_total",
    "Generated tokens, by decoding method.",
  );
  readonly generations = new Counter(
    "specdec_generations_total",
    "Finished generations by method and finish reason (cancelled: client gone or shutdown).",
  );
  readonly tokensPerStep = new Histogram(
    "specdec_tokens_per_step",
    "Tokens emitted per target forward pass (1 for autoregressive decoding; accepted + 1 when speculating).",
    [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32],
  );
  readonly stepSeconds = new Histogram(
    "specdec_step_seconds",
    "Wall time of one decoding step (one target forward with its drafting and verification).",
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  );
  readonly queueSeconds = new Histogram(
    "specdec_queue_wait_seconds",
    "Time a generation waited in the queue before it ran.",
    [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  );
  private readonly gauges: Gauge[] = [];

  /** Add a gauge read at each scrape. */
  gauge(name: string, help: string, read: () => number): void {
    this.gauges.push(new Gauge(name, help, read));
  }

  /** The exposition text. */
  render(): string {
    const all: Metric[] = [
      this.requests,
      this.promptTokens,
      this.completionTokens,
      this.generations,
      this.tokensPerStep,
      this.stepSeconds,
      this.queueSeconds,
      ...this.gauges,
    ];
    return all.flatMap((m) => m.render()).join("\n") + "\n";
  }
}
