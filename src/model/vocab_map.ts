/**
 * A draft with a pruned vocabulary (FR-Spec, Zhao et al. 2025) as a model over the target's whole
 * vocabulary. The draft embeds and predicts only V' of the target's V tokens plus one "other" row
 * (config.json `vocab_map`, see config.ts); {@link VocabMappedLM} maps input ids to rows and scatters
 * each output row back to V logits, -Infinity wherever the draft has no row.
 *
 * Why speculation stays exact: every verifier reads only the draft's distribution q (and the tokens drawn
 * from it), never its logits' support. Here q is the draft's softmax over its V' tokens and 0 elsewhere
 * (the other row's logit is dropped, so no mass goes to "some token outside the map"). Drafters draw
 * children only where q > 0; the rejection rules accept x with probability min(1, p(x) / q(x)) and on a
 * rejection resample from the residual max(p - q, 0), normalised, which keeps all of p's mass on tokens
 * outside the map (q = 0 there): the emitted token follows p exactly, as for any q (Leviathan et al. 2023,
 * Theorem 1; Sequoia's and SpecInfer's multi-draft forms alike). The match and greedy rules never read q.
 * A pruned draft only lowers acceptance where the target's likely tokens fall outside the map.
 *
 * @module
 */

import type { CausalLM, ForwardInput } from "./causal_lm.ts";
import type { ModelConfig, VocabMap } from "./config.ts";
import type { KvCache } from "./kv_cache.ts";
import { isMultiSequence, type MultiSequence, type SequenceInput } from "./capabilities.ts";

/**
 * `inner` (rows = its config's vocabSize, with `map`) as a model over `map.outerVocabSize` tokens.
 * Capabilities of the inner model (device sampling, fused tree steps, paging) are not passed through:
 * they would pick ids among the inner rows. Speculation runs the generic path with it. Batched
 * sequences ({@link MultiSequence}) are: they only carry ids in and logits out.
 *
 * @example
 * ```ts
 * const draft = new VocabMappedLM(inner, inner.config.vocabMap!);
 * draft.config.vocabSize; // the target's vocabulary, e.g. 49152
 * ```
 */
export class VocabMappedLM implements CausalLM, MultiSequence {
  /** The inner config over the outer vocabulary (no vocabMap: this model is not pruned any more). */
  readonly config: ModelConfig;
  /** (outer) inner row of each outer token: its own row, or the other row when unmapped. */
  private readonly rowOf: Int32Array;

  constructor(private readonly inner: CausalLM, private readonly map: VocabMap) {
    if (map.ids.length !== inner.config.vocabSize) {
      throw new RangeError(
        `vocab map: ${map.ids.length} ids for a model of ${inner.config.vocabSize} rows`,
      );
    }
    const { vocabMap: _, ...rest } = inner.config;
    this.config = { ...rest, vocabSize: map.outerVocabSize };
    this.rowOf = new Int32Array(map.outerVocabSize).fill(map.otherRow);
    for (let i = 0; i < map.ids.length; i++) if (i !== map.otherRow) this.rowOf[map.ids[i]] = i;
  }

  get kv(): KvCache {
    return this.inner.kv;
  }

  get maxBatch(): number | undefined {
    return this.inner.maxBatch;
  }

  /** Forward with outer ids; returns (rows, outer vocab) logits, -Infinity outside the map. */
  async forward(input: ForwardInput): Promise<Float32Array> {
    return this.outer(await this.inner.forward(this.innerInput(input)));
  }

  /** Sequences of the inner model when it batches them ({@link MultiSequence}), else 1. */
  get sequences(): number {
    return isMultiSequence(this.inner) ? this.inner.sequences : 1;
  }

  /** Sequence `seq`'s cache (the inner model's). */
  cacheOf(seq: number): KvCache {
    if (isMultiSequence(this.inner)) return this.inner.cacheOf(seq);
    if (seq !== 0) throw new RangeError(`vocab map: no sequence ${seq} (the model holds 1)`);
    return this.inner.kv;
  }

  /** {@link MultiSequence.forwardBatch} with outer ids and logits. */
  async forwardBatch(parts: SequenceInput[]): Promise<Float32Array[]> {
    const inner = this.inner;
    if (!isMultiSequence(inner)) {
      if (parts.length !== 1 || parts[0].seq !== 0) {
        throw new RangeError("vocab map: the inner model holds one sequence");
      }
      return [await this.forward(parts[0].input)];
    }
    const mapped = parts.map((p) => ({ seq: p.seq, input: this.innerInput(p.input) }));
    return (await inner.forwardBatch(mapped)).map((l) => this.outer(l));
  }

  /** `input` with its outer ids as inner rows (an id outside the outer vocabulary is refused). */
  private innerInput(input: ForwardInput): ForwardInput {
    const Vo = this.map.outerVocabSize;
    const tokens = new Int32Array(input.tokens.length);
    for (let i = 0; i < tokens.length; i++) {
      const t = input.tokens[i];
      if (!(t >= 0 && t < Vo)) {
        throw new RangeError(`forward: token ${t} at row ${i} outside vocabulary [0, ${Vo})`);
      }
      tokens[i] = this.rowOf[t];
    }
    return { ...input, tokens };
  }

  /** Inner logits (rows, inner vocab) scattered to (rows, outer vocab), -Infinity outside the map. */
  private outer(inner: Float32Array): Float32Array {
    const Vo = this.map.outerVocabSize, Vi = this.map.ids.length, ids = this.map.ids;
    const rows = inner.length / Vi;
    const out = new Float32Array(rows * Vo).fill(-Infinity); // (rows, outer vocab)
    for (let r = 0; r < rows; r++) {
      const src = r * Vi, dst = r * Vo;
      for (let i = 0; i < Vi; i++) if (i !== this.map.otherRow) out[dst + ids[i]] = inner[src + i];
    }
    return out;
  }

  dispose(): void {
    this.inner.dispose();
  }
}

/**
 * `model` over the outer vocabulary when its config has a vocab map (a pruned draft), else `model`
 * itself.
 *
 * @example
 * ```ts
 * const draft = withVocabMap(await loadCpuModel(folder)); // folder.config.vocabMap set: a VocabMappedLM
 * ```
 */
export function withVocabMap(model: CausalLM): CausalLM {
  const map = model.config.vocabMap;
  return map ? new VocabMappedLM(model, map) : model;
}
