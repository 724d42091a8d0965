/**
 * `deno task bench --load URL`: a bounded HTTP load of concurrent streaming completions against a running
 * server (one instance, or replicas behind a balancer) and what a capacity plan needs from it: requests/s,
 * completion tok/s, latency, time to first token and inter-token latency percentiles, and every answer
 * that was not a complete stream (status, a stream cut before `[DONE]`, a transport error).
 *
 * Each of `concurrency` clients sends its requests one after another (a closed loop: the offered load
 * adapts to the server, so the figures are its throughput at that concurrency, not a queue growing without
 * bound). Requests carry `X-Request-Id: <idPrefix>-<n>` so a balancer's access log can be matched to them.
 *
 * @module
 */

/** What {@link runLoad} sends and how much. */
export interface LoadOptions {
  /** The server's base URL, e.g. http://127.0.0.1:8080 (requests go to `${url}/v1/completions`). */
  url: string;
  /** Clients sending at once (each waits for its answer before the next). */
  concurrency: number;
  /** Requests in all, shared among the clients. */
  requests: number;
  /** `max_tokens` of every request. */
  maxTokens: number;
  /** Prompts, used round-robin. */
  prompts: string[];
  /** Sampling temperature of every request (0 = greedy). */
  temperature: number;
  /** Sent as `Authorization: Bearer <apiKey>` when set. */
  apiKey?: string;
  /** Prefix of the `X-Request-Id` header (default "load"). */
  idPrefix?: string;
  /** Stops sending new requests once aborted (in-flight ones finish). */
  signal?: AbortSignal;
  /** Called as each request ends. */
  onRecord?: (r: RequestRecord) => void;
}

/** One request's outcome. Times are ms from `performance.timeOrigin`. */
export interface RequestRecord {
  /** Its X-Request-Id. */
  id: string;
  start: number;
  end: number;
  /** HTTP status, or 0 when the request failed before an answer (connection refused/reset). */
  status: number;
  /** True when a 200 stream ended with `[DONE]` after a choice with a finish_reason. */
  complete: boolean;
  /** The last finish_reason seen ("length", "stop", ...), when any. */
  finishReason?: string;
  /** Completion tokens (the stream's usage chunk). */
  tokens: number;
  /** ms from the request to its first text chunk. */
  ttftMs?: number;
  /** ms between consecutive text chunks. */
  gapsMs: number[];
  /** The error body, the transport error or why the stream is incomplete. */
  error?: string;
}

/** Percentiles of a sample (ms). */
export interface Percentiles {
  p50: number;
  p95: number;
  max: number;
}

/** {@link runLoad}'s summary. */
export interface LoadReport {
  url: string;
  concurrency: number;
  requests: number;
  /** Complete 200 streams. */
  ok: number;
  /** Answers by status ("0" = no answer), complete or not. */
  statuses: Record<string, number>;
  /** 200 answers whose stream did not end properly. */
  incomplete: number;
  wallS: number;
  /** Complete 200 streams per second of wall time (like tokensPerS: what the server delivered). */
  requestsPerS: number;
  /** Completion tokens of complete streams per second of wall time, all clients together. */
  tokensPerS: number;
  latencyMs: Percentiles;
  ttftMs: Percentiles;
  interTokenMs: Percentiles;
  records: RequestRecord[];
}

/** The p50, p95 and max of `xs` (nearest rank; NaN for an empty sample). */
export function percentiles(xs: number[]): Percentiles {
  if (xs.length === 0) return { p50: NaN, p95: NaN, max: NaN };
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
  return { p50: at(0.5), p95: at(0.95), max: s[s.length - 1] };
}

/**
 * One streaming completion: POST `${url}/v1/completions` with `stream: true` and usage, reading the SSE
 * stream to its end. Never throws: a failure is in the record.
 */
