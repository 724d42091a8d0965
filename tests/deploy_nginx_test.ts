/**
 * Stateless replicas behind a real L7 balancer: Debian's nginx running the committed
 * deploy/nginx/specdec.conf in front of three server processes on loopback ports. A bounded load of
 * concurrent streaming completions must spread over all three; one replica is SIGTERMed while it is
 * generating: its /ready goes 503 at once, its running streams finish, nginx stops giving it work, it
 * exits 0 within the drain timeout, and no request is lost, cut or answered with anything but 200.
 *
 * The replicas run the CPU backend: this test is about the balancer and the drain, and three WebGPU
 * software adapters on two cores would only make it slower.
 */

import assert from "node:assert/strict";
import { type RequestRecord, runLoad } from "../src/bench/load.ts";
import { nginxPath, startNginx } from "./fixtures/nginx.ts";
import { type ServerProcess, spawnServe } from "./fixtures/server_process.ts";

const CONF = new URL("../deploy/nginx/specdec.conf", import.meta.url);
const DRAIN_S = 20;

/** A Prometheus sample's value from a /metrics text (0 when absent). */
function sample(metrics: string, series: string): number {
  const line = metrics.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

async function metricsOf(s: ServerProcess): Promise<string> {
  return await fetch(`${s.url}/metrics`).then((r) => r.text());
}

/** One access-log line of the `specdec` format: request id, final status, upstreams tried and statuses. */
interface Access {
  rid: string;
  status: number;
  upstreams: string[];
  ustatus: string[];
}

function parseAccess(line: string): Access {
  const m = line.match(/" (\d{3}) \d+ rid=(\S+) upstream=(.*) ustatus=(.*) rt=/);
  assert.ok(m, `access log line not in the specdec format: ${line}`);
  return {
    status: Number(m[1]),
    rid: m[2],
    upstreams: m[3].split(/,\s*/),
    ustatus: m[4].split(/,\s*/),
  };
}

Deno.test({
  name:
    "nginx + 3 replicas: load spreads over all; a SIGTERMed replica drains, leaves rotation, loses nothing",
  ignore: nginxPath() === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const servers = await Promise.all(
    [0, 1, 2].map(() =>
      spawnServe(["--backend", "cpu", "--drain-timeout", String(DRAIN_S), "--method", "ar"])
    ),
  );
  const addr = (s: ServerProcess) => new URL(s.url).host;
  const victim = servers[1];
  let nginx: Awaited<ReturnType<typeof startNginx>> | undefined;
  try {
    nginx = await startNginx(await Deno.readTextFile(CONF), servers.map(addr));
    const records: RequestRecord[] = [];
    const load = runLoad({
      url: nginx.url,
      concurrency: 6,
      requests: 48,
      maxTokens: 24,
      temperature: 0.7,
      prompts: ["And God said", "In the beginning", "The LORD is my shepherd"],
      idPrefix: "lb",
      onRecord: (r) => records.push(r),
    });

    // Wait until the victim has finished some work and is generating right now, then SIGTERM it.
    const served = `specdec_requests_total{route="/v1/completions",status="200"}`;
    for (let i = 0;; i++) {
      const m = await metricsOf(victim);
      if (sample(m, served) >= 2 && sample(m, "specdec_queue_running") >= 1) break;
      assert.ok(i < 600, "the victim never got work through nginx");
      await new Promise((r) => setTimeout(r, 10));
    }
    const killedAt = performance.now();
    victim.child.kill("SIGTERM");
    // Readiness must drop at once (what takes a pod out of a Service's endpoints).
    let ready503At: number | undefined;
    for (let i = 0; i < 200 && ready503At === undefined; i++) {
      const r = await fetch(`${victim.url}/ready`).catch(() => undefined);
      if (r?.status === 503) ready503At = performance.now();
      await r?.body?.cancel();
      if (ready503At === undefined) await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(ready503At !== undefined, "the SIGTERMed replica's /ready never answered 503");
    assert.ok(ready503At - killedAt < 1000, `/ready took ${ready503At - killedAt} ms to go 503`);

    const victimStatus = await victim.child.status;
    const exitedAt = performance.now();
    assert.equal(victimStatus.code, 0, `the drained replica's exit code:\n${victim.log()}`);
    assert.ok((exitedAt - killedAt) / 1000 < DRAIN_S, `drain took ${(exitedAt - killedAt) / 1000} s`);
    assert.match(victim.log(), /shutting down: draining [1-9]\d* generation\(s\)/);
    assert.doesNotMatch(victim.log(), /drain timed out/);

    const report = await load;
    const bad = report.records.filter((r) => !r.complete);
    assert.deepEqual(
      bad.map((r) => `${r.id}: ${r.status} ${r.error}`),
      [],
      "every stream completes with 200",
    );
    assert.equal(report.requests, 48);

    // The balancer's view: one line per request, all 200, and who finally answered each.
    // nginx logs a request when it finalizes it, which can be just after the client read [DONE].
    const logged = () => nginx!.accessLog().map(parseAccess).filter((a) => a.rid.startsWith("lb-"));
    for (let i = 0; i < 100 && logged().length < 48; i++) await new Promise((r) => setTimeout(r, 20));
    const access = logged();
    assert.equal(access.length, 48, "one access-log line per request");
    assert.deepEqual(access.filter((a) => a.status !== 200).map((a) => a.rid), []);
    const finalBy = new Map(access.map((a) => [a.rid, a.upstreams[a.upstreams.length - 1]]));
    const byReplica = servers.map((s) => [...finalBy.values()].filter((u) => u === addr(s)).length);
    assert.ok(
      byReplica.every((n) => n > 0),
      `every replica serves some of the load: ${byReplica}\n${nginx.accessLog().join("\n")}`,
    );

    // Streams the victim was running when it got SIGTERM finished there, during the drain.
    const startedOnVictim = records.filter((r) => finalBy.get(r.id) === addr(victim));
    assert.ok(
      startedOnVictim.some((r) => r.start < killedAt && r.end > killedAt),
      "a stream in flight on the victim at SIGTERM finished there",
    );
    // Nothing that started after readiness dropped was answered by the victim: nginx moved it on.
    const late = records.filter((r) => r.start > ready503At!);
    assert.ok(late.length >= 6, `enough requests after the SIGTERM to show where they went (${late.length})`);
    assert.deepEqual(late.filter((r) => finalBy.get(r.id) === addr(victim)).map((r) => r.id), []);
    // And any of them that nginx did offer the victim came back 503 (draining) or as a refused
    // connection (502 in $upstream_status), and was retried on a live replica.
    for (const a of access.filter((a) => a.upstreams.length > 1)) {
      for (let i = 0; i < a.upstreams.length - 1; i++) {
        assert.equal(a.upstreams[i], addr(victim), `only the victim is ever skipped: ${JSON.stringify(a)}`);
        assert.ok(
          ["503", "502"].includes(a.ustatus[i]),
          `skipped because draining or gone: ${JSON.stringify(a)}`,
        );
      }
    }
    assert.doesNotMatch(nginx.errorLog(), /no live upstreams|prematurely closed/);
  } finally {
    await nginx?.stop();
    await Promise.all(servers.map((s) => s.stop()));
  }
});

/** Open `n` raw connections, send `prefix` on each, and measure when the far end closes each one. */
async function stalled(port: number, n: number, prefix: string, limitMs: number): Promise<number[]> {
  const enc = new TextEncoder();
  return await Promise.all(Array.from({ length: n }, async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const t0 = performance.now();
    try {
      if (prefix) await conn.write(enc.encode(prefix));
      const buf = new Uint8Array(4096);
      const deadline = setTimeout(() => conn.close(), limitMs); // a connection nobody closes fails below
      try {
        while ((await conn.read(buf)) !== null) { /* a 408 or the response, then EOF */ }
      } catch {
        // closed by our deadline (or reset by the server): either way, measured below
      }
      clearTimeout(deadline);
      return performance.now() - t0;
    } finally {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }));
}

Deno.test({
  name:
    "nginx in front: slow and vanishing clients (stalled headers, stalled bodies, idle keep-alive) are closed within the timeouts",
  ignore: nginxPath() === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const server = await spawnServe(["--backend", "cpu"]);
  const T = 2;
  const nginx = await startNginx(await Deno.readTextFile(CONF), [new URL(server.url).host], {
    client_header_timeout: T,
    client_body_timeout: T,
    keepalive_timeout: T,
  });
  try {
    const port = Number(new URL(nginx.url).port);
    const limit = (T + 3) * 1000;
    const probe = (async () => {
      // The replica stays responsive through nginx meanwhile.
      const ms: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t = performance.now();
        const r = await fetch(`${nginx.url}/health`);
        await r.body?.cancel();
        assert.equal(r.status, 200);
        ms.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 100));
      }
      return ms;
    })();
    const [headers, bodies, idle] = await Promise.all([
      stalled(port, 30, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: appl", limit),
      stalled(
        port,
        30,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          'Transfer-Encoding: chunked\r\n\r\n5\r\n{"pro\r\n',
        limit,
      ),
      stalled(port, 30, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", limit),
    ]);
    for (
      const [what, ms] of [["stalled headers", headers], ["stalled bodies", bodies], ["idle", idle]] as const
    ) {
      const worst = Math.max(...ms);
      console.log(
        `${what}: 30 connections closed after ${Math.min(...ms).toFixed(0)}-${worst.toFixed(0)} ms`,
      );
      assert.ok(
        worst < limit - 500,
        `${what}: a connection stayed open ${worst.toFixed(0)} ms (timeout ${T} s)`,
      );
      assert.ok(Math.min(...ms) >= T * 1000 - 300, `${what}: closed before the timeout, by something else?`);
    }
    assert.ok(Math.max(...await probe) < 1000, "the replica answered through nginx meanwhile");
    // None of the stalled uploads reached the replica (nginx buffers bodies before proxying).
    const m = await (await fetch(`${server.url}/metrics`)).text();
    assert.doesNotMatch(m, /route="\/v1\/completions"/);
  } finally {
    await nginx.stop();
    await server.stop();
  }
});
