/**
 * Entry point: subcommand dispatch only. Library code never exits the process; this file maps errors
 * to exit codes.
 *
 * @module
 */

import { runGenerate } from "./cli/generate.ts";
import { runServe } from "./cli/serve.ts";
import { runBench } from "./cli/bench.ts";
import { UsageError } from "./cli/usage.ts";
import { runProfile } from "./cli/profile.ts";

const USAGE = `Usage: deno run -A src/main.ts <command> [options]

Commands:
  serve      start the HTTP server                 (deno task start)
  generate   complete a prompt on the command line (deno task generate --prompt "...")
  bench      measure decoding speed                (deno task bench)
  profile    acceptance vectors for Sequoia         (deno task profile --acceptance)

Run a command with --help for its options.
`;

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  serve: runServe,
  generate: runGenerate,
  bench: runBench,
  profile: runProfile,
};

async function main(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  if (!cmd || cmd === "--help" || cmd === "-h") {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    console.error(`Unknown command "${cmd}".\n\n${USAGE}`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      (e.exitCode === 0 ? console.log : console.error)(e.message);
      return e.exitCode;
    }
    console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

/**
 * Mesa's Vulkan loader prints "XDG_RUNTIME_DIR is invalid or not set" twice on every start without one:
 * give it a private directory (mode 0700) before anything requests an adapter. Returns the directory
 * made, for removal at exit, or undefined when the variable was already set (or nothing could be done).
 */
async function ensureRuntimeDir(): Promise<string | undefined> {
  if (Deno.env.get("XDG_RUNTIME_DIR")) return undefined;
  try {
    const dir = await Deno.makeTempDir({ prefix: "specdec-runtime-" });
    if (Deno.build.os !== "windows") await Deno.chmod(dir, 0o700);
    Deno.env.set("XDG_RUNTIME_DIR", dir);
    return dir;
  } catch {
    return undefined; // no temp dir or no env permission: only the loader's warning remains
  }
}

if (import.meta.main) {
  const runtimeDir = await ensureRuntimeDir();
  const code = await main(Deno.args);
  if (runtimeDir) await Deno.remove(runtimeDir, { recursive: true }).catch(() => {});
  Deno.exit(code);
}
