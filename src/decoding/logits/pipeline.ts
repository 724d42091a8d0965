/**
 * The processors of one request, composed: built from its {@link ProcessingSpec}, applied in a fixed
 * order (repetition / presence / frequency penalties, then logit_bias, then the grammar mask, then
 * min-p, which must see the final scores), each with its own immutable state.
 *
 * @module
 */

import { biasProcessor } from "./bias.ts";
import { minPProcessor } from "./min_p.ts";
import { penaltyProcessor } from "./penalties.ts";
import type { GrammarSpec, LogitsProcessor, ProcessingSpec, TokenVocabulary } from "./processor.ts";

/** Builds a grammar's processor (the grammar module); absent: grammars are refused. */
export type GrammarFactory = (spec: GrammarSpec, vocab: TokenVocabulary) => LogitsProcessor;

/** The state of every processor of a pipeline, in order. */
export type PipelineState = readonly unknown[];

/** Several processors as one. */
export class LogitsPipeline implements LogitsProcessor<PipelineState> {
  constructor(private readonly processors: LogitsProcessor[]) {}

  /**
   * The pipeline for `spec` at `temperature`, or undefined when it changes nothing (so callers keep
   * their fastest path). Throws RangeError naming the field for an invalid value, and when a grammar is
   * asked for without a vocabulary or grammar support.
   */
  static fromSpec(
    spec: ProcessingSpec | undefined,
    o: { temperature: number; vocabSize: number; vocab?: TokenVocabulary; grammar?: GrammarFactory },
  ): LogitsPipeline | undefined {
    if (!spec) return undefined;
    const ps: LogitsProcessor[] = [];
    const presence = spec.presencePenalty ?? 0;
    const frequency = spec.frequencyPenalty ?? 0;
    const repetition = spec.repetitionPenalty ?? 1;
    if (presence !== 0 || frequency !== 0 || repetition !== 1) {
      ps.push(penaltyProcessor({ presence, frequency, repetition }) as LogitsProcessor);
    }
    if (spec.logitBias && Object.keys(spec.logitBias).length > 0) {
      ps.push(biasProcessor(spec.logitBias, o.vocabSize) as LogitsProcessor);
    }
    if (spec.grammar) {
      if (!o.grammar || !o.vocab) throw new RangeError("response_format: this engine has no grammar support");
      ps.push(o.grammar(spec.grammar, o.vocab));
    }
    if ((spec.minP ?? 0) > 0) ps.push(minPProcessor(spec.minP!, o.temperature) as LogitsProcessor);
    else if (spec.minP !== undefined) minPProcessor(spec.minP, o.temperature); // validates
    return ps.length ? new LogitsPipeline(ps) : undefined;
  }

  initial(prompt: ArrayLike<number>): PipelineState {
    return this.processors.map((p) => p.initial(prompt));
  }

  advance(s: PipelineState, token: number): PipelineState {
    return this.processors.map((p, i) => p.advance(s[i], token));
  }

  apply(logits: Float32Array, s: PipelineState): void {
    for (let i = 0; i < this.processors.length; i++) this.processors[i].apply(logits, s[i]);
  }

  /** A processed copy of `row` (the model's buffer is never changed). */
  processed(row: Float32Array, s: PipelineState): Float32Array {
    const out = row.slice();
    this.apply(out, s);
    return out;
  }
}
