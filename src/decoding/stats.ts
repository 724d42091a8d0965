/**
 * What every decoding loop reports: the events of a generation stream and its closing counters.
 *
 * @module
 */

/** Why generation ended. */
export type FinishReason = "stop" | "length" | "cancelled";

/** Counters of one generation. */
export interface GenerationStats {
  promptTokens: number;
  completionTokens: number;
  /** Time to process the prompt and produce the first token's logits. */
  prefillMs: number;
  /** Time from the first generated token's logits to the end. */
  decodeMs: number;
  /** completionTokens / (decode time), tokens per second after the first. */
  tokPerS: number;
  /** Target model forward passes (prefill included). */
  targetForwards: number;
  /** Emitted tokens per target forward after prefill (1 for autoregressive decoding). */
  tokensPerStep: number;
  /** GPU->CPU readbacks (each >= ~11 ms in Deno); 0 on the CPU backend. */
  syncs: number;
}

/** One event of a generation stream. */
export type GenerationEvent =
  | { type: "token"; id: number }
  | { type: "done"; finishReason: FinishReason; stats: GenerationStats };
