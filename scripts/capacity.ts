/**
 * Capacity figures for deploy/README.md, measured in one run: one replica loaded directly, then N
 * replicas behind nginx running deploy/nginx/specdec.conf, each under the closed-loop streaming load of
 * `deno task bench --load` (src/bench/load.ts). Every replica is a real `serve` process on a loopback port
 * with its own fresh profile cache.
 *
 *   deno run -A scripts/capacity.ts [--replicas 3] [--clients 1,4,8] [--per-client 6] [--max-tokens 32]
 *                                   [--json PATH] [-- serve flags, e.g. --backend cpu]
 *
 * Needs nginx (apt-get install nginx-light). On a machine with fewer cores than replicas the replicas
 * share the cores, so the N-replica rows show the balancer's overhead and fairness, not N x throughput.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadMarkdown, type LoadReport, runLoad } from "../src/bench/load.ts";
import { loadPrompts } from "../src/bench/prompts.ts";
import { startNginx } from "../tests/fixtures/nginx.ts";
import { spawnServe } from "../tests/fixtures/server_process.ts";

const cut = Deno.args.indexOf("--");
const { values } = parseArgs({
  args: cut >= 0 ? Deno.args.slice(0, cut) : Deno.args,
  options: {
    replicas: { type: "string", default: "3" },
    clients: { type: "string", default: "1,4,8" },
    "per-client": { type: "string", default: "6" },
    "max-tokens": { type: "string", default: "32" },
    json: { type: "string" },
  },
  strict: true,
});
const serveArgs = cut >= 0 ? Deno.args.slice(cut + 1) : [];
const replicas = Number(values.replicas);
const clients = values.clients.split(",").map(Number);
const perClient = Number(values["per-client"]);
const maxTokens = Number(values["max-tokens"]);
if (![replicas, perClient, maxTokens, ...clients].every((n) => Number.isInteger(n) && n >= 1)) {
  throw new Error("--replicas, --clients, --per-client and --max-tokens must be positive integers");
}

const prompts = await loadPrompts();
const servers = await Promise.all(Array.from({ length: replicas }, () => spawnServe(serveArgs)));
const reports: { setup: string; report: LoadReport }[] = [];
const conf = await Deno.readTextFile(new URL("../deploy/nginx/specdec.conf", import.meta.url));
const nginx = await startNginx(conf, servers.map((s) => new URL(s.url).host));
try {
  const run = async (setup: string, url: string, c: number) => {
    // A short warm-up so first-request costs (pipelines, JIT) are not in the figures.
    await runLoad({ url, concurrency: c, requests: c, maxTokens: 4, temperature: 0.7, prompts });
    const report = await runLoad({
      url,
      concurrency: c,
      requests: perClient * c,
      maxTokens,
      temperature: 0.7,
      prompts,
    });
    reports.push({ setup, report });
    console.error(
      `${setup}, ${c} clients: ${report.tokensPerS.toFixed(1)} tok/s, ${
        report.requestsPerS.toFixed(2)
      } req/s`,
    );
  };
  for (const c of clients) await run("1 replica, direct", servers[0].url, c);
  for (const c of clients) await run(`${replicas} replicas via nginx`, nginx.url, c * replicas);
} finally {
  await nginx.stop();
  await Promise.all(servers.map((s) => s.stop()));
}

console.log(
  `serve flags: ${serveArgs.join(" ") || "(defaults)"}; ${maxTokens} tokens per request, T = 0.7\n`,
);
console.log(loadMarkdown(reports.map(({ setup, report }) => ({ label: setup, report })), "setup"));
if (values.json) {
  const slim = reports.map(({ setup, report }) => ({ setup, ...report, records: undefined }));
  await Deno.writeTextFile(values.json, JSON.stringify(slim, null, 2) + "\n");
}
