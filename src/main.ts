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

if (import.meta.main) Deno.exit(await main(Deno.args));
