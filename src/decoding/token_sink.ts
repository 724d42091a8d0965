/**
 * The output side of one generation, shared by the autoregressive and the speculative loops.
 *
 * @module
 */

import type { FinishReason, GenerationEvent, TokenEvent } from "./stats.ts";

/** A token's log-probabilities, when the request asked for them. */
export type TokenScores = Pick<TokenEvent, "logprob" | "top">;

/**
 * The output side of one generation, shared by every decoding loop: emits tokens in order and decides
 * when generation ends — cancellation, an EOS id (not emitted), or max_tokens.
 */
export class TokenSink {
  /** Tokens emitted so far. */
  produced = 0;
  /** Set once generation must end. */
  finish: FinishReason | undefined;

  constructor(
    private readonly maxTokens: number,
    private readonly eos: ReadonlySet<number>,
    private readonly signal?: AbortSignal,
  ) {}

  /**
   * Emit `ids` in order until one of the ending conditions holds (then `finish` is set); `scores[i]`,
   * when given, rides on the i-th token's event.
   */
  *emit(ids: Iterable<number>, scores?: readonly (TokenScores | undefined)[]): Generator<GenerationEvent> {
    let i = 0;
    for (const id of ids) {
      const sc = scores?.[i++];
      if (this.signal?.aborted) {
        this.finish = "cancelled";
        return;
      }
      if (this.eos.has(id)) {
        this.finish = "stop";
        return;
      }
      this.produced++;
      yield sc ? { type: "token", id, ...sc } : { type: "token", id };
      if (this.produced >= this.maxTokens) {
        this.finish = "length";
        return;
      }
    }
  }
}
