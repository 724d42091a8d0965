/**
 * The server against slow, vanishing and malformed clients, and the wait a refused client is told:
 *
 * - body reading (no socket): a body that stalls is a 408 after the body timeout, one whose stream
 *   fails (the client went away) is counted as 499 and logged in one line;
 * - Retry-After from the queue (fake clock): what the running generation has left plus each waiting
 *   one's expected duration, from max_tokens and the measured time per token and share of max_tokens;
 * - the real server process over raw loopback TCP (`--body-timeout 2`): 30 stalled chunked uploads are
 *   all answered 408 within the timeout while /health answers fast; a disconnect mid-body is a 499 in
 *   /metrics with no stack trace in the log; malformed HTTP gets Deno's bare 400; SIGTERM with the
 *   stalled sockets still open exits at once.
 */
import assert from "node:assert/strict";
import { createApp, localService } from "../src/server/app.ts";
import { bodyTimeout, readJson } from "../src/server/body.ts";
import { ApiError, ClientAbortError } from "../src/server/errors.ts";
import { DEFAULT_JOB_MS, type JobCost, Scheduler, type Slot } from "../src/server/queue.ts";
import { DEFAULT_DRAFT_DIR, openModelFolder } from "../src/model/folder.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import { spawnServe } from "./fixtures/server_process.ts";

const enc = new TextEncoder();
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A body that sends `head` and then nothing, ever. */
function stalled(head = '{"pro'): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      c.enqueue(enc.encode(head));
    },
  });
}

/** A body that sends `head` and then fails the way Deno's does when the client closes the socket. */
function vanishing(head = '{"prompt": "And'): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream({
    pull(c) {
      if (!sent) {
        sent = true;
        c.enqueue(enc.encode(head));
      } else {c.error(
          new Deno.errors.BadResource("Cannot read request body as underlying resource unavailable"),
        );}
    },
  });
}

const postReq = (body: BodyInit) => new Request("http://x/v1/generate", { method: "POST", body });

/** Run `f` with console.error captured; returns what it wrote, one string per call. */
async function capturingErrors(f: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => lines.push(a.map(String).join(" "));
  try {
    await f();
  } finally {
    console.error = orig;
  }
  return lines;
}

Deno.test("body: a stalled body is a 408 after the timeout; a failing body stream is a ClientAbortError", async () => {
  const t0 = performance.now();
  await assert.rejects(readJson(postReq(stalled()), 1000, 150), (e: unknown) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 408);
    assert.equal(e.options.code, "request_timeout");
    assert.equal(e.options.headers?.Connection, "close");
    assert.match(e.message, /within 0.15 s \(5 bytes received\)/);
    return true;
  });
  const ms = performance.now() - t0;
  assert.ok(ms >= 140 && ms < 1500, `408 after ${ms.toFixed(0)} ms`);
  await assert.rejects(readJson(postReq(vanishing()), 1000, 5000), (e: unknown) => {
    assert.ok(e instanceof ClientAbortError, String(e));
    assert.equal(e.bytesRead, 15);
    assert.ok(e.cause instanceof Deno.errors.BadResource);
    assert.match(
      e.message,
      /closed the connection while sending the request body \(15 bytes read; BadResource/,
    );
    return true;
  });
  // No limit (0) and a body that arrives in time both read normally.
  assert.deepEqual(await readJson(postReq('{"a": 1}'), 1000, 0), { a: 1 });
  assert.deepEqual(await readJson(postReq('{"a": 1}'), 1000, 50), { a: 1 });
  assert.equal(bodyTimeout(30_000, 7).status, 408);
});

Deno.test("app: 408 envelope for a stalled body; a client gone mid-body is a 499 in /metrics and one log line", async () => {
  const folder = await openModelFolder(DEFAULT_DRAFT_DIR);
  const model = await loadCpuModel(folder);
  const app = createApp(localService({ name: "tiny-draft", model, tokenizer: folder.tokenizer }), {
    bodyTimeoutMs: 200,
  });
  const slow = await app.request("/v1/generate", { method: "POST", body: stalled() });
  assert.equal(slow.status, 408);
  assert.equal(slow.headers.get("connection"), "close");
  const j = await slow.json();
  assert.equal(j.error.code, "request_timeout");
  assert.equal(j.error.type, "invalid_request_error");
  assert.match(j.error.message, /did not arrive within 0.2 s/);
  for (const path of ["/tokenize", "/v1/completions", "/v1/chat/completions"]) {
    assert.equal((await app.request(path, { method: "POST", body: stalled() })).status, 408, path);
  }

  let gone: Response | undefined;
  const lines = await capturingErrors(async () => {
    gone = await app.request("/v1/generate", { method: "POST", body: vanishing() });
  });
  assert.equal(gone!.status, 499);
  assert.equal(lines.length, 1, lines.join("\n---\n"));
  assert.ok(!lines[0].includes("\n"), "one line, no stack trace");
  assert.match(lines[0], /^\[server\] POST \/v1\/generate: the client closed the connection/);
  const metrics = await (await app.request("/metrics")).text();
  assert.match(metrics, /specdec_requests_total\{route="\/v1\/generate",status="408"\} 1\n/);
  assert.match(metrics, /specdec_requests_total\{route="\/v1\/generate",status="499"\} 1\n/);
  assert.ok(!/status="500"/.test(metrics), metrics);
});

