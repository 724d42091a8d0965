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

/**
 * One generated token. With `logprobs` requested: its log-probability under the target's processed
 * distribution at temperature 1 (log-softmax of the logits after the request's processors, before
 * temperature, top-k, top-p), and the `top` most likely (id, logprob) pairs, most likely first.
 */
export interface TokenEvent {
  type: "token";
  id: number;
  logprob?: number;
  top?: [number, number][];
}

/**
 * The prompt's own log-probabilities (OpenAI's `echo` with `logprobs`), emitted once before the first
 * token when asked for: entry i is prompt token i's logprob given tokens 0..i-1 (null for i = 0), with
 * the same definition as {@link TokenEvent}.
 */
export interface PromptEvent {
  type: "prompt";
  logprobs: (number | null)[];
  /** Per position, the most likely (id, logprob) pairs (empty at 0), when top logprobs were asked. */
  top?: [number, number][][];
}

/** One event of a generation stream. */
export type GenerationEvent =
  | TokenEvent
  | PromptEvent
  | { type: "done"; finishReason: FinishReason; stats: GenerationStats };
