/**
 * Per-request changes to the target's next-token distribution (OpenAI's `logit_bias`,
 * `presence_penalty`, `frequency_penalty`, `repetition_penalty`, `min_p`, and `response_format` grammars),
 * as pure transforms of one logits row given the history that leads to it.
 *
 * Exactness under speculation: every decoding loop applies the same processors to the target's row at
 * every position (in a speculative tree: at every node, with that node's own history: the generated
 * tokens so far plus the path from the root to the node), then temperature / top-k / top-p. The
 * verifiers' rules are exact for ANY draft distribution q, so the draft's rows need no transform for
 * exactness (a draft token the processors forbid has p = 0 and is never accepted); transforming q too only
 * raises acceptance.
 *
 * State is explicit and immutable, so one processor serves every branch of a tree: `advance` returns a
 * new state and never changes the old one.
 *
 * @module
 */

/** A transform of next-token logits that depends on the history through a state `S`. */
export interface LogitsProcessor<S = unknown> {
  /** The state before the first generated token (the prompt is the context, e.g. for repetition). */
  initial(prompt: ArrayLike<number>): S;
  /** The state after `token` was generated in state `s`; must not modify `s`. */
  advance(s: S, token: number): S;
  /**
   * Change `logits` (vocab), the raw scores for the next token in state `s`, in place: add a bias,
   * scale, or set to -Infinity what must not follow. At least one token must stay finite.
   */
  apply(logits: Float32Array, s: S): void;
}

/** A grammar the output must match (`response_format`). */
export type GrammarSpec =
  | { kind: "json_object" }
  | { kind: "json_schema"; schema: Record<string, unknown> };

/**
 * What a request asks to change, as plain data (it crosses to the engine worker); all optional, and
 * neutral when absent. Semantics (vLLM's): presence and frequency penalties count generated tokens only;
 * the repetition penalty (Hugging Face's) counts prompt and generated tokens; `minP` keeps tokens whose
 * probability at the request's temperature is at least minP x the most likely one's.
 */
export interface ProcessingSpec {
  /** token id -> bias added to its logit (OpenAI: -100..100; -100 effectively bans it). */
  logitBias?: Record<number, number>;
  /** Subtracted once from the logit of every token generated at least once (-2..2). */
  presencePenalty?: number;
  /** Subtracted per occurrence from the logit of every generated token (-2..2). */
  frequencyPenalty?: number;
  /** 0.01..100; logits of tokens seen in prompt or output are divided by it when positive, multiplied when not (1 = off). */
  repetitionPenalty?: number;
  /** 0..1; 0 = off. */
  minP?: number;
  grammar?: GrammarSpec;
}

/** The token strings a grammar needs: each id's bytes (UTF-8), undefined for special / control tokens. */
export interface TokenVocabulary {
  /** Number of ids (the model's vocabulary, >= the tokenizer's). */
  readonly size: number;
  /** The bytes token `id` appends to the text, or undefined when it is special (BOS, EOS, chat markers). */
  bytes(id: number): Uint8Array | undefined;
  /** Ids that end generation (allowed exactly when the grammar is complete). */
  readonly eosIds: readonly number[];
}