/** A scheduler on a fake clock, and jobs whose duration and token count the test decides. */
function fakeQueue(maxQueue: number) {
  const clock = { t: 0 };
  const s = new Scheduler({ maxQueue, now: () => clock.t });
  /** Admit, run for `ms`, report `tokens` (undefined: report nothing). */
  const runOne = async (cost: JobCost | undefined, ms: number, tokens?: number) => {
    const slot = s.admit(undefined, cost);
    await slot.run(() => {
      clock.t += ms;
      if (tokens !== undefined) slot.reportGenerated(tokens);
      return Promise.resolve();
    });
  };
  /** Admit a job that holds its turn until `finish(tokens)` or its cancellation. */
  const hold = (cost?: JobCost, client?: AbortSignal) => {
    let open!: () => void;
    let tokens: number | undefined;
    const gate = new Promise<void>((r) => open = r);
    const slot: Slot = s.admit(client, cost);
    const done = slot.run(async (signal) => {
      if (!signal.aborted) {
        await Promise.race([gate, new Promise((r) => signal.addEventListener("abort", r, { once: true }))]);
      }
      if (tokens !== undefined) slot.reportGenerated(tokens);
    }).catch(() => {});
    const finish = (n?: number) => {
      tokens = n;
      open();
    };
    return { slot, finish, done };
  };
  const refusal = () => {
    try {
      s.admit(undefined, { maxTokens: 1 });
    } catch (e) {
      assert.ok(e instanceof ApiError && e.status === 429, String(e));
      return { after: Number(e.options.headers?.["Retry-After"]), message: e.message };
    }
    throw new Error("admitted past the limit");
  };
  return { s, clock, runOne, hold, refusal };
}

const near = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) < 1e-6, `${what}: ${a} != ${b}`);

Deno.test("queue: Retry-After is the work ahead: running's remainder + each waiting job's max_tokens x ms/token", async () => {
  const q = fakeQueue(2);
  // Nothing measured yet: every job counts as DEFAULT_JOB_MS.
  const first = q.hold({ maxTokens: 100 });
  q.hold({ maxTokens: 100 });
  near(q.s.expectedWaitMs(), 2 * DEFAULT_JOB_MS, "unmeasured");
  q.clock.t += 2000;
  first.finish(100); // 100 tokens in 2 s: 20 ms per token, all of max_tokens used
  await first.done;
  q.clock.t += 300; // the second ran 300 ms, reports nothing: only the job time learns from it
  q.s.cancelAll();
  await q.s.idle();

  const a = q.hold({ maxTokens: 50 }); // runs
  q.hold({ maxTokens: 200 }); // waits
  q.hold({ maxTokens: 100 }); // waits: the queue (2) is full
  q.clock.t += 400;
  // A: 50 x 20 ms - 400 ms ran = 600; B: 200 x 20 = 4000; C: 100 x 20 = 2000.
  near(q.s.expectedWaitMs(), 6600, "running remainder + waiting");
  const r = q.refusal();
  assert.equal(r.after, 7);
  assert.match(r.message, /\(2 waiting, limit 2; about 7 s of work ahead\); retry after 7 s/);
  q.clock.t += 1000; // A overran its expectation (and its upper bound): it counts as done
  near(q.s.expectedWaitMs(), 6000, "overrun");
  a.finish(50);
  await a.done;
  q.s.cancelAll();
  await q.s.idle();
});

