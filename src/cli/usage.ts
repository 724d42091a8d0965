/**
 * Command-line errors shared by the subcommands.
 *
 * @module
 */

import type { z } from "zod";

/** Bad command-line usage: printed without a stack trace, exits with `exitCode`. */
export class UsageError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = "UsageError";
  }
}

/** First zod issue as "--flag-name: message" (schema keys are the camelCase of the flags). */
export function zodMessage(e: z.ZodError): string {
  const i = e.issues[0];
  const field = i.path.join(".").replace(/[A-Z]/g, (m) => "-" + m.toLowerCase());
  return field ? `--${field}: ${i.message}` : i.message;
}
