/**
 * `deno task start`: load the model and serve the HTTP app.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_TARGET_DIR, openModelFolder } from "../model/loader.ts";
import { type Backend, BACKENDS, loadModel } from "./backend.ts";
import { createApp } from "../server/app.ts";
import { UsageError } from "./usage.ts";

const USAGE = `Usage: deno task start [--port N] [--host H] [--model DIR] [--backend gpu|cpu]

  --port N     port (default $PORT or 8000; 0 = any free port)
  --host H     interface (default 127.0.0.1)
  --model DIR  Hugging Face Llama folder (default weights/tiny/target)
  --backend B  gpu (WebGPU, default) or cpu (the reference implementation)
`;

/** Run the server until SIGINT/SIGTERM; returns the exit code. */
export async function runServe(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        port: { type: "string", default: Deno.env.get("PORT") ?? "8000" },
        host: { type: "string", default: "127.0.0.1" },
        model: { type: "string", default: DEFAULT_TARGET_DIR },
        backend: { type: "string", default: "gpu" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`--port must be 0..65535, got ${values.port}`);
  }
  if (!BACKENDS.includes(values.backend as Backend)) {
    throw new UsageError(`--backend must be "gpu" or "cpu", got ${JSON.stringify(values.backend)}`);
  }
  console.error(`loading ${values.model} ...`);
  const t0 = performance.now();
  const folder = await openModelFolder(values.model);
  const loaded = await loadModel(folder, values.backend as Backend);
  const model = loaded.model;
  console.error(`loaded in ${(performance.now() - t0).toFixed(0)} ms (${loaded.device})`);
  const app = createApp({
    name: folder.dir.split("/").filter(Boolean).pop() ?? "model",
    model,
    tokenizer: folder.tokenizer,
  });
  const ac = new AbortController();
  const server = Deno.serve({
    port,
    hostname: values.host,
    signal: ac.signal,
    onListen: ({ hostname, port }) => console.error(`listening on http://${hostname}:${port}`),
  }, app.fetch);
  const stop = () => ac.abort();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  loaded.close();
  folder.checkpoint.close();
  return 0;
}