Deno.test("queue: the estimate learns the share of max_tokens used; cancelled jobs and callers without a cost", async () => {
  const q = fakeQueue(4);
  await q.runOne({ maxTokens: 100 }, 1000, 100); // 10 ms/token, fill 1
  await q.runOne({ maxTokens: 100 }, 250, 25); // stopped at 25 of 100: still 10 ms/token, fill 0.85
  const a = q.hold({ maxTokens: 100 }); // expected 100 x 10 x 0.85 = 850 ms, at most 1000
  near(q.s.expectedWaitMs(), 850, "fill");
  q.clock.t += 300;
  near(q.s.expectedWaitMs(), 550, "remainder");
  q.clock.t += 600; // ran 900 > 850: what is left of its upper bound
  near(q.s.expectedWaitMs(), 100, "past the mean");
  q.clock.t += 200;
  near(q.s.expectedWaitMs(), 0, "past the upper bound");
  // Callers that pass no cost wait as long as an average job: (1000 + 250 + ...) EWMA = 850.
  q.hold();
  q.hold();
  near(q.s.expectedWaitMs(), 2 * 850, "no cost: the job-time average");
  a.finish(100); // 100 tokens in 1100 ms: 0.8 x 10 + 0.2 x 11 = 10.2 ms/token, fill 0.8 x 0.85 + 0.2 = 0.88
  await a.done;
  q.s.cancelAll();
  await q.s.idle();

  const b = fakeQueue(4);
  await b.runOne({ maxTokens: 100 }, 1000, 100);
  const ac = new AbortController();
  const cut = b.hold({ maxTokens: 100 }, ac.signal);
  b.clock.t += 100;
  cut.finish(10);
  ac.abort(); // the client left after 10 tokens: a rate sample, not a share-of-max_tokens one
  await cut.done;
  const probe = b.hold({ maxTokens: 100 });
  near(b.s.expectedWaitMs(), 100 * 10 * 1, "fill unchanged by a cancelled job");
  probe.finish(0);
  await probe.done;
});

Deno.test("queue: the audit's case: 16 waiting 128-token jobs at 25 ms/token are ~55 s, not one job's time", async () => {
  const q = fakeQueue(16);
  await q.runOne({ maxTokens: 128 }, 3200, 128);
  q.hold({ maxTokens: 128 });
  for (let i = 0; i < 16; i++) q.hold({ maxTokens: 128 });
  const r = q.refusal();
  assert.equal(r.after, Math.ceil((3200 + 16 * 3200) / 1000)); // 55
  q.s.cancelAll();
  await q.s.idle();
});

// ---- the real server process, raw loopback TCP ----

interface RawAnswer {
  /** HTTP status, 0 when nothing came back before the deadline or EOF. */
  status: number;
  head: string;
  body: string;
  /** When the whole answer had arrived (ms since `t0`). */
  at: number;
  /** The server closed the connection (EOF) by then. */
  eof: boolean;
}

/** Read one HTTP/1.1 answer (Content-Length framed) from `conn`, until `deadline` (performance.now()). */
async function readAnswer(conn: Deno.Conn, t0: number, deadline: number): Promise<RawAnswer> {
  const buf = new Uint8Array(16384);
  let bytes = new Uint8Array(0);
  const dec = new TextDecoder();
  for (;;) {
    const text = dec.decode(bytes);
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const head = text.slice(0, end);
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      const body = text.slice(end + 4);
      if (enc.encode(body).length >= len) {
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
        return { status, head, body, at: performance.now() - t0, eof: false };
      }
    }
    const left = deadline - performance.now();
    const n = left <= 0 ? "timeout" : await Promise.race([
      conn.read(buf).catch(() => null),
      delay(left).then(() => "timeout" as const),
    ]);
    if (n === "timeout" || n === null) {
      return { status: 0, head: text, body: "", at: performance.now() - t0, eof: n === null };
    }
    const next = new Uint8Array(bytes.length + n);
    next.set(bytes);
    next.set(buf.subarray(0, n), bytes.length);
    bytes = next;
  }
}

/** True when the server closes `conn` within `ms`. */
async function closedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  const r = await Promise.race([conn.read(new Uint8Array(64)).catch(() => null), delay(ms).then(() => 0)]);
  return r === null;
}

async function timed(f: () => Promise<Response>): Promise<{ status: number; ms: number }> {
  const t = performance.now();
  const res = await f();
  await res.body?.cancel();
  return { status: res.status, ms: performance.now() - t };
}

const BODY_TIMEOUT_S = 2;
/** Allowed lateness of a 408 past the body timeout on a loaded 2-core machine. */
const SLACK_MS = 2500;
const STALLED = 30;

