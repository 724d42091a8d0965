/**
 * Refusing a generation that cannot fit the model's context up front, instead of letting the decoding
 * loop stop early at the context's end (which looks like a short answer, not an error).
 *
 * @module
 */

/** A prompt plus the requested new tokens exceed the model's context. */
export class ContextLengthError extends RangeError {
  constructor(
    readonly promptTokens: number,
    readonly maxTokens: number,
    readonly context: number,
    /** How the caller names the token budget, e.g. "--max-tokens" or "max_tokens". */
    readonly param: string,
  ) {
    super(
      `prompt (${promptTokens} tokens) + ${param} (${maxTokens}) = ${
        promptTokens + maxTokens
      } exceeds the model's context of ${context} tokens`,
    );
    this.name = "ContextLengthError";
  }
}

/** Throws {@link ContextLengthError} when `promptTokens + maxTokens > context`. */
export function checkContext(promptTokens: number, maxTokens: number, context: number, param: string): void {
  if (promptTokens + maxTokens > context) {
    throw new ContextLengthError(promptTokens, maxTokens, context, param);
  }
}