export async function streamCompletion(
  url: string,
  body: { prompt: string; max_tokens: number; temperature: number },
  o: { id: string; apiKey?: string },
): Promise<RequestRecord> {
  const start = performance.now();
  const rec: RequestRecord = {
    id: o.id,
    start,
    end: start,
    status: 0,
    complete: false,
    tokens: 0,
    gapsMs: [],
  };
  const headers: Record<string, string> = { "Content-Type": "application/json", "X-Request-Id": o.id };
  if (o.apiKey) headers.Authorization = `Bearer ${o.apiKey}`;
  try {
    const res = await fetch(`${url.replace(/\/$/, "")}/v1/completions`, {
      method: "POST",
      headers,
      body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    });
    rec.status = res.status;
    if (res.status !== 200 || !res.body) {
      rec.error = (await res.text()).slice(0, 300);
      return rec;
    }
    let buf = "";
    let done = false;
    let last: number | undefined;
    const decoder = new TextDecoderStream();
    for await (const part of res.body.pipeThrough(decoder)) {
      buf += part;
      let cut: number;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim())
          .join("\n");
        if (data === "") continue;
        if (data === "[DONE]") {
          done = true;
          continue;
        }
        const chunk = JSON.parse(data);
        if (chunk.error) rec.error = JSON.stringify(chunk.error).slice(0, 300);
        for (const c of chunk.choices ?? []) {
          if (typeof c.text === "string" && c.text.length > 0) {
            const now = performance.now();
            if (last === undefined) rec.ttftMs = now - start;
            else rec.gapsMs.push(now - last);
            last = now;
          }
          if (c.finish_reason) rec.finishReason = c.finish_reason;
        }
        if (chunk.usage) rec.tokens = chunk.usage.completion_tokens;
      }
    }
    rec.complete = done && rec.finishReason !== undefined && rec.error === undefined;
    if (!rec.complete && rec.error === undefined) {
      rec.error = done ? "stream ended without a finish_reason" : "stream cut before [DONE]";
    }
  } catch (e) {
    rec.error = (e as Error).message;
  } finally {
    rec.end = performance.now();
  }
  return rec;
}

/** Run the load `o` describes and summarise it. */
export async function runLoad(o: LoadOptions): Promise<LoadReport> {
  if (!(o.concurrency >= 1 && o.requests >= 1 && o.prompts.length > 0)) {
    throw new Error("runLoad: concurrency and requests must be >= 1, with at least one prompt");
  }
  const records: RequestRecord[] = [];
  let next = 0;
  const t0 = performance.now();
  const client = async () => {
    while (next < o.requests && !o.signal?.aborted) {
      const i = next++;
      const rec = await streamCompletion(o.url, {
        prompt: o.prompts[i % o.prompts.length],
        max_tokens: o.maxTokens,
        temperature: o.temperature,
      }, { id: `${o.idPrefix ?? "load"}-${i}`, apiKey: o.apiKey });
      records.push(rec);
      o.onRecord?.(rec);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.requests) }, client));
  const wallS = (performance.now() - t0) / 1000;
  const statuses: Record<string, number> = {};
  for (const r of records) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  const ok = records.filter((r) => r.complete);
  return {
    url: o.url,
    concurrency: o.concurrency,
    requests: records.length,
    ok: ok.length,
    statuses,
    incomplete: records.filter((r) => r.status === 200 && !r.complete).length,
    wallS,
    requestsPerS: ok.length / wallS,
    tokensPerS: ok.reduce((s, r) => s + r.tokens, 0) / wallS,
    latencyMs: percentiles(ok.map((r) => r.end - r.start)),
    ttftMs: percentiles(ok.flatMap((r) => r.ttftMs === undefined ? [] : [r.ttftMs])),
    interTokenMs: percentiles(ok.flatMap((r) => r.gapsMs)),
    records,
  };
}

/** Markdown table rows for load runs, one row each, labelled (default: the URL) in the first column. */
export function loadMarkdown(runs: { label?: string; report: LoadReport }[], firstColumn = "url"): string {
  const f = (x: number, d = 1) => Number.isFinite(x) ? x.toFixed(d) : "-";
  const p = (q: Percentiles) => `${f(q.p50)} / ${f(q.p95)}`;
  const row = ({ label, report: r }: { label?: string; report: LoadReport }) => {
    const bad = Object.entries(r.statuses).filter(([s]) => s !== "200").map(([s, n]) => `${n} x ${s}`);
    const notOk = `${bad.join(", ") || "none"}${r.incomplete ? `; ${r.incomplete} cut` : ""}`;
    return `| ${label ?? r.url} | ${r.concurrency} | ${r.requests} | ${r.ok} | ${f(r.requestsPerS, 2)} | ${
      f(r.tokensPerS)
    } | ${p(r.latencyMs)} | ${p(r.ttftMs)} | ${p(r.interTokenMs)} | ${notOk} |`;
  };
  return [
    `| ${firstColumn} | clients | requests | complete | req/s | tok/s | latency p50/p95 ms | TTFT p50/p95 ms | ` +
    `ITL p50/p95 ms | not 200 |`,
    `|---|---:|---:|---:|---:|---:|---:|---:|---:|---|`,
    ...runs.map(row),
  ].join("\n");
}