Deno.test("server: 30 stalled chunked uploads get 408 within the body timeout; /health stays fast; 499; malformed HTTP; SIGTERM", async () => {
  const s = await spawnServe([
    "--backend",
    "cpu",
    "--draft",
    "none",
    "--body-timeout",
    String(BODY_TIMEOUT_S),
  ]);
  const port = Number(new URL(s.url).port);
  const open: Deno.Conn[] = [];
  const connect = async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    open.push(c);
    return c;
  };
  const health = () => timed(() => fetch(`${s.url}/health`));
  const metrics = async () => await (await fetch(`${s.url}/metrics`)).text();
  let exited = false;
  try {
    // Headers complete, Transfer-Encoding: chunked, then 5 bytes of a chunk and silence.
    const conns = await Promise.all(Array.from({ length: STALLED }, connect));
    const head = "POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
      'Transfer-Encoding: chunked\r\n\r\n10\r\n{"pro';
    const t0 = performance.now();
    await Promise.all(conns.map((c) => c.write(enc.encode(head))));
    const answers = Promise.all(
      conns.map((c) => readAnswer(c, t0, t0 + BODY_TIMEOUT_S * 1000 + SLACK_MS + 5000)),
    );
    await delay(1000);
    const during = await health();
    const got = await answers;
    const after = await health();
    const ats = got.map((a) => a.at);
    const closedAfter = await closedWithin(conns[0], 300);
    console.log(
      `slowloris: ${STALLED} stalled uploads answered ${[...new Set(got.map((a) => a.status))]} in ` +
        `${Math.min(...ats).toFixed(0)}..${Math.max(...ats).toFixed(0)} ms (timeout ${BODY_TIMEOUT_S} s); ` +
        `/health ${during.ms.toFixed(1)} ms meanwhile, ${after.ms.toFixed(1)} ms after; ` +
        `socket closed by the server after the 408: ${closedAfter}`,
    );
    for (const a of got) {
      assert.equal(a.status, 408, `${a.head}\n${a.body}`);
      assert.match(a.head, /\r\nconnection: close/i);
      const j = JSON.parse(a.body);
      assert.equal(j.error.code, "request_timeout");
      assert.ok(a.at >= BODY_TIMEOUT_S * 1000 - 50, `408 early: ${a.at} ms`);
      assert.ok(a.at <= BODY_TIMEOUT_S * 1000 + SLACK_MS, `408 late: ${a.at} ms`);
    }
    assert.equal(during.status, 200);
    assert.equal(after.status, 200);
    assert.ok(during.ms < 1000 && after.ms < 1000, `/health ${during.ms} ms, ${after.ms} ms`);
    assert.match(
      await metrics(),
      new RegExp(`specdec_requests_total\\{route="/v1/generate",status="408"\\} ${STALLED}\\n`),
    );

    // A client that disconnects mid-body: 499 in /metrics, one log line, no stack trace.
    const quitter = await connect();
    await quitter.write(
      enc.encode(
        'POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"prompt": "And',
      ),
    );
    await delay(300);
    quitter.close();
    open.splice(open.indexOf(quitter), 1);
    let m = "";
    for (let i = 0; i < 50 && !/status="499"/.test(m); i++) {
      await delay(100);
      m = await metrics();
    }
    assert.match(m, /specdec_requests_total\{route="\/v1\/generate",status="499"\} 1\n/);
    assert.ok(!/status="500"/.test(m), m);

    // Malformed HTTP never reaches the app: Deno answers a bare 400 and closes.
    const malformed: Record<string, string> = {
      "bad Content-Length": "POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
      "two Content-Lengths":
        "POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
      "Content-Length and Transfer-Encoding":
        "POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
      "CR in a header value":
        "POST /v1/generate HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\n{}",
    };
    for (const [what, req] of Object.entries(malformed)) {
      const c = await connect();
      const t = performance.now();
      await c.write(enc.encode(req));
      const a = await readAnswer(c, t, t + 5000);
      assert.equal(a.status, 400, `${what}: ${a.head}`);
      assert.match(a.head, /\r\ncontent-length: 0(\r\n|$)/i, what);
      assert.match(a.head, /\r\nconnection: close/i, what);
      assert.equal(a.body, "", what);
      assert.ok(await closedWithin(c, 1000), `${what}: closed`);
    }
    const after400 = await metrics();
    assert.ok(!/status="400"/.test(after400), "Deno's 400s never reach the app (not counted)");

    // The log: the abort is one line; no stack trace anywhere.
    const log = s.log();
    assert.equal(log.match(/closed the connection while sending the request body/g)?.length, 1, log);
    console.log(`log: ${log.match(/^.*closed the connection.*$/m)?.[0]}`);
    assert.ok(!/^\s+at /m.test(log), `stack trace in the log:\n${log}`);

    // SIGTERM with the 30 answered-but-open sockets still connected: the server exits at once.
    const t1 = performance.now();
    const code = await s.stop("SIGTERM");
    exited = true;
    const stopMs = performance.now() - t1;
    console.log(
      `SIGTERM with the ${STALLED} answered sockets still open: exit ${code} after ${stopMs.toFixed(0)} ms`,
    );
    assert.equal(code, 0);
    assert.ok(stopMs < 10_000, `shutdown took ${stopMs} ms`);
  } finally {
    for (const c of open) {
      try {
        c.close();
      } catch {
        // closed by the server
      }
    }
    if (!exited) await s.stop("SIGKILL");
  }
});
