/**
 * Prometheus metrics in the text exposition format (version 0.0.4), without a client library: counters
 * with labels, gauges read at scrape time, and cumulative histograms. Besides our `specdec_` series,
 * speculation is counted under vLLM's own names (`vllm:spec_decode_*`, vllm/v1/spec_decode/metrics.py),
 * so dashboards made for vLLM work unchanged; `:` is valid in metric names (not in label names).
 *
 * @module
 */

type Labels = Record<string, string>;

/** Prometheus' metric name syntax (colons allowed). */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
/** Prometheus' label name syntax (no colons; `__` is reserved). */
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function checkName(name: string): void {
  if (!METRIC_NAME.test(name)) {
    throw new RangeError(`invalid Prometheus metric name: ${JSON.stringify(name)}`);
  }
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelText(l: Labels): string {
  const parts = Object.entries(l).map(([k, v]) => {
    if (!LABEL_NAME.test(k) || k.startsWith("__")) {
      throw new RangeError(`invalid Prometheus label name: ${JSON.stringify(k)}`);
    }
    return `${k}="${escapeLabel(v)}"`;
  });
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
  constructor(readonly name: string, readonly help: string) {
    checkName(name);
  }

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
  constructor(readonly name: string, readonly help: string, private readonly read: () => number) {
    checkName(name);
  }

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
    checkName(name);
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
  readonly interTokenSeconds = new Histogram(
    "specdec_inter_token_seconds",
    "Time between a generation's consecutive tokens as the engine emitted them (tokens of one speculative step arrive together).",
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  );
  // Batched streams (serve --max-batch): what each target forward held.
  readonly batchStreams = new Histogram(
    "specdec_batch_streams",
    "Streams (generations) sharing one target forward, with batched streams (--max-batch).",
    [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64],
  );
  readonly batchTokens = new Histogram(
    "specdec_batch_tokens",
    "Tokens in one target forward, all streams together, with batched streams (--max-batch).",
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
  );
  // Speculation, by method (ours) ...
  readonly drafts = new Counter(
    "specdec_spec_decode_drafts_total",
    "Speculative steps that proposed draft tokens, by method.",
  );
  readonly draftTokens = new Counter(
    "specdec_spec_decode_draft_tokens_total",
    "Draft tokens proposed (tree nodes below the root), by method.",
  );
  readonly acceptedTokens = new Counter(
    "specdec_spec_decode_accepted_tokens_total",
    "Draft tokens the target accepted (the bonus token not counted), by method.",
  );
  readonly acceptedPerPos = new Counter(
    "specdec_spec_decode_accepted_tokens_per_pos_total",
    "Drafts whose accepted path reached depth position + 1, by method and position.",
  );
  // ... and under vLLM's names and labels (model_name, engine), for vLLM dashboards.
  readonly vllmDrafts = new Counter("vllm:spec_decode_num_drafts_total", "Number of spec decoding drafts.");
  readonly vllmDraftTokens = new Counter(
    "vllm:spec_decode_num_draft_tokens_total",
    "Number of draft tokens.",
  );
  readonly vllmAcceptedTokens = new Counter(
    "vllm:spec_decode_num_accepted_tokens_total",
    "Number of accepted tokens.",
  );
  readonly vllmAcceptedPerPos = new Counter(
    "vllm:spec_decode_num_accepted_tokens_per_pos_total",
    "Accepted tokens per draft position.",
  );
  private readonly gauges: Gauge[] = [];

  /** Create vLLM's speculation series of `model` at 0 (a server with a draft, before its first step). */
  initSpecDecode(model: string): void {
    const l = { model_name: model, engine: "0" };
    this.vllmDrafts.inc(l, 0);
    this.vllmDraftTokens.inc(l, 0);
    this.vllmAcceptedTokens.inc(l, 0);
  }

  /** Count one speculative step of `method` that proposed `proposed` tokens and accepted `accepted`. */
  observeDraft(model: string, method: string, proposed: number, accepted: number): void {
    const l = { model_name: model, engine: "0" };
    this.drafts.inc({ method });
    this.draftTokens.inc({ method }, proposed);
    this.acceptedTokens.inc({ method }, accepted);
    this.vllmDrafts.inc(l);
    this.vllmDraftTokens.inc(l, proposed);
    this.vllmAcceptedTokens.inc(l, accepted);
    for (let pos = 0; pos < accepted; pos++) {
      this.acceptedPerPos.inc({ method, position: String(pos) });
      this.vllmAcceptedPerPos.inc({ ...l, position: String(pos) });
    }
  }

  /** Count one batched forward (only the target's: it is what a stream's step waits on). */
  observeBatch(r: { model: string; streams: number; tokens: number }): void {
    if (r.model !== "target") return;
    this.batchStreams.observe(r.streams);
    this.batchTokens.observe(r.tokens);
  }

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
      this.interTokenSeconds,
      this.batchStreams,
      this.batchTokens,
      this.drafts,
      this.draftTokens,
      this.acceptedTokens,
      this.acceptedPerPos,
      this.vllmDrafts,
      this.vllmDraftTokens,
      this.vllmAcceptedTokens,
      this.vllmAcceptedPerPos,
      ...this.gauges,
    ];
    return all.flatMap((m) => m.render()).join("\n") + "\n";
  }
}
